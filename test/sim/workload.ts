import type { Features } from './features.ts';
import type { Rng } from './rng.ts';

/**
 * The simulated application: tables with the schemas that broke replicas before (NOCASE, untyped,
 * composite and WITHOUT ROWID keys, rowid-keyed tables, UNIQUE columns) and SQL written as
 * literals, so non-UTF-8 TEXT, BLOBs, -0.0 and integers beyond 2^53 reach SQLite exactly.
 * Key pools are small on purpose: nodes collide on the same keys and unique values all the time.
 */

export interface SimTable {
  readonly name: string;
  readonly create: string;
  /** Literal pools for the key columns, in key order ("rowid" for a rowid-keyed table). */
  readonly keys: readonly { readonly column: string; readonly pool: readonly string[] }[];
  /** Value columns the workload writes, with their pools. */
  readonly values: readonly { readonly column: string; readonly pool: readonly string[] }[];
  /** A column under a UNIQUE index, if any (written like a value, but collides on purpose). */
  readonly unique: string | null;
}

/** One rolling migration step; every node runs the steps in this order, each at its own time. */
export interface SchemaStep {
  readonly table: string;
  readonly sql: string;
  /** A column this step adds (the workload writes it once the node has the step). */
  readonly adds?: { readonly column: string; readonly pool: readonly string[] };
}

export interface Workload {
  /** Tables every node has from the start. */
  readonly initial: readonly SimTable[];
  /** All tables (initial and created by steps), by name. */
  readonly tables: ReadonlyMap<string, SimTable>;
  readonly steps: readonly SchemaStep[];
}

const nonUtf8 = "CAST(X'C328FF00' AS TEXT)";

function valuePool(f: Features): string[] {
  const p = ['0', '1', '-1', '9007199254740993', '1.5', "'txt'", "'TXT'", "''", '1e308'];
  if (f.has('nulls')) p.push('NULL');
  if (f.has('neg-zero')) p.push('-0.0', '0.0');
  if (f.has('blobs')) p.push("X'00FF10'", "X''");
  if (f.has('non-utf8')) p.push(nonUtf8, "CAST(X'FF' AS TEXT)");
  return p;
}

export function buildWorkload(f: Features, rng: Rng): Workload {
  const nocase = f.has('nocase') ? ' COLLATE NOCASE' : '';
  const uniq = f.has('unique');
  const v = valuePool(f);
  const textKeys = ["'alpha'", "'ALPHA'", "'Alpha'", "'beta'", "'BETA'", "'gamma'"];
  if (f.has('non-utf8')) textKeys.push(nonUtf8);
  // NULL keys are refused by burrow's triggers (SQLite would allow them here): the refusal is tested too.
  if (f.has('nulls')) textKeys.push('NULL');
  const ids = ['1', '2', '3', '4', '5', '6'];
  const uniques = ["'a'", "'A'", "'b'", "'c'", ...(f.has('nulls') ? ['NULL'] : [])];
  const tables: SimTable[] = [
    {
      name: 'ti', create: `CREATE TABLE ti(id INTEGER PRIMARY KEY, v, u TEXT${uniq ? nocase + ' UNIQUE' : ''})`,
      keys: [{ column: 'id', pool: ids }], values: [{ column: 'v', pool: v }, { column: 'u', pool: uniques }], unique: uniq ? 'u' : null,
    },
    {
      name: 'tn', create: `CREATE TABLE tn(k TEXT PRIMARY KEY${nocase}, v, w REAL)`,
      keys: [{ column: 'k', pool: textKeys }], values: [{ column: 'v', pool: v }, { column: 'w', pool: v }], unique: null,
    },
  ];
  if (f.has('untyped')) {
    const pool = ['1', '1.0', "'1'", '2', '2.0', "'x'", ...(f.has('blobs') ? ["X'01'"] : [])];
    tables.push({ name: 'tu', create: 'CREATE TABLE tu(k PRIMARY KEY, v)', keys: [{ column: 'k', pool }], values: [{ column: 'v', pool: v }], unique: null });
  }
  if (f.has('composite')) {
    tables.push({
      name: 'tc', create: `CREATE TABLE tc(a INTEGER, b TEXT${nocase}, v, PRIMARY KEY(a, b))`,
      keys: [{ column: 'a', pool: ['1', '2'] }, { column: 'b', pool: ["'x'", "'X'", "'y'"] }], values: [{ column: 'v', pool: v }], unique: null,
    });
  }
  if (f.has('without-rowid')) {
    const pool = ["'k1'", "'K1'", "'k2'", ...(f.has('non-utf8') ? [nonUtf8] : [])];
    tables.push({
      name: 'tw', create: `CREATE TABLE tw(k TEXT PRIMARY KEY, v BLOB, u INTEGER${uniq ? ' UNIQUE' : ''}) WITHOUT ROWID`,
      keys: [{ column: 'k', pool }], values: [{ column: 'v', pool: v }, { column: 'u', pool: ['1', '2', '3', ...(f.has('nulls') ? ['NULL'] : [])] }],
      unique: uniq ? 'u' : null,
    });
  }
  if (f.has('rowid')) {
    tables.push({ name: 'tr', create: 'CREATE TABLE tr(v, w)', keys: [{ column: 'rowid', pool: ids }], values: [{ column: 'v', pool: v }, { column: 'w', pool: v }], unique: null });
  }
  if (uniq) {
    tables.push({
      name: 'tq', create: `CREATE TABLE tq(id INTEGER PRIMARY KEY, e TEXT${nocase} UNIQUE, v)`,
      keys: [{ column: 'id', pool: ids }], values: [{ column: 'e', pool: uniques }, { column: 'v', pool: v }], unique: 'e',
    });
  }
  const late = f.has('late-create') ? rng.shuffle(tables.slice(1)).slice(0, Math.min(2, tables.length - 1)) : [];
  const steps: SchemaStep[] = late.map((t) => ({ table: t.name, sql: t.create }));
  if (f.has('add-column')) {
    steps.push({ table: rng.pick(tables).name, sql: 'ADD COLUMN c1 INTEGER DEFAULT 0', adds: { column: 'c1', pool: ['7', '8', 'NULL'] } });
    steps.push({ table: rng.pick(tables).name, sql: "ADD COLUMN c2 TEXT DEFAULT 'dflt'", adds: { column: 'c2', pool: ["'x'", "'y'", nonUtf8] } });
  }
  return {
    initial: tables.filter((t) => !late.includes(t)),
    tables: new Map(tables.map((t) => [t.name, t])),
    steps: steps.map((s) => (s.adds ? { ...s, sql: `ALTER TABLE ${s.table} ${s.sql}` } : s)),
  };
}

