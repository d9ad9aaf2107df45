import type { Database } from '../sqlite/database.ts';
import { quoteIdent } from '../sqlite/database.ts';
import { bindable, ExactSelect, hasTextBytes, placeholder } from '../sqlite/exact.ts';
import type { SqlValue } from '../codec/value-codec.ts';
import { logKeyColumnsMax } from '../sqlite/internal-schema.ts';
import { ClockStore } from '../store/clock-store.ts';
import type { Logger } from '../util/log.ts';
import { assert } from '../util/assert.ts';
import { scanSchema, type SkippedTable, type TableSchema } from './schema.ts';

/** A table burrow captures: its local id (tid, used in triggers, log and clock) and schema. */
export interface CapturedTable {
  readonly tid: number;
  readonly schema: TableSchema;
  /** Positions of the key columns in schema.columns (row image → key). */
  readonly keyIndexes: readonly number[];
  /** The row with this key as it is now (exact values, stored columns in order), or undefined. */
  readRow(key: readonly SqlValue[]): SqlValue[] | undefined;
}

export interface RefreshResult {
  readonly added: readonly string[];
  readonly retriggered: readonly string[];
  /** Tables dropped and created again since the last scan: every row and old key restamped. */
  readonly recreated: readonly string[];
  readonly removed: readonly string[];
  readonly backfilled: number;
}

/** Rows a table holds that cannot be replicated (NULL in the primary key, written before capture). */
export interface RefusedRows {
  readonly table: string;
  readonly rows: number;
  readonly reason: string;
}

const triggerPrefix = '__burrow_trg_';
export const defaultRowBytesMax = 4 * 1024 * 1024;

/** `WHERE` over the key columns with each column's primary-key collation (SQLite's row identity). */
export function keyWhere(schema: TableSchema, key: readonly SqlValue[] | null = null): string {
  return schema.keyColumns.map((c, i) =>
    `${c === 'rowid' ? 'rowid' : quoteIdent(c)} = ${key ? placeholder(key[i]!) : '?'} COLLATE ${quoteIdent(schema.keyDecls[i]!.collation)}`).join(' AND ');
}

function capturedTable(db: Database, tid: number, schema: TableSchema): CapturedTable {
  const cols = schema.columns.map(quoteIdent);
  const from = `FROM main.${quoteIdent(schema.name)} WHERE `;
  const fast = new ExactSelect(db.conn, cols, from + keyWhere(schema));
  return {
    tid,
    schema,
    keyIndexes: schema.keyColumns.map((k) => schema.columns.indexOf(k)),
    readRow: (key) => (hasTextBytes(key) ? new ExactSelect(db.conn, cols, from + keyWhere(schema, key)).get(...bindable(key)) : fast.get(...key)),
  };
}

/**
 * Change capture: installs the triggers that write changed keys into __burrow_log in the writer's
 * own transaction, keeps them and the per-table clock tables in step with the schema, and owns the
 * registry of captured tables (__burrow_tables). Triggers use plain SQL only (any process can
 * write). The schema is always read inside the write transaction that uses it (`sync`).
 */
export class Capture {
  private byNameMap = new Map<string, CapturedTable>();
  private byTidMap = new Map<number, CapturedTable>();
  private skippedTables: readonly SkippedTable[] = [];
  private refused: RefusedRows[] = [];
  private warnedSkipped = new Set<string>();
  private warnedRowid = new Set<string>();
  /** schema_version this registry was built from (read inside the transaction that built it). */
  private seenSchemaVersion = -1n;
  /** Bumped by every refresh: holders of per-table statements rebuild them. */
  generation = 0;
  /** Tables burrow itself rebuilt (a replicated schema change): the same table, rows and clocks kept, not restamped. */
  private readonly adopted = new Set<string>();

  constructor(private readonly db: Database, private readonly clocks: ClockStore, private readonly log: Logger) {}

  byName(name: string): CapturedTable | undefined {
    return this.byNameMap.get(name);
  }

