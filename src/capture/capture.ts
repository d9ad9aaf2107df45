import type { Database, Statement } from '../sqlite/database.ts';
import { quoteIdent } from '../sqlite/database.ts';
import { encodeValues, type SqlValue } from '../codec/value-codec.ts';
import { logKeyColumnsMax } from '../sqlite/internal-schema.ts';
import type { Logger } from '../util/log.ts';
import { scanSchema, type SkippedTable, type TableSchema } from './schema.ts';

/** A table burrow captures: its local id (tid, used in triggers, log and clock) and schema. */
export interface CapturedTable {
  readonly tid: number;
  readonly schema: TableSchema;
  /** SELECT <columns> FROM t WHERE <key> — raw rows (arrays). */
  readonly selectRow: Statement;
}

export interface RefreshResult {
  readonly added: readonly string[];
  readonly retriggered: readonly string[];
  readonly removed: readonly string[];
  readonly backfilled: number;
}

const triggerPrefix = '__burrow_trg_';

/**
 * Change capture: installs the AFTER INSERT/UPDATE/DELETE triggers that write the changed keys
 * into __burrow_log in the writer's own transaction, keeps them in step with the schema, and
 * owns the registry of captured tables. Triggers use plain SQL only (any process can write).
 */
export class Capture {
  private byNameMap = new Map<string, CapturedTable>();
  private byTidMap = new Map<number, CapturedTable>();
  private skippedTables: readonly SkippedTable[] = [];
  private warnedSkipped = new Set<string>();
  private warnedRowid = new Set<string>();

  constructor(private readonly db: Database, private readonly log: Logger) {}

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

  /**
   * Bring triggers and registry in line with the schema: new tables get triggers, changed keys
   * get new triggers, dropped tables lose theirs. Rows of a newly captured table that have no
   * clock entry yet (written before capture existed) are queued into the log, so a table created
   * and filled between two polls is not missed. Runs in one write transaction.
   */
  refresh(): RefreshResult {
    const added: string[] = [];
    const retriggered: string[] = [];
    const removed: string[] = [];
    let backfilled = 0;
    this.db.writeTx(() => {
      const scan = scanSchema(this.db.conn);
      this.skippedTables = scan.skipped;
      for (const s of scan.skipped) {
        if (this.warnedSkipped.has(s.name)) continue;
        this.warnedSkipped.add(s.name);
        this.log.warn('table not captured', { table: s.name, reason: s.reason });
      }
      const registered = new Map<string, { tid: number; keyColumns: string }>();
      for (const r of this.db.conn.prepare('SELECT tid, name, key_columns FROM __burrow_tables').all() as
        { tid: bigint; name: string; key_columns: string }[]) {
        registered.set(r.name, { tid: Number(r.tid), keyColumns: r.key_columns });
      }
      const installed = new Map<string, { table: string; sql: string }>();
      for (const r of this.db.conn.prepare(
        "SELECT name, tbl_name, sql FROM sqlite_master WHERE type = 'trigger' AND name LIKE '__burrow_trg_%'",
      ).all() as { name: string; tbl_name: string; sql: string }[]) {
        installed.set(r.name, { table: r.tbl_name, sql: r.sql });
      }

      const wanted = new Set<string>();
      const next = new Map<string, CapturedTable>();
      for (const schema of scan.tables.values()) {
        let reg = registered.get(schema.name);
        const keyJson = JSON.stringify(schema.keyColumns);
        let isNew = false;
        if (!reg) {
          const tid = Number(this.db.conn.prepare(
            'INSERT INTO __burrow_tables(name, key_columns) VALUES (?, ?) RETURNING tid',
          ).pluck().get(schema.name, keyJson) as bigint);
          reg = { tid, keyColumns: keyJson };
          isNew = true;
        } else if (reg.keyColumns !== keyJson) {
          this.db.conn.prepare('UPDATE __burrow_tables SET key_columns = ? WHERE tid = ?').run(keyJson, reg.tid);
          reg = { tid: reg.tid, keyColumns: keyJson };
        }
        let changed = false;
        for (const [name, sql] of triggerSql(reg.tid, schema)) {
          wanted.add(name);
          const have = installed.get(name);
          if (have && have.sql === sql && have.table === schema.name) continue;
          if (have) this.db.exec(`DROP TRIGGER ${quoteIdent(name)}`);
          this.db.exec(sql);
          changed = true;
        }
        const table: CapturedTable = {
          tid: reg.tid,
          schema,
          selectRow: this.db.conn.prepare(
            `SELECT ${schema.columns.map(quoteIdent).join(', ')} FROM main.${quoteIdent(schema.name)} WHERE ${keyWhere(schema)}`,
          ).raw(true),
        };
        next.set(schema.name, table);
        if (isNew) added.push(schema.name);
        else if (changed) retriggered.push(schema.name);
        if (changed) backfilled += this.backfill(table);
        if (schema.rowidKeyed && !this.warnedRowid.has(schema.name)) {
          this.warnedRowid.add(schema.name);
          this.log.warn('table has no PRIMARY KEY: rows are keyed by rowid, which collides when several nodes insert; declare a primary key',
            { table: schema.name });
        }
      }
      for (const [name] of installed) {
        if (!wanted.has(name)) this.db.exec(`DROP TRIGGER IF EXISTS ${quoteIdent(name)}`);
      }
      for (const name of this.byNameMap.keys()) if (!next.has(name)) removed.push(name);
      this.byNameMap = next;
      this.byTidMap = new Map([...next.values()].map((t) => [t.tid, t]));
    });
    this.db.clearStatements();
    return { added, retriggered, removed, backfilled };
  }

