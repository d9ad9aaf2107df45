import BetterSqlite3 from 'better-sqlite3';
import type { SchemaObjectType } from '../codec/schema-codec.ts';
import { quoteIdent } from '../sqlite/database.ts';
import { SchemaStore, type SchemaObject } from '../store/schema-store.ts';

/**
 * A rename a schema entry makes: a table's name, or a column of a table (named as after the table
 * rename). `quoted`: the origin spelled the new column name quoted (SQLite writes it into the
 * dependents as the ALTER statement spelled it).
 */
export type Rename = { readonly kind: 'table'; readonly from: string; readonly to: string }
  | { readonly kind: 'column'; readonly table: string; readonly from: string; readonly to: string; readonly quoted: boolean };

const rank: Record<SchemaObjectType, number> = { table: 0, view: 1, index: 2, trigger: 3 };

/**
 * What SQLite itself does to the other objects when a table or column is renamed: indexes,
 * triggers and views that name it are rewritten in sqlite_schema. A schema entry lists only what
 * changed on its origin, and an origin that did not have a dependent yet does not list it — so the
 * replicated schema computes the rewrite the same way on every node: R's objects are created in a
 * scratch in-memory database, the renames are run there, and the dependents' new SQL (and table)
 * read back. Returns the objects whose SQL or table changed, by store key (`skip`: keys the entry
 * itself sets). Deterministic: the same SQLite library on every node, the same R, the same renames.
 */
export function rewriteDependents(r: ReadonlyMap<string, SchemaObject>, renames: readonly Rename[], skip: ReadonlySet<string>): Map<string, SchemaObject> {
  const out = new Map<string, SchemaObject>();
  if (renames.length === 0) return out;
  const scratch = scratchOf(r, () => true);
  try {
    for (const rn of renames) run(scratch, rn);
    const after = scratch.prepare("SELECT type, name, tbl_name AS tbl, sql FROM sqlite_schema WHERE sql IS NOT NULL AND type IN ('index', 'trigger', 'view')").all() as
      { type: SchemaObjectType; name: string; tbl: string; sql: string }[];
    for (const a of after) {
      const k = SchemaStore.key(a.type, a.name);
      const before = r.get(k);
      if (skip.has(k) || !before || (before.sql === a.sql && before.tbl === a.tbl)) continue;
      out.set(k, { ...before, tbl: a.tbl, sql: a.sql });
    }
  } finally {
    scratch.close();
  }
  return out;
}

/** How the origin spelled a renamed column: quoted if its table's new definition has it quoted (or it needs quotes). */
export function spelledQuoted(tableSql: string, column: string): boolean {
  if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(column)) return true;
  const q = quoteIdent(column).replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  return new RegExp(`(^|[(,\\s])${q}[\\s,)]`).test(tableSql);
}

/**
 * An index, trigger or view an entry defines against the tables as its origin saw them, while
 * renames ordered before the entry (unseen there) have renamed those tables or columns since: the
 * definition (and its table) as SQLite would have rewritten it had it existed before the renames.
 * R's tables and views are created in a scratch database, the renames undone (newest first), the
 * entry's own renames run (`own.made`: a `to` is stated after them), the definition created, its
 * own renames undone, the others' run again, then its own as rebased, and its SQL read back; one
 * that does not run there is returned as it is.
 */
export function rebaseDependent(r: ReadonlyMap<string, SchemaObject>, renames: readonly Rename[], sql: string, tbl: string,
  own: OwnRenames = { made: [], rebased: [] }): { sql: string; tbl: string } {
  const scratch = scratchOf(r, (o) => o.type === 'table' || o.type === 'view');
  try {
    for (const rn of [...renames].reverse()) run(scratch, undo(rn));
    for (const rn of own.made) run(scratch, rn);
    const names = () => scratch.prepare('SELECT name FROM sqlite_schema').pluck().all() as string[];
    const before = new Set(names());
    scratch.exec(sql);
    const name = names().find((n) => !before.has(n));
    for (const rn of [...own.made].reverse()) run(scratch, undo(rn));
    for (const rn of renames) run(scratch, rn);
    for (const rn of own.rebased) run(scratch, rn);
    const after = name === undefined ? undefined : scratch.prepare('SELECT sql, tbl_name AS tbl FROM sqlite_schema WHERE name = ?').get(name) as { sql: string; tbl: string } | undefined;
    return after ?? { sql, tbl };
  } catch {
    return { sql, tbl };
  } finally {
    scratch.close();
  }
}

/**
 * The renames an entry's own table changes make, for a definition that entry states after them (a
 * `to`): as its origin made them (on R as of its q) and as they apply to R now (rebased). The
 * definition is created where the origin had it, then moved as the stream ordered things: others'
 * renames first, then the entry's own (chaos-like simulation seed 135: an index its table's own
 * rename had rewritten kept naming a column another node had renamed first).
 */
export interface OwnRenames {
  readonly made: readonly Rename[];
  readonly rebased: readonly Rename[];
}

/** An in-memory database with R's objects `keep` selects, tables first; one not creatable here (a module, a collation) is left out. */
function scratchOf(r: ReadonlyMap<string, SchemaObject>, keep: (o: SchemaObject) => boolean): BetterSqlite3.Database {
  const scratch = new BetterSqlite3(':memory:');
  for (const o of [...r.values()].filter(keep).sort((a, b) => rank[a.type] - rank[b.type])) {
    try {
      scratch.exec(o.sql);
    } catch { /* left out, and left as it is in R */ }
  }
  return scratch;
}

function undo(rn: Rename): Rename {
  return rn.kind === 'table' ? { kind: 'table', from: rn.to, to: rn.from } : { kind: 'column', table: rn.table, from: rn.to, to: rn.from, quoted: true };
}

/**
 * Run one rename in a scratch database. SQLite refuses a rename while any view or trigger does
 * not parse against the schema ("error in view v: no such column: c" — SQLite accepts such views
 * when they are created): that object is left out of the scratch copy (it stays as it is in R)
 * and the rename is tried again. A rename that still fails is not R's (the entry conflicted, or
 * it is done already).
 */
function run(db: BetterSqlite3.Database, rn: Rename): void {
  const sql = rn.kind === 'table'
    ? `ALTER TABLE ${quoteIdent(rn.from)} RENAME TO ${quoteIdent(rn.to)}`
    : `ALTER TABLE ${quoteIdent(rn.table)} RENAME COLUMN ${quoteIdent(rn.from)} TO ${rn.quoted ? quoteIdent(rn.to) : rn.to}`;
  for (let attempt = 0; attempt < 20; attempt++) {
    try {
      db.exec(sql);
      return;
    } catch (err) {
      const broken = /error in (view|trigger) (.+?): /.exec((err as Error).message);
      if (!broken) return;
      try {
        db.exec(`DROP ${broken[1]!.toUpperCase()} ${quoteIdent(broken[2]!)}`);
      } catch {
        return;
      }
    }
  }
}