  byTid(tid: number): CapturedTable | undefined {
    return this.byTidMap.get(tid);
  }

  tables(): CapturedTable[] {
    return [...this.byNameMap.values()];
  }

  skipped(): readonly SkippedTable[] {
    return this.skippedTables;
  }

  refusedRows(): readonly RefusedRows[] {
    return this.refused;
  }

  /** The next refresh treats `name` as the table it had (burrow rebuilt it with its rows and clocks). */
  adopt(name: string): void {
    this.adopted.add(name);
  }

  /**
   * A table renamed (by the application, or by burrow applying a replicated rename): the same
   * table under its new name — its id, clock table and triggers go with it, nothing is restamped.
   * In the caller's write transaction, before the next refresh.
   */
  renameTable(from: string, to: string): void {
    // A registration the new name got before the rename was known (a refresh saw it first) goes, with its clocks.
    const stale = this.db.conn.prepare('SELECT tid FROM __burrow_tables WHERE name = ?').pluck().get(to) as bigint | undefined;
    if (stale !== undefined && to !== from) {
      this.db.conn.prepare('DELETE FROM __burrow_tables WHERE tid = ?').run(stale);
      this.clocks.drop(Number(stale));
    }
    this.db.conn.prepare('UPDATE __burrow_tables SET name = ? WHERE name = ?').run(to, from);
  }

  /**
   * Every row of a captured table queued for stamping (its new images go to every node): after
   * burrow changed the table under this node's own rows in a way other nodes did not see.
   */
  restampAll(name: string): number {
    const t = this.byNameMap.get(name);
    return t ? this.queueRows(t, false) : 0;
  }

  /** Refresh in its own write transaction (start-up). */
  refresh(): RefreshResult {
    return this.db.writeTx(() => this.refreshInTx());
  }

  /**
   * Inside a write transaction: rescan when the schema changed since the last scan. The caller
   * holds the write lock, so nothing can change the schema between this check and its COMMIT.
   */
  sync(): RefreshResult | null {
    assert(this.db.conn.inTransaction, 'Capture.sync outside a write transaction');
    if (this.db.schemaVersion() === this.seenSchemaVersion) return null;
    return this.refreshInTx();
  }

  /**
   * Bring triggers, clock tables and registry in line with the schema: new tables get triggers,
   * dropped-and-recreated tables are new tables (their old keys and all rows are restamped), rows
   * without a clock (written before capture) are queued into the log.
   */
  private refreshInTx(): RefreshResult {
    assert(this.db.conn.inTransaction, 'refresh outside a write transaction');
    const res = { added: [] as string[], retriggered: [] as string[], recreated: [] as string[], removed: [] as string[], backfilled: 0 };
    const scan = scanSchema(this.db.conn);
    this.skippedTables = scan.skipped;
    this.warnSkipped(scan.skipped);
    const registered = new Map<string, number>();
    for (const [tid, name] of this.db.conn.prepare('SELECT tid, name FROM __burrow_tables').raw(true).all() as [bigint, string][]) {
      registered.set(name, Number(tid));
    }
    const installed = new Map<string, { table: string; sql: string }>();
    for (const r of this.db.conn.prepare(
      "SELECT name, tbl_name, sql FROM sqlite_master WHERE type = 'trigger' AND substr(name, 1, ?) = ?",
    ).all(BigInt(triggerPrefix.length), triggerPrefix) as { name: string; tbl_name: string; sql: string }[]) {
      installed.set(r.name, { table: r.tbl_name, sql: r.sql });
    }
    const wanted = new Set<string>();
    const next = new Map<string, CapturedTable>();
    const refused: RefusedRows[] = [];
    for (const schema of scan.tables.values()) {
      const t = this.setUpTable(schema, registered.get(schema.name), installed, wanted, res);
      if (!t) continue;
      next.set(schema.name, t);
      const nulls = this.nullKeyRows(schema);
      if (nulls > 0) refused.push({ table: schema.name, rows: nulls, reason: 'NULL in a PRIMARY KEY column (written before burrow captured the table): not replicated; give these rows a key' });
    }
    for (const [name] of installed) if (!wanted.has(name)) this.db.exec(`DROP TRIGGER IF EXISTS ${quoteIdent(name)}`);
    for (const name of this.byNameMap.keys()) if (!next.has(name)) res.removed.push(name);
    for (const r of refused) {
      if (!this.refused.some((o) => o.table === r.table && o.rows === r.rows)) this.log.warn('rows not replicated', { ...r });
    }
    this.refused = refused;
    this.byNameMap = next;
    this.byTidMap = new Map([...next.values()].map((t) => [t.tid, t]));
    this.adopted.clear();
    this.db.clearStatements();
    this.seenSchemaVersion = this.db.schemaVersion();
    this.generation++;
    if (this.generation > 1 && (res.added.length || res.retriggered.length || res.removed.length || res.recreated.length)) {
      this.log.info('schema changed', {
        added: res.added.join(',') || undefined, retriggered: res.retriggered.join(',') || undefined, recreated: res.recreated.join(',') || undefined,
        removed: res.removed.join(',') || undefined, queued: res.backfilled || undefined,
      });
    }
    return res;
  }

