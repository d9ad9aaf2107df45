import { createXXHash64 } from 'hash-wasm';
import type { Connection } from '../sqlite/database.ts';
import { quoteIdent } from '../sqlite/database.ts';
import { ValueWriter, type SqlValue } from '../codec/value-codec.ts';
import { ExactSelect } from '../sqlite/exact.ts';
import type { TableSchema } from './schema.ts';

export interface TableChecksum {
  readonly table: string;
  readonly rows: number;
  /** Sum mod 2^64 of xxhash64(canonical row bytes): independent of row order; hex. */
  readonly digest: string;
}

/** Order-independent digest of every row's exact values (TEXT as its stored bytes), per table (sorted by table name). */
export async function checksumTables(conn: Connection, tables: readonly TableSchema[]): Promise<TableChecksum[]> {
  const hasher = await createXXHash64(0, 0);
  const w = new ValueWriter(4096);
  const out: TableChecksum[] = [];
  const mask = (1n << 64n) - 1n;
  for (const t of [...tables].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))) {
    // Exact bytes: TEXT that is not valid UTF-8 is hashed as stored, not as U+FFFD replacements.
    const select = new ExactSelect(conn, t.columns.map(quoteIdent), `FROM main.${quoteIdent(t.name)}`);
    let sum = 0n;
    let rows = 0;
    for (const row of select.iterateExact() as IterableIterator<SqlValue[]>) {
      hasher.init();
      hasher.update(w.reset().writeAll(row).bytes());
      sum = (sum + BigInt('0x' + hasher.digest('hex'))) & mask;
      rows++;
    }
    out.push({ table: t.name, rows, digest: sum.toString(16).padStart(16, '0') });
  }
  return out;
}
