import type { Database, Statement } from '../sqlite/database.ts';
import { quoteIdent } from '../sqlite/database.ts';
import { bindable, hasTextBytes, placeholder, ExactSelect } from '../sqlite/exact.ts';
import type { SqlValue } from '../codec/value-codec.ts';
import type { TableSchema } from '../capture/schema.ts';
import { assert } from '../util/assert.ts';

/** The clock of one row: who wrote the data it holds, when; a tombstone; or a hidden UNIQUE loser. */
export interface RowClock {
  readonly hlc: bigint;
  readonly node: string;
  readonly deleted: boolean;
  /** Set when the row's winning version lost a secondary UNIQUE clash and is kept out of the table. */
  readonly shadow: Shadow | null;
}

/** A row version kept out of its table (it lost a UNIQUE clash): its columns and canonical image. */
export interface Shadow {
  readonly columns: readonly string[];
  readonly image: Buffer;
}

export interface ShadowedRow {
  readonly key: SqlValue[];
  readonly hlc: bigint;
  readonly node: string;
  readonly shadow: Shadow;
}

interface ClockStatements {
  readonly get: ExactSelect;
  readonly upsert: Statement;
  readonly upsertIfNewer: Statement;
}

/**
 * Owner of the per-table clock tables `__burrow_clock_<tid>`: one row per row identity of the
 * user table, keyed by columns declared with the user key's affinity and collation, so SQLite
 * matches a clock to its row exactly as it matches the row to its key ('alpha' = 'ALPHA' under
 * NOCASE, 1 = 1.0 in an untyped column). Holds (hlc, node, deleted) and, for a version that lost
 * a UNIQUE clash, its hidden image.
 */
export class ClockStore {
  private readonly stmts = new Map<number, ClockStatements>();
  private readonly schemas = new Map<number, TableSchema>();

  constructor(private readonly db: Database) {}

  static tableName(tid: number): string {
    return `__burrow_clock_${tid}`;
  }

  /** The clock table's CREATE statement for a key declaration (compared to detect a changed key). */
  static ddl(tid: number, schema: TableSchema): string {
    const cols = schema.keyDecls.map((d, i) => `k${i}${d.affinity === 'BLOB' ? '' : ` ${d.affinity}`} COLLATE ${quoteIdent(d.collation)}`);
    const pk = schema.keyDecls.map((_, i) => `k${i}`).join(', ');
    return `CREATE TABLE ${ClockStore.tableName(tid)}(${cols.join(', ')}, hlc INTEGER NOT NULL, node TEXT NOT NULL, `
      + `deleted INTEGER NOT NULL, shadow BLOB, shadow_cols TEXT, PRIMARY KEY (${pk})) WITHOUT ROWID`;
  }

  /**
   * The highest table id any clock table has (0: none). A new table id is above it and above every
   * registered one: an id given again would find the old table's clocks and take its rows as
   * stamped (chaos seed 404: a table created after a rename's stale registration was removed never
   * sent its rows).
   */
  highestTid(): number {
    const names = this.db.conn.prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name GLOB '__burrow_clock_[0-9]*'").pluck().all() as string[];
    return names.reduce((m, n) => Math.max(m, Number(n.slice('__burrow_clock_'.length)) || 0), 0);
  }

  /** The clock table of a table id no longer registered (inside the write transaction). */
  drop(tid: number): void {
    assert(this.db.conn.inTransaction, 'clock tables change inside a write transaction');
    this.db.exec(`DROP TABLE IF EXISTS ${ClockStore.tableName(tid)}`);
    this.schemas.delete(tid);
    this.stmts.delete(tid);
  }

  /**
   * Make the clock table of `tid` match the key of `schema` (inside the write transaction).
   * 'rebuilt' means the key declaration changed and the old clocks are gone (the caller restamps).
   */
  ensure(tid: number, schema: TableSchema): 'created' | 'kept' | 'rebuilt' {
    assert(this.db.conn.inTransaction, 'clock tables change inside a write transaction');
    const name = ClockStore.tableName(tid);
    const want = ClockStore.ddl(tid, schema);
    const have = this.db.conn.prepare("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?").pluck().get(name) as string | undefined;
    this.schemas.set(tid, schema);
    this.stmts.delete(tid);
    if (have === want) {
      this.ensureTombstoneIndex(name);
      return 'kept';
    }
    if (have !== undefined) this.db.exec(`DROP TABLE ${name}`);
    this.db.exec(want);
    this.db.exec(`CREATE INDEX ${name}_shadow ON ${name}(hlc) WHERE shadow IS NOT NULL`);
    this.ensureTombstoneIndex(name);
    return have === undefined ? 'created' : 'rebuilt';
  }