  private warnSkipped(skipped: readonly SkippedTable[]): void {
    for (const s of skipped) {
      if (this.warnedSkipped.has(s.name)) continue;
      this.warnedSkipped.add(s.name);
      this.log.warn('table not captured', { table: s.name, reason: s.reason });
    }
  }

  /** Register, clock and trigger one table; backfill what needs stamping. */
  private setUpTable(schema: TableSchema, known: number | undefined, installed: Map<string, { table: string; sql: string }>,
    wanted: Set<string>, res: { added: string[]; retriggered: string[]; recreated: string[]; backfilled: number }): CapturedTable | null {
    let tid = known;
    const isNew = tid === undefined;
    if (tid === undefined) {
      const above = Math.max(this.clocks.highestTid(), Number(this.db.conn.prepare('SELECT coalesce(max(tid), 0) FROM __burrow_tables').pluck().get() as bigint));
      tid = Number(this.db.conn.prepare('INSERT INTO __burrow_tables(tid, name, key_columns) VALUES (?, ?, ?) RETURNING tid')
        .pluck().get(BigInt(above + 1), schema.name, JSON.stringify(schema.keyColumns)) as bigint);
    } else {
      this.db.conn.prepare('UPDATE __burrow_tables SET key_columns = ? WHERE tid = ?').run(JSON.stringify(schema.keyColumns), tid);
    }
    const triggers = triggerSql(tid, schema);
    // Our triggers are gone from a table we captured: it was dropped (and created again) since.
    const recreated = !isNew && !this.adopted.has(schema.name) && !triggers.some(([name]) => installed.get(name)?.table === schema.name);
    let restamped = 0;
    const old = recreated ? this.clocks.liveKeys(tid) : null;
    if (old && old.arity === schema.keyColumns.length) restamped += this.queueKeys(tid, schema, old.select);
    else if (old) this.log.warn('recreated table has a different number of key columns: its old rows are not deleted elsewhere', { table: schema.name });
    let clock: 'created' | 'kept' | 'rebuilt';
    try {
      clock = this.clocks.ensure(tid, schema);
    } catch (err) {
      this.log.warn('table not captured', { table: schema.name, reason: `clock table: ${(err as Error).message}` });
      return null;
    }
    let changed = false;
    for (const [name, sql] of triggers) {
      wanted.add(name);
      const have = installed.get(name);
      if (have && have.sql === sql && have.table === schema.name) continue;
      if (have) this.db.exec(`DROP TRIGGER ${quoteIdent(name)}`);
      this.db.exec(sql);
      changed = true;
    }
    const table = capturedTable(this.db, tid, schema);
    if (recreated) {
      restamped += this.queueRows(table, false);
      res.recreated.push(schema.name);
      this.log.warn('table was dropped and created again: every row and every old key is restamped (old rows are deleted everywhere)', { table: schema.name });
    } else if (isNew || changed || clock !== 'kept') {
      restamped += this.queueRows(table, clock === 'kept');
    }
    res.backfilled += restamped;
    if (isNew) res.added.push(schema.name);
    else if (changed && !recreated) res.retriggered.push(schema.name);
    this.warnRowid(schema);
    return table;
  }

