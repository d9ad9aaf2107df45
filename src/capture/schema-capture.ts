import { declaredColumns, type Connection, type Database } from '../sqlite/database.ts';
import { encodeSchemaEntry, schemaEntryVersion, type SchemaObjectType, type SchemaOp } from '../codec/schema-codec.ts';
import { SchemaStore, type SchemaObject } from '../store/schema-store.ts';
import { isInternalName } from './schema.ts';

const typeRank: Record<SchemaObjectType, number> = { table: 0, view: 1, index: 2, trigger: 3 };

/**
 * The user's schema objects as sqlite_schema has them: tables (virtual ones included, their
 * shadow tables not), indexes with SQL (not the automatic ones of UNIQUE/PRIMARY KEY), views,
 * triggers; burrow's own objects and SQLite's internal ones left out.
 */
export function localObjects(conn: Connection): SchemaObject[] {
  const shadows = new Set((conn.prepare('PRAGMA main.table_list').all() as { name: string; type: string }[]).filter((t) => t.type === 'shadow').map((t) => t.name));
  const rows = conn.prepare("SELECT type, name, tbl_name, sql, rootpage FROM main.sqlite_schema WHERE sql IS NOT NULL AND type IN ('table', 'index', 'view', 'trigger')")
    .all() as { type: SchemaObjectType; name: string; tbl_name: string; sql: string; rootpage: bigint | number | null }[];
  return rows.filter((r) => !isInternalName(r.name) && !isInternalName(r.tbl_name) && !shadows.has(r.name) && !shadows.has(r.tbl_name))
    .map((r) => ({ type: r.type, name: r.name, tbl: r.tbl_name, sql: r.sql, root: r.rootpage === null ? null : Number(r.rootpage) }));
}

/** The CREATE TABLE statement without its table name: ALTER TABLE … RENAME TO rewrites only that token. */
export function withoutTableName(sql: string): string {
  return sql.replace(/^\s*CREATE\s+(?:VIRTUAL\s+)?TABLE\s+(?:IF\s+NOT\s+EXISTS\s+)?(?:"(?:[^"]|"")*"|\[[^\]]*\]|`(?:[^`]|``)*`|'(?:[^']|'')*'|[^\s(]+)\s*/i, 'CREATE TABLE ');
}

/**
 * The same table under another name (a rename, maybe with renamed columns): the definition equal
 * but for the name, or the same column count and types in order. A table dropped and another
 * created in its pages would have to look alike too.
 */
function sameShape(a: string, b: string): boolean {
  if (withoutTableName(a) === withoutTableName(b)) return true;
  const x = declaredColumns(a);
  const y = declaredColumns(b);
  return x !== null && y !== null && x.length === y.length && x.every((c, i) => c.type === y[i]!.type && c.pk === y[i]!.pk);
}

/**
 * What changed between the seen schema and the local one, as ops in the order a receiver runs
 * them (tables first, renames first among them; then views, indexes, triggers). A table that is
 * gone under one name and present under another with the same rootpage and the same definition
 * but for its name was renamed (its rows go with it).
 */
export function diffSchema(seen: ReadonlyMap<string, SchemaObject>, local: readonly SchemaObject[]): SchemaOp[] {
  const localMap = new Map(local.map((o) => [SchemaStore.key(o.type, o.name), o]));
  const ops: SchemaOp[] = [];
  const renamedAway = new Set<string>();
  for (const o of local) {
    if (o.type !== 'table' || seen.has(SchemaStore.key('table', o.name)) || o.root === null || o.root === undefined) continue;
    const old = [...seen.values()].find((s) => s.type === 'table' && s.root === o.root && !localMap.has(SchemaStore.key('table', s.name))
      && !renamedAway.has(s.name) && sameShape(s.sql, o.sql));
    if (!old) continue;
    renamedAway.add(old.name);
    ops.push({ type: 'table', name: o.name, tbl: o.tbl, from: old.sql, to: o.sql, renamedFrom: old.name });
  }
  const renamedTo = new Set(ops.map((op) => op.name));
  for (const [k, s] of seen) {
    if (localMap.has(k) || (s.type === 'table' && renamedAway.has(s.name))) continue;
    ops.push({ type: s.type, name: s.name, tbl: s.tbl, from: s.sql, to: null });
  }
  for (const [k, o] of localMap) {
    if (o.type === 'table' && renamedTo.has(o.name)) continue;
    const s = seen.get(k);
    if (s && s.sql === o.sql && s.tbl === o.tbl) continue;
    ops.push({ type: o.type, name: o.name, tbl: o.tbl, from: s?.sql ?? null, to: o.sql });
  }
  return ops.sort((a, b) => typeRank[a.type] - typeRank[b.type] || Number(b.renamedFrom !== undefined) - Number(a.renamedFrom !== undefined));
}

/**
 * Schema capture: inside the node's stamp transaction (the write lock held, so nothing changes
 * the schema meanwhile), local DDL since the seen state becomes one schema entry of this node,
 * queued for the schema stream, and the seen state moves to the local schema. Any client's DDL is
 * seen this way — the sqlite3 shell, Python, sqlite-utils — with no hook in the writer.
 */
export class SchemaCapture {
  /** Held while a restore creates the snapshot's objects (they are the cluster's, not this node's DDL). */
  paused = false;
  entries = 0;
  /** schema_version at the last look: the diff runs only when it moved. */
  private lastVersion = -1n;

  constructor(private readonly db: Database, private readonly store: SchemaStore, private readonly nodeId: string) {}

  /** Queue local DDL as an entry: its number and ops, or null when the schema did not change. */
  capture(): { n: number; ops: readonly SchemaOp[] } | null {
    if (this.paused) return null;
    const version = this.db.schemaVersion();
    if (version === this.lastVersion) return null;
    this.lastVersion = version;
    const local = localObjects(this.db.conn);
    const ops = diffSchema(this.store.seen(), local);
    if (ops.length === 0) {
      this.refreshRoots(local);
      return null;
    }
    const n = this.store.queueOwn((num) => encodeSchemaEntry({ v: schemaEntryVersion, o: this.nodeId, n: num, q: this.store.position(), ops }));
    this.store.replaceSeen(local);
    this.entries++;
    return { n, ops };
  }

  /** The seen state follows the local one (after DDL burrow ran itself, or a restore). */
  accept(): void {
    this.store.replaceSeen(localObjects(this.db.conn));
    this.lastVersion = -1n;
  }

  /** Rootpages move without DDL (VACUUM, a table rebuilt alike): keep them current for rename detection. */
  private refreshRoots(local: readonly SchemaObject[]): void {
    const seen = this.store.seen();
    if (local.every((o) => o.type !== 'table' || seen.get(SchemaStore.key(o.type, o.name))?.root === o.root)) return;
    this.store.replaceSeen(local);
  }
}
