/**
 * The chaos workload's schema changes: while the writers run, the runner applies DDL steps to
 * tables of their own (ddl_0, ddl_1, …) on a random node — through that node's file, burrow up
 * or not — as an application's migration would: create with rows, ADD COLUMN with an UPDATE in
 * the same transaction, an index, a column rename, a table rebuilt in one transaction (create
 * new, copy, drop, rename), a table rename, a drop. A step whose table is not on that node yet
 * (not replicated there yet, or undone by a conflict) fails like a migration would, is counted,
 * and the workload moves on. At the end every
 * node must hold the same schema and the same rows in these tables.
 */
import BetterSqlite3 from 'better-sqlite3';

/** The user's schema objects of a database, in a stable order (burrow's and SQLite's own left out). */
export function schemaOf(db: BetterSqlite3.Database): string[] {
  return (db.prepare("SELECT type || ' ' || name || ': ' || sql AS o FROM sqlite_schema WHERE sql IS NOT NULL "
    + "AND name NOT LIKE '\\_\\_burrow%' ESCAPE '\\' AND tbl_name NOT LIKE '\\_\\_burrow%' ESCAPE '\\' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY type, name")
    .pluck().all() as string[]);
}

/** Every row of the DDL workload's tables, as text, in a stable order. */
export function ddlRowsOf(db: BetterSqlite3.Database): string[] {
  const tables = db.prepare("SELECT name FROM sqlite_schema WHERE type = 'table' AND name LIKE 'ddl\\_%' ESCAPE '\\' ORDER BY name").pluck().all() as string[];
  return tables.flatMap((t) => (db.prepare(`SELECT * FROM "${t}"`).raw(true).all() as unknown[][]).map((r) => `${t}: ${JSON.stringify(r, (_k, v) => (typeof v === 'bigint' ? v.toString() : v))}`)).sort();
}

const steps: readonly ((t: string, i: number) => string)[] = [
  (t, i) => `CREATE TABLE ${t}(id INTEGER PRIMARY KEY, a TEXT); INSERT INTO ${t} VALUES (1, 'a${i}'), (2, 'b${i}');`,
  (t) => `BEGIN; ALTER TABLE ${t} ADD COLUMN b INTEGER DEFAULT 0; UPDATE ${t} SET b = id * 10; COMMIT;`,
  (t) => `CREATE INDEX ${t}_a ON ${t}(a); INSERT INTO ${t}(id, a, b) VALUES (3, 'c', 30);`,
  (t) => `ALTER TABLE ${t} RENAME COLUMN a TO label;`,
  (t) => `BEGIN; CREATE TABLE ${t}_new(id INTEGER PRIMARY KEY, label TEXT NOT NULL DEFAULT '', b INTEGER, c TEXT);
    INSERT INTO ${t}_new(id, label, b) SELECT id, coalesce(label, ''), b FROM ${t}; DROP TABLE ${t}; ALTER TABLE ${t}_new RENAME TO ${t}; COMMIT;`,
  (t) => `UPDATE ${t} SET c = 'rebuilt' WHERE id = 1; ALTER TABLE ${t} RENAME TO ${t}_r;`,
  (t) => `DROP TABLE ${t}_r;`,
];

/** Seeded steps over tables of their own; `apply` runs the next step on a node's file. */
export class DdlWorkload {
  applied = 0;
  failed = 0;
  private next = 0;

  /** Run the next step (cycling over tables ddl_0, ddl_1, …) on `file`; true when it committed. */
  apply(file: string): boolean {
    const table = Math.floor(this.next / steps.length);
    const step = this.next % steps.length;
    const db = new BetterSqlite3(file, { timeout: 10_000 });
    try {
      db.exec(steps[step]!(`ddl_${table}`, table));
      this.applied++;
      this.next++;
      return true;
    } catch {
      // Like a migration that failed on this node (its table not here yet, or the cluster's order
      // undid an earlier step): the workload moves on to the next step.
      if (db.inTransaction) db.exec('ROLLBACK');
      this.failed++;
      this.next++;
      return false;
    } finally {
      db.close();
    }
  }
}