  private warnRowid(schema: TableSchema): void {
    if (!schema.rowidKeyed || this.warnedRowid.has(schema.name)) return;
    this.warnedRowid.add(schema.name);
    this.log.warn('table has no PRIMARY KEY: rows are keyed by rowid, which collides when several nodes insert; declare a primary key',
      { table: schema.name });
  }

  /** INSERT INTO __burrow_log the keys a SELECT returns (in SQL: the values are copied exactly). */
  private queueKeys(tid: number, schema: TableSchema, select: string): number {
    const n = schema.keyColumns.length;
    return this.db.conn.prepare(`INSERT INTO __burrow_log(tid, ${Array.from({ length: n }, (_, i) => `k${i}`).join(', ')}) SELECT ${tid}, * FROM (${select})`).run().changes;
  }

  /** Queue rows for stamping: those without a clock entry (`onlyUnclocked`) or all; never keys with NULL. */
  private queueRows(table: CapturedTable, onlyUnclocked: boolean): number {
    const { schema, tid } = table;
    const keys = schema.keyColumns.map((k) => `r.${k === 'rowid' ? 'rowid' : quoteIdent(k)}`);
    const conds = [...keys.map((k) => `${k} IS NOT NULL`), ...(onlyUnclocked ? [ClockStore.noClockFor(tid, schema)] : [])];
    const count = this.queueKeys(tid, schema, `SELECT ${keys.join(', ')} FROM main.${quoteIdent(schema.name)} r WHERE ${conds.join(' AND ')}`);
    if (count > 0) this.log.info('queued rows for stamping', { table: schema.name, rows: count, reason: onlyUnclocked ? 'written while not captured' : 'table recreated' });
    return count;
  }

  private nullKeyRows(schema: TableSchema): number {
    if (!schema.keyDecls.some((d) => d.nullable)) return 0;
    const cond = schema.keyColumns.filter((_, i) => schema.keyDecls[i]!.nullable).map((k) => `${quoteIdent(k)} IS NULL`).join(' OR ');
    return Number(this.db.conn.prepare(`SELECT count(*) FROM main.${quoteIdent(schema.name)} WHERE ${cond}`).pluck().get() as bigint);
  }
}

function keyRef(prefix: 'NEW' | 'OLD', col: string): string {
  return col === 'rowid' ? `${prefix}.rowid` : `${prefix}.${quoteIdent(col)}`;
}

function sqlString(s: string): string {
  return `'${s.replaceAll("'", "''")}'`;
}

/**
 * The capture triggers of a table: [name, CREATE TRIGGER sql].
 * - ins/upd/del (AFTER): log the key; an UPDATE that moves the key (under the key's collation) logs the old key too.
 * - ri/ru (BEFORE, tables with secondary UNIQUE indexes): log the keys of rows holding the new
 *   unique values. `INSERT OR REPLACE` deletes such rows without firing delete triggers (unless the
 *   writer set recursive_triggers), so their deletion would otherwise go unseen; when the statement
 *   fails instead, its log rows roll back with it.
 * - nk/nu (BEFORE, non-integer keys of rowid tables that may be NULL): refuse a NULL key. SQLite
 *   allows it, but NULL identifies no row (NULLs are distinct), so it cannot be replicated.
 */
