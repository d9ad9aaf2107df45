import type BetterSqlite3 from 'better-sqlite3';
import type { Rng } from './rng.ts';

/**
 * The simulation's schema changes (feature `ddl`): tables of their own (d0, d1, …) that one node
 * at a time migrates — through its application connection, as sqlite-utils or Alembic would — while
 * every node writes them under whatever definition it has at that moment. Burrow replicates the
 * DDL; at the end every node must hold the same schema objects and the same rows in these tables
 * (no oracle: which write wins across a rebuild is burrow's to decide, only that all agree).
 */

/** The steps of one table's life, in order; a step whose table is not on its node fails like a migration would. */
const steps: readonly ((t: string) => string)[] = [
  (t) => `CREATE TABLE ${t}(id INTEGER PRIMARY KEY, a TEXT); INSERT INTO ${t} VALUES (1, 'a1'), (2, 'b1');`,
  (t) => `BEGIN; ALTER TABLE ${t} ADD COLUMN b INTEGER DEFAULT 0; UPDATE ${t} SET b = id * 10; COMMIT;`,
  (t) => `CREATE INDEX ${t}_a ON ${t}(a); INSERT INTO ${t}(id, a) VALUES (3, 'c');`,
  (t) => `ALTER TABLE ${t} RENAME COLUMN a TO label;`,
  (t) => `CREATE VIEW ${t}_v AS SELECT id, label FROM ${t};`,
  (t) => `BEGIN; CREATE TABLE ${t}_new(id INTEGER PRIMARY KEY, label TEXT NOT NULL DEFAULT '', b INTEGER, c TEXT);
    INSERT INTO ${t}_new(id, label, b) SELECT id, coalesce(label, ''), b FROM ${t}; DROP TABLE ${t}; ALTER TABLE ${t}_new RENAME TO ${t}; COMMIT;`,
  (t) => `ALTER TABLE ${t} DROP COLUMN c;`,
  (t) => `UPDATE ${t} SET b = 99 WHERE id = 1; ALTER TABLE ${t} RENAME TO ${t}_r;`,
  (t) => `DROP VIEW IF EXISTS ${t}_v; DROP TABLE ${t}_r;`,
];

/**
 * Rival migrations: now and then a node runs one of these on the current table instead of its next
 * step — another name for the same column or table, another added column, another index — so two
 * nodes' DDL of one table meet in the stream (the same column renamed twice, a table renamed on
 * two nodes, an ADD COLUMN on a table renamed meanwhile): the stream order decides, every node agrees.
 */
const rivals: readonly ((t: string) => string)[] = [
  (t) => `ALTER TABLE ${t} RENAME COLUMN a TO alt;`,
  (t) => `ALTER TABLE ${t} RENAME TO ${t}_x;`,
  (t) => `BEGIN; ALTER TABLE ${t} ADD COLUMN e TEXT DEFAULT 'e'; UPDATE ${t} SET e = 'e' || id; COMMIT;`,
  (t) => `CREATE INDEX ${t}_b ON ${t}(b); UPDATE ${t} SET b = 7 WHERE id = 2;`,
];

/** Tables at a time: after that many, the oldest has been dropped by its last step. */
const tablesMax = 2;

export class SimDdl {
  applied = 0;
  failed = 0;
  writes = 0;
  private next = 0;

  constructor(private readonly rng: Rng) {}

  /** Run the next step (table d0's steps, then d1's, …) on a node's application connection. */
  step(app: BetterSqlite3.Database): string {
    const table = `d${Math.floor(this.next / steps.length) % tablesMax}`;
    const rival = this.rng.int(5) === 0;
    const sql = rival ? this.rng.pick(rivals)(table) : steps[this.next % steps.length]!(table);
    if (!rival) this.next++;
    try {
      app.exec(sql);
      this.applied++;
      return `ddl ok: ${sql}`;
    } catch (err) {
      if (app.inTransaction) app.exec('ROLLBACK');
      this.failed++;
      return `ddl failed (${(err as Error).message}): ${sql}`;
    }
  }

  /** A write to one of the DDL tables this node has, naming only columns it has now. */
  write(app: BetterSqlite3.Database): string | null {
    const tables = app.prepare("SELECT name FROM sqlite_schema WHERE type = 'table' AND name GLOB 'd[0-9]*' ORDER BY name").pluck().all() as string[];
    if (tables.length === 0) return null;
    const t = this.rng.pick(tables);
    const cols = (app.prepare(`PRAGMA table_info("${t}")`).all() as { name: string; pk: bigint | number }[]).filter((c) => Number(c.pk) === 0).map((c) => c.name);
    const id = this.rng.between(1, 6);
    const value = (c: string) => (c === 'b' ? String(this.rng.between(0, 50)) : `'${c}${this.rng.between(0, 9)}'`);
    const r = this.rng.int(10);
    let sql: string;
    if (r < 5 && cols.length > 0) sql = `INSERT OR REPLACE INTO "${t}"(id, ${cols.map((c) => `"${c}"`).join(', ')}) VALUES (${id}, ${cols.map(value).join(', ')})`;
    else if (r < 8 && cols.length > 0) {
      const c = this.rng.pick(cols);
      sql = `UPDATE "${t}" SET "${c}" = ${value(c)} WHERE id = ${id}`;
    } else sql = `DELETE FROM "${t}" WHERE id = ${id}`;
    try {
      app.exec(sql);
      this.writes++;
      return sql;
    } catch (err) {
      return `refused (${(err as Error).message}): ${sql}`;
    }
  }
}

/** Every user schema object of a database (burrow's and SQLite's own left out), in a stable order. */
export function userObjects(db: BetterSqlite3.Database): string[] {
  return db.prepare("SELECT type || ' ' || name || ': ' || sql FROM sqlite_schema WHERE sql IS NOT NULL "
    + "AND name NOT LIKE '\\_\\_burrow%' ESCAPE '\\' AND tbl_name NOT LIKE '\\_\\_burrow%' ESCAPE '\\' ORDER BY type, name").pluck().all() as string[];
}

/** The DDL tables of a database (they are compared across nodes, not against the oracle). */
export function isDdlTable(name: string): boolean {
  return /^d[0-9]+(_r|_x)?$/.test(name);
}