  /** Tombstones by age, for collecting them past the history horizon without scanning live clocks. */
  private ensureTombstoneIndex(name: string): void {
    this.db.exec(`CREATE INDEX IF NOT EXISTS ${name}_tombstone ON ${name}(hlc) WHERE deleted = 1`);
  }

  /**
   * Collect at most `limit` tombstones of `tid` older than `below` (the history horizon): a
   * delete that old is known to every replica, and a snapshot holds its outcome. Returns how many.
   */
  collectTombstones(tid: number, below: bigint, limit: number): number {
    const name = ClockStore.tableName(tid);
    const ks = Array.from({ length: this.schema(tid).keyColumns.length }, (_, i) => `k${i}`).join(', ');
    return this.db.prepare(`DELETE FROM ${name} WHERE (${ks}) IN (SELECT ${ks} FROM ${name} WHERE deleted = 1 AND hlc < ? LIMIT ?)`)
      .run(below, BigInt(limit)).changes;
  }

  tombstoneCount(tid: number): number {
    if (!this.schemas.has(tid)) return 0;
    return Number(this.db.prepare(`SELECT count(*) FROM ${ClockStore.tableName(tid)} WHERE deleted = 1`).pluck().get() as bigint);
  }

  /**
   * Restore past the history horizon: an SQL condition on the clock table of `tid` (named in full,
   * bound to one parameter, the horizon) selecting its entries older than the horizon that the
   * attached snapshot's clock table has no version of at least as new. The snapshot's replica has
   * collected tombstones up to that horizon, so for versions that old its absence of a key means
   * deleted, and its version is the cluster's.
   */
  static olderThanSnapshot(tid: number, arity: number, from: string, fromClock: string): string {
    const c = `main.${ClockStore.tableName(tid)}`;
    const on = Array.from({ length: arity }, (_, i) => `s.k${i} IS ${c}.k${i}`).join(' AND ');
    return `${c}.hlc < ? AND NOT EXISTS (SELECT 1 FROM ${quoteIdent(from)}.${quoteIdent(fromClock)} s WHERE ${on} AND s.hlc >= ${c}.hlc)`;
  }

  /** Drop the clock entries of `tid` that `where` (a condition on the table named in full) selects, in the caller's transaction. */
  forgetWhere(tid: number, where: string, params: readonly unknown[]): number {
    return this.db.prepare(`DELETE FROM main.${ClockStore.tableName(tid)} WHERE ${where}`).run(...params).changes;
  }

  exists(tid: number): boolean {
    return this.db.conn.prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?").pluck().get(ClockStore.tableName(tid)) !== undefined;
  }

  private where(n: number, key: readonly SqlValue[] | null): string {
    return Array.from({ length: n }, (_, i) => `k${i} = ${key ? placeholder(key[i]!) : '?'}`).join(' AND ');
  }

  private upsertSql(tid: number, key: readonly SqlValue[] | null, onlyIfNewer: boolean): string {
    const n = this.schema(tid).keyColumns.length;
    const ks = Array.from({ length: n }, (_, i) => `k${i}`);
    const vals = ks.map((_, i) => (key ? placeholder(key[i]!) : '?'));
    // The key columns are updated too: the clock keeps the bytes of the key of the version it describes.
    return `INSERT INTO ${ClockStore.tableName(tid)}(${ks.join(', ')}, hlc, node, deleted, shadow, shadow_cols) `
      + `VALUES (${vals.join(', ')}, ?, ?, ?, ?, ?) ON CONFLICT(${ks.join(', ')}) DO UPDATE SET `
      + `${ks.map((k) => `${k} = excluded.${k}`).join(', ')}, hlc = excluded.hlc, node = excluded.node, `
      + `deleted = excluded.deleted, shadow = excluded.shadow, shadow_cols = excluded.shadow_cols`
      + (onlyIfNewer ? ' WHERE excluded.hlc > hlc' : '');
  }

  private schema(tid: number): TableSchema {
    const s = this.schemas.get(tid);
    assert(s, `no clock table set up for tid ${tid}`);
    return s;
  }

  private statements(tid: number): ClockStatements {
    let s = this.stmts.get(tid);
    if (s) return s;
    const n = this.schema(tid).keyColumns.length;
    s = {
      get: new ExactSelect(this.db.conn, ['hlc', 'node', 'deleted', 'shadow', 'shadow_cols'], `FROM ${ClockStore.tableName(tid)} WHERE ${this.where(n, null)}`),
      upsert: this.db.conn.prepare(this.upsertSql(tid, null, false)),
      upsertIfNewer: this.db.conn.prepare(this.upsertSql(tid, null, true)),
    };
    this.stmts.set(tid, s);
    return s;
  }

