import BetterSqlite3 from 'better-sqlite3';
import type { SchemaOp } from '../codec/schema-codec.ts';
import { declaredColumns, quoteIdent } from '../sqlite/database.ts';
import { SchemaStore, type SchemaObject } from '../store/schema-store.ts';

/**
 * Pure helpers over schema ops and table definitions for the fold (schema-applier.ts): which ops
 * of an entry stand or fall together, what an op means against R, and which ALTER statements
 * turn one definition of a table into another.
 */

/**
 * An entry's ops in groups that fit or conflict independently: ops are linked when they name the
 * same table (its own name, the table an index or trigger is on, a renamed table's old name).
 */
export function independentGroups(ops: readonly SchemaOp[]): SchemaOp[][] {
  const parent = new Map<string, string>();
  const find = (x: string): string => {
    let p = parent.get(x) ?? x;
    while (p !== (parent.get(p) ?? p)) p = parent.get(p)!;
    parent.set(x, p);
    return p;
  };
  const names = (op: SchemaOp) => [`t:${op.tbl}`, ...(op.type === 'table' ? [`t:${op.name}`] : [`${op.type}:${op.name}`]), ...(op.renamedFrom !== undefined ? [`t:${op.renamedFrom}`] : [])];
  for (const op of ops) {
    const [first, ...rest] = names(op).map(find);
    for (const x of rest) if (x !== first) parent.set(x, first!);
  }
  const groups = new Map<string, SchemaOp[]>();
  for (const op of ops) {
    const root = find(names(op)[0]!);
    groups.set(root, [...(groups.get(root) ?? []), op]);
  }
  return [...groups.values()];
}

/**
 * A table created by an entry that R already has: when the entry's definition is R's with columns
 * added (one ADD COLUMN yields it exactly), the op becomes that change of R's table; else it is
 * left as it is (a conflict). Never a DROP: a node's older copy must not remove a column.
 */
export function asAddColumn(op: SchemaOp, r: ReadonlyMap<string, SchemaObject>): SchemaOp {
  if (op.type !== 'table' || op.from !== null || op.to === null || op.renamedFrom !== undefined) return op;
  const cur = r.get(SchemaStore.key('table', op.name))?.sql;
  if (cur === undefined || cur === op.to) return op;
  const a = declaredColumns(cur);
  const b = declaredColumns(op.to);
  if (!a || !b || b.length <= a.length) return op;
  const scratch = new BetterSqlite3(':memory:');
  try {
    scratch.exec(cur);
    for (const alter of alterFor(op.name, cur, op.to)) {
      scratch.exec(alter);
      if (scratch.prepare("SELECT sql FROM sqlite_schema WHERE type = 'table' AND name = ?").pluck().get(op.name) === op.to) return { ...op, from: cur };
    }
  } catch { /* not that change */ } finally {
    scratch.close();
  }
  return op;
}

/**
 * ALTER TABLE statements that may turn `local` into `target` when it is a single ADD, RENAME or
 * DROP COLUMN (SQLite rewrites the stored definition the same way on every node; a new name is
 * written as the statement spelled it, so it is tried bare and quoted). The caller keeps the first
 * whose result is exactly the target.
 */
export function alterFor(name: string, local: string, target: string): string[] {
  const t = `ALTER TABLE main.${quoteIdent(name)} `;
  const close = local.lastIndexOf(')');
  if (close > 0 && target.startsWith(local.slice(0, close)) && target.endsWith(local.slice(close))) {
    const added = target.slice(close, target.length - (local.length - close));
    if (added.startsWith(',')) return [`${t}ADD COLUMN ${added.slice(1).trim()}`];
  }
  const a = declaredColumns(local);
  const b = declaredColumns(target);
  if (!a || !b) return [];
  const spellings = (id: string) => (/^[A-Za-z_][A-Za-z0-9_]*$/.test(id) ? [id, quoteIdent(id)] : [quoteIdent(id)]);
  if (a.length === b.length) {
    const diff = a.map((c, i) => (c.name !== b[i]!.name ? i : -1)).filter((i) => i >= 0);
    if (diff.length === 1) return spellings(b[diff[0]!]!.name).map((to) => `${t}RENAME COLUMN ${quoteIdent(a[diff[0]!]!.name)} TO ${to}`);
  }
  if (a.length === b.length + 1) {
    const names = new Set(b.map((c) => c.name));
    const gone = a.filter((c) => !names.has(c.name));
    if (gone.length === 1) return [`${t}DROP COLUMN ${quoteIdent(gone[0]!.name)}`];
  }
  return [];
}

/** Columns renamed between two definitions of a table: same column count, names differing in place. */
export function renamedColumns(from: string, to: string): [string, string][] {
  const a = declaredColumns(from);
  const b = declaredColumns(to);
  if (!a || !b || a.length !== b.length) return [];
  const names = new Set(a.map((c) => c.name));
  return a.map((c, i) => [c.name, b[i]!.name] as [string, string]).filter(([x, y]) => x !== y && !names.has(y));
}

/** A column rename another node made, as the fold's history has it (`quoted`: as SQLite spelled it in R). */
export interface ColumnRename {
  readonly from: string;
  readonly to: string;
  readonly quoted: boolean;
}

/**
 * A table op made against a definition other nodes have since renamed columns of (ordered after
 * what its origin had folded): the op as it applies to R — its before and after definitions with
 * those renames run on them, as SQLite would have written them — when its before is then R's.
 * Else the op as it is (a real conflict: the same column renamed twice, a column dropped, …).
 * Simulation seed 7: a table rename ordered after another node's column rename was refused, and
 * the origin's table went back to its old name.
 */
export function rebaseTableOp(op: SchemaOp, r: ReadonlyMap<string, SchemaObject>, renames: readonly ColumnRename[]): SchemaOp {
  if (op.type !== 'table' || op.from === null || renames.length === 0) return op;
  const base = op.renamedFrom ?? op.name;
  const cur = r.get(SchemaStore.key('table', base))?.sql;
  if (cur === undefined || cur === op.from) return op;
  const from = withRenames(op.from, base, renames);
  if (from !== cur) return op;
  const to = op.to === null ? null : withRenames(op.to, op.name, renames);
  if (op.to !== null && to === null) return op;
  return { ...op, from, to };
}

/** A table definition with column renames run on it in a scratch database; null: one does not run. */
function withRenames(sql: string, name: string, renames: readonly ColumnRename[]): string | null {
  const scratch = new BetterSqlite3(':memory:');
  try {
    scratch.exec(sql);
    for (const rn of renames) scratch.exec(`ALTER TABLE main.${quoteIdent(name)} RENAME COLUMN ${quoteIdent(rn.from)} TO ${rn.quoted ? quoteIdent(rn.to) : rn.to}`);
    return (scratch.prepare("SELECT sql FROM sqlite_schema WHERE type = 'table' AND name = ?").pluck().get(name) as string | undefined) ?? null;
  } catch {
    return null;
  } finally {
    scratch.close();
  }
}