/** What one node's schema holds: its tables and the added columns it may write. */
export interface NodeSchema {
  readonly tables: readonly SimTable[];
  readonly added: ReadonlyMap<string, readonly { readonly column: string; readonly pool: readonly string[] }[]>;
  /**
   * Tables created by a migration: a row written before burrow installs capture on them is backfilled,
   * and one with a NULL key is reported on its node, not replicated (capture.ts), so the
   * workload gives such tables no NULL keys. NULL keys into captured tables are refused at write time.
   */
  readonly late: ReadonlySet<string>;
}

export function schemaAt(w: Workload, stepsDone: number): NodeSchema {
  const tables = [...w.initial];
  const added = new Map<string, { column: string; pool: readonly string[] }[]>();
  for (const s of w.steps.slice(0, stepsDone)) {
    if (s.adds) added.set(s.table, [...(added.get(s.table) ?? []), s.adds]);
    else tables.push(w.tables.get(s.table)!);
  }
  return { tables, added, late: new Set(w.steps.filter((st) => !st.adds).map((st) => st.table)) };
}

function keyWhere(t: SimTable, rng: Rng): string {
  return t.keys.map((k) => `${k.column} = ${rng.pick(k.pool)}`).join(' AND ');
}

function withoutNullKeys(t: SimTable): SimTable {
  return { ...t, keys: t.keys.map((k) => ({ ...k, pool: k.pool.filter((v) => v !== 'NULL') })) };
}

/** One random write statement for a node with this schema. */
export function randomStatement(s: NodeSchema, f: Features, rng: Rng): string {
  const picked = rng.pick(s.tables);
  const t = s.late.has(picked.name) ? withoutNullKeys(picked) : picked;
  const cols = [...t.values, ...(s.added.get(t.name) ?? [])];
  const someCols = rng.shuffle(cols).slice(0, rng.between(1, cols.length));
  const set = someCols.map((c) => `${c.column} = ${rng.pick(c.pool)}`).join(', ');
  const keyCols = t.keys.filter((k) => k.column !== 'rowid' || rng.chance(0.7));
  const insertCols = [...keyCols, ...someCols];
  const insert = (verb: string): string =>
    `${verb} INTO ${t.name}(${insertCols.map((c) => c.column).join(', ')}) VALUES (${insertCols.map((c) => rng.pick(c.pool)).join(', ')})`;
  const r = rng.int(100);
  if (r < 30) return insert('INSERT');
  if (r < 40 && f.has('replace')) return insert('INSERT OR REPLACE');
  if (r < 50 && t.keys[0]!.column !== 'rowid') {
    const target = t.keys.map((k) => k.column).join(', ');
    return `${insert('INSERT')} ON CONFLICT(${target}) DO UPDATE SET ${someCols.map((c) => `${c.column} = excluded.${c.column}`).join(', ')}`;
  }
  if (r < 70) return `UPDATE ${t.name} SET ${set} WHERE ${keyWhere(t, rng)}`;
  if (r < 75 && f.has('replace') && t.unique) return `UPDATE OR REPLACE ${t.name} SET ${t.unique} = ${rng.pick(t.values.find((c) => c.column === t.unique)!.pool)} WHERE ${keyWhere(t, rng)}`;
  if (r < 85 && f.has('pk-change')) {
    const k = rng.pick(t.keys);
    return `UPDATE ${t.name} SET ${k.column} = ${rng.pick(k.pool)} WHERE ${keyWhere(t, rng)}`;
  }
  return `DELETE FROM ${t.name} WHERE ${keyWhere(t, rng)}`;
}

/**
 * Errors an application may meet and the simulation accepts: constraint failures (UNIQUE, NOT
 * NULL, and burrow's own refusals through RAISE, which SQLite reports as SQLITE_CONSTRAINT_TRIGGER).
 * Anything else fails the seed.
 */
export function acceptableWriteError(err: unknown): boolean {
  const code = (err as { code?: unknown }).code;
  return typeof code === 'string' && code.startsWith('SQLITE_CONSTRAINT');
}