  /** Queue into the log every row of `table` that has no clock entry (written while not captured). */
  private backfill(table: CapturedTable): number {
    const { schema, tid } = table;
    const keys = this.db.conn.prepare(
      `SELECT ${schema.keyColumns.map(quoteIdent).join(', ')} FROM main.${quoteIdent(schema.name)}`,
    ).raw(true);
    const hasClock = this.db.conn.prepare('SELECT 1 FROM __burrow_clock WHERE tid = ? AND pk = ?').pluck();
    const n = schema.keyColumns.length;
    const insert = this.db.conn.prepare(
      `INSERT INTO __burrow_log(tid, ${Array.from({ length: n }, (_, i) => `k${i}`).join(', ')}) VALUES (?${', ?'.repeat(n)})`,
    );
    let count = 0;
    for (const key of keys.all() as SqlValue[][]) {
      if (hasClock.get(tid, encodeValues(key)) !== undefined) continue;
      insert.run(tid, ...key);
      count++;
    }
    if (count > 0) this.log.info('queued rows written while the table was not captured', { table: schema.name, rows: count });
    return count;
  }
}

export function keyWhere(schema: TableSchema): string {
  return schema.keyColumns.map((c) => `${quoteIdent(c)} = ?`).join(' AND ');
}

function keyRef(prefix: 'NEW' | 'OLD', col: string): string {
  return col === 'rowid' ? `${prefix}.rowid` : `${prefix}.${quoteIdent(col)}`;
}

/** The three capture triggers of a table: [name, CREATE TRIGGER sql]. */
export function triggerSql(tid: number, schema: TableSchema): [string, string][] {
  const n = schema.keyColumns.length;
  if (n > logKeyColumnsMax) throw new Error(`too many key columns for ${schema.name}`);
  const cols = `tid, ${Array.from({ length: n }, (_, i) => `k${i}`).join(', ')}`;
  const newKey = schema.keyColumns.map((c) => keyRef('NEW', c)).join(', ');
  const oldKey = schema.keyColumns.map((c) => keyRef('OLD', c)).join(', ');
  const keyMoved = schema.keyColumns.map((c) => `${keyRef('OLD', c)} IS NOT ${keyRef('NEW', c)}`).join(' OR ');
  const on = `main.${quoteIdent(schema.name)}`;
  const when = 'WHEN (SELECT applying FROM __burrow_state) = 0';
  const t = (kind: string) => `${triggerPrefix}${tid}_${kind}`;
  return [
    [t('ins'), `CREATE TRIGGER ${quoteIdent(t('ins'))} AFTER INSERT ON ${on} ${when} BEGIN INSERT INTO __burrow_log(${cols}) VALUES (${tid}, ${newKey}); END`],
    [t('upd'), `CREATE TRIGGER ${quoteIdent(t('upd'))} AFTER UPDATE ON ${on} ${when} BEGIN `
      + `INSERT INTO __burrow_log(${cols}) SELECT ${tid}, ${oldKey} WHERE ${keyMoved}; `
      + `INSERT INTO __burrow_log(${cols}) VALUES (${tid}, ${newKey}); END`],
    [t('del'), `CREATE TRIGGER ${quoteIdent(t('del'))} AFTER DELETE ON ${on} ${when} BEGIN INSERT INTO __burrow_log(${cols}) VALUES (${tid}, ${oldKey}); END`],
  ];
}