export function triggerSql(tid: number, schema: TableSchema): [string, string][] {
  const n = schema.keyColumns.length;
  if (n > logKeyColumnsMax) throw new Error(`too many key columns for ${schema.name}`);
  const cols = `tid, ${Array.from({ length: n }, (_, i) => `k${i}`).join(', ')}`;
  const newKey = schema.keyColumns.map((c) => keyRef('NEW', c)).join(', ');
  const oldKey = schema.keyColumns.map((c) => keyRef('OLD', c)).join(', ');
  const keyMoved = schema.keyColumns.map((c, i) =>
    `${keyRef('OLD', c)} IS NOT ${keyRef('NEW', c)} COLLATE ${quoteIdent(schema.keyDecls[i]!.collation)}`).join(' OR ');
  const on = `main.${quoteIdent(schema.name)}`;
  const when = 'WHEN (SELECT applying FROM __burrow_state) = 0';
  const t = (kind: string) => `${triggerPrefix}${tid}_${kind}`;
  // No row-size guard in the triggers: one naming every column makes ALTER TABLE DROP COLUMN fail
  // for every client ("error in trigger … no such column"); oversized rows are caught when stamped.
  const out: [string, string][] = [
    [t('ins'), `CREATE TRIGGER ${quoteIdent(t('ins'))} AFTER INSERT ON ${on} ${when} BEGIN INSERT INTO __burrow_log(${cols}) VALUES (${tid}, ${newKey}); END`],
    [t('upd'), `CREATE TRIGGER ${quoteIdent(t('upd'))} AFTER UPDATE ON ${on} ${when} BEGIN `
      + `INSERT INTO __burrow_log(${cols}) SELECT ${tid}, ${oldKey} WHERE ${keyMoved}; `
      + `INSERT INTO __burrow_log(${cols}) VALUES (${tid}, ${newKey}); END`],
    [t('del'), `CREATE TRIGGER ${quoteIdent(t('del'))} AFTER DELETE ON ${on} ${when} BEGIN INSERT INTO __burrow_log(${cols}) VALUES (${tid}, ${oldKey}); END`],
  ];
  if (schema.uniqueIndexes.length > 0) {
    const rowKey = schema.keyColumns.map((c) => (c === 'rowid' ? 'rowid' : quoteIdent(c))).join(', ');
    const rivals = schema.uniqueIndexes.map((ix) => `INSERT INTO __burrow_log(${cols}) SELECT ${tid}, ${rowKey} FROM ${on} WHERE `
      + ix.columns.map((c, i) => `${quoteIdent(c)} = NEW.${quoteIdent(c)} COLLATE ${quoteIdent(ix.collations[i]!)}`).join(' AND ') + ';').join(' ');
    const uniqueCols = [...new Set(schema.uniqueIndexes.flatMap((ix) => ix.columns))].map(quoteIdent).join(', ');
    out.push([t('ri'), `CREATE TRIGGER ${quoteIdent(t('ri'))} BEFORE INSERT ON ${on} ${when} BEGIN ${rivals} END`]);
    out.push([t('ru'), `CREATE TRIGGER ${quoteIdent(t('ru'))} BEFORE UPDATE OF ${uniqueCols} ON ${on} ${when} BEGIN ${rivals} END`]);
  }
  const nullable = schema.keyColumns.filter((_, i) => schema.keyDecls[i]!.nullable);
  if (nullable.length > 0) {
    const isNull = nullable.map((c) => `NEW.${quoteIdent(c)} IS NULL`).join(' OR ');
    const msg = sqlString(`burrow: NULL in PRIMARY KEY column ${nullable.join('/')} of table ${schema.name} cannot be replicated (declare the key NOT NULL)`);
    out.push([t('nk'), `CREATE TRIGGER ${quoteIdent(t('nk'))} BEFORE INSERT ON ${on} WHEN ${isNull} BEGIN SELECT RAISE(ABORT, ${msg}); END`]);
    out.push([t('nu'), `CREATE TRIGGER ${quoteIdent(t('nu'))} BEFORE UPDATE OF ${nullable.map(quoteIdent).join(', ')} ON ${on} WHEN ${isNull} BEGIN SELECT RAISE(ABORT, ${msg}); END`]);
  }
  return out;
}