  get(tid: number, key: readonly SqlValue[]): RowClock | undefined {
    const n = this.schema(tid).keyColumns.length;
    const row = hasTextBytes(key)
      ? this.db.prepare(`SELECT hlc, node, deleted, shadow, shadow_cols FROM ${ClockStore.tableName(tid)} WHERE ${this.where(n, key)}`).raw(true).get(...bindable(key)) as SqlValue[] | undefined
      : this.statements(tid).get.get(...key);
    if (!row) return undefined;
    const shadow = row[3] === null ? null : { image: row[3] as Buffer, columns: JSON.parse(row[4] as string) as string[] };
    return { hlc: row[0] as bigint, node: row[1] as string, deleted: row[2] === 1n, shadow };
  }

  set(tid: number, key: readonly SqlValue[], hlc: bigint, node: string, deleted: boolean, shadow: Shadow | null = null): void {
    const params = [...bindable(key), hlc, node, deleted ? 1n : 0n, shadow?.image ?? null, shadow ? JSON.stringify(shadow.columns) : null];
    if (hasTextBytes(key)) this.db.prepare(this.upsertSql(tid, key, false)).run(...params);
    else this.statements(tid).upsert.run(...params);
  }

  /** A local stamp: written only when above the row's clock; false when the row already carries a clock ≥ hlc. */
  setIfNewer(tid: number, key: readonly SqlValue[], hlc: bigint, node: string, deleted: boolean): boolean {
    const params = [...bindable(key), hlc, node, deleted ? 1n : 0n, null, null];
    const stmt = hasTextBytes(key) ? this.db.prepare(this.upsertSql(tid, key, true)) : this.statements(tid).upsertIfNewer;
    return stmt.run(...params).changes > 0;
  }

  /** Versions hidden by UNIQUE clashes in `tid`, strongest (hlc, node) first, at most `limit`. */
  shadowed(tid: number, limit: number): ShadowedRow[] {
    const n = this.schema(tid).keyColumns.length;
    const ks = Array.from({ length: n }, (_, i) => `k${i}`);
    const rows = new ExactSelect(this.db.conn, [...ks, 'hlc', 'node', 'shadow', 'shadow_cols'],
      `FROM ${ClockStore.tableName(tid)} WHERE shadow IS NOT NULL ORDER BY hlc DESC, node DESC LIMIT ?`).all(BigInt(limit));
    return rows.map((r) => ({
      key: r.slice(0, n), hlc: r[n] as bigint, node: r[n + 1] as string,
      shadow: { image: r[n + 2] as Buffer, columns: JSON.parse(r[n + 3] as string) as string[] },
    }));
  }

  shadowCount(tid: number): number {
    if (!this.schemas.has(tid)) return 0;
    return Number(this.db.prepare(`SELECT count(*) FROM ${ClockStore.tableName(tid)} WHERE shadow IS NOT NULL`).pluck().get() as bigint);
  }

  /**
   * A SELECT of every key the existing clock table of `tid` says is live, and how many key columns
   * it has (a recreated table gets each restamped: absent now ⇒ a delete). Null without a table.
   */
  liveKeys(tid: number): { select: string; arity: number } | null {
    const name = ClockStore.tableName(tid);
    const cols = (this.db.conn.prepare(`PRAGMA main.table_info(${name})`).all() as { name: string }[]).map((c) => c.name).filter((c) => /^k\d+$/.test(c));
    if (cols.length === 0) return null;
    return { select: `SELECT ${cols.join(', ')} FROM ${name} WHERE deleted = 0`, arity: cols.length };
  }

  /**
   * Restore: copy every clock entry of an attached snapshot's clock table (same key declaration)
   * into this empty clock table, and return the highest HLC copied (0 when none).
   */
  copyFrom(tid: number, from: string, fromTable: string): bigint {
    const name = ClockStore.tableName(tid);
    this.db.prepare(`INSERT INTO ${name} SELECT * FROM ${quoteIdent(from)}.${quoteIdent(fromTable)}`).run();
    return (this.db.prepare(`SELECT max(hlc) FROM ${name}`).pluck().get() as bigint | null) ?? 0n;
  }

  /** SQL condition: the user-table row aliased `r` has no clock entry (backfill of rows written while not captured). */
  static noClockFor(tid: number, schema: TableSchema): string {
    const on = schema.keyColumns.map((k, i) => `c.k${i} = r.${k === 'rowid' ? 'rowid' : quoteIdent(k)}`).join(' AND ');
    return `NOT EXISTS (SELECT 1 FROM ${ClockStore.tableName(tid)} c WHERE ${on})`;
  }
}
