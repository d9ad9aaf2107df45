/**
 * The chaos workload's tables and key naming, shared by the writer processes, the observer and
 * the checker. Every written value is the unique id of its write ("<node>/<writer>/<seq>"), so
 * any row can be traced back to the committed write that produced it.
 */
import type { SqlValue } from '../src/codec/value-codec.ts';

export const chaosSchemaSql = `
CREATE TABLE IF NOT EXISTS kv_int(k INTEGER PRIMARY KEY, v TEXT NOT NULL, n INTEGER);
CREATE TABLE IF NOT EXISTS kv_text(k TEXT PRIMARY KEY, v TEXT NOT NULL, b BLOB);
CREATE TABLE IF NOT EXISTS kv_pair(a INTEGER, b TEXT, v TEXT NOT NULL, PRIMARY KEY (a, b)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS kv_bulk(k INTEGER PRIMARY KEY, v TEXT NOT NULL);
`;

export const chaosTables = ['kv_int', 'kv_text', 'kv_pair', 'kv_bulk'] as const;
export type ChaosTable = (typeof chaosTables)[number];

/** Key columns per table, in key order (matches the schema above). */
export const keyColumns: Record<ChaosTable, string[]> = {
  kv_int: ['k'], kv_text: ['k'], kv_pair: ['a', 'b'], kv_bulk: ['k'],
};

/** Key values of key index i in a table. */
export function keyValues(table: ChaosTable, i: number): SqlValue[] {
  switch (table) {
    case 'kv_int':
    case 'kv_bulk':
      return [BigInt(i)];
    case 'kv_text':
      return [`key-${i}`];
    case 'kv_pair':
      return [BigInt(i >> 1), i % 2 === 0 ? 'x' : 'y'];
  }
}

/** Stable text id of a key: its values joined by "|" (bigints as decimal). */
export function keyId(values: readonly SqlValue[]): string {
  return values.map((v) => (v instanceof Uint8Array ? Buffer.from(v).toString('hex') : String(v))).join('|');
}

/** One committed write, as recorded by a writer after its COMMIT returned. */
export interface HistoryWrite {
  /** table */
  readonly t: ChaosTable;
  /** keyId */
  readonly k: string;
  /** 'u' upsert, 'd' delete (only deletes that removed a row are recorded) */
  readonly op: 'u' | 'd';
  /** the value written (upserts) */
  readonly v: string | null;
  readonly node: string;
  readonly w: string;
  /** per-writer sequence: the order of this writer's writes */
  readonly seq: number;
  /** transaction number within the writer */
  readonly tx: number;
  /** wall-clock ms after COMMIT returned */
  readonly ms: number;
}
