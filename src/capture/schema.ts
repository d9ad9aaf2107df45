import type { Connection } from '../sqlite/database.ts';
import { quoteIdent } from '../sqlite/database.ts';
import { logKeyColumnsMax } from '../sqlite/internal-schema.ts';

/**
 * How SQLite compares one key column: its affinity (from the declared type) and the collation of
 * the primary-key index. Row identity is SQLite's: two keys are one row exactly when SQLite says so.
 */
export interface KeyColumnDecl {
  readonly affinity: Affinity;
  readonly collation: string;
  /** The column may hold NULL (a non-integer PRIMARY KEY of a rowid table without NOT NULL). */
  readonly nullable: boolean;
}

export type Affinity = 'INTEGER' | 'TEXT' | 'BLOB' | 'REAL' | 'NUMERIC';

/** A secondary UNIQUE index on plain columns (not partial, no expressions): its columns and their collations. */
export interface UniqueIndex {
  readonly name: string;
  readonly columns: readonly string[];
  readonly collations: readonly string[];
}

/** What burrow needs to know about one user table (read from SQLite's own catalog). */
export interface TableSchema {
  readonly name: string;
  /** Key columns in key order; ["rowid"] when the table declares no primary key. */
  readonly keyColumns: readonly string[];
  /** Per key column: affinity and collation (how SQLite matches keys). */
  readonly keyDecls: readonly KeyColumnDecl[];
  readonly uniqueIndexes: readonly UniqueIndex[];
  /** Stored columns in declared order (generated/hidden columns excluded); for rowid-keyed tables "rowid" comes first. */
  readonly columns: readonly string[];
  /** True when the table has no declared primary key and rows are keyed by rowid (collides between writers). */
  readonly rowidKeyed: boolean;
  readonly withoutRowid: boolean;
}

export interface SkippedTable {
  readonly name: string;
  readonly reason: string;
}

export interface SchemaScan {
  readonly tables: ReadonlyMap<string, TableSchema>;
  readonly skipped: readonly SkippedTable[];
}

export function isInternalName(name: string): boolean {
  return name.toLowerCase().startsWith('__burrow') || name.toLowerCase().startsWith('sqlite_');
}

interface TableListRow { schema: string; name: string; type: string; ncol: bigint; wr: bigint; strict: bigint }
interface XInfoRow { cid: bigint; name: string; type: string; notnull: bigint; pk: bigint; hidden: bigint }
interface IndexListRow { name: string; unique: bigint; origin: string; partial: bigint }
interface IndexXInfoRow { cid: bigint; name: string | null; key: bigint; coll: string }

/** SQLite's affinity rules for a declared type (https://sqlite.org/datatype3.html, 3.1). */
export function affinityOf(declaredType: string): Affinity {
  const t = declaredType.toUpperCase();
  if (t.includes('INT')) return 'INTEGER';
  if (t.includes('CHAR') || t.includes('CLOB') || t.includes('TEXT')) return 'TEXT';
  if (t === '' || t.includes('BLOB')) return 'BLOB';
  if (t.includes('REAL') || t.includes('FLOA') || t.includes('DOUB')) return 'REAL';
  return 'NUMERIC';
}

function indexColumns(conn: Connection, index: string): IndexXInfoRow[] {
  return (conn.prepare(`PRAGMA main.index_xinfo(${quoteIdent(index)})`).all() as IndexXInfoRow[]).filter((c) => c.key === 1n);
}

/** The key columns' affinities and primary-key collations; a rowid alias or rowid key is an INTEGER, BINARY. */
function keyDecls(conn: Connection, table: string, info: readonly XInfoRow[], keyColumns: readonly string[], withoutRowid: boolean, indexes: readonly IndexListRow[]): KeyColumnDecl[] {
  const pkIndex = indexes.find((ix) => ix.origin === 'pk');
  const coll = new Map<string, string>();
  if (pkIndex) for (const c of indexColumns(conn, pkIndex.name)) if (c.name !== null) coll.set(c.name, c.coll);
  return keyColumns.map((k) => {
    const col = info.find((c) => c.name === k);
    if (!col) return { affinity: 'INTEGER', collation: 'BINARY', nullable: false }; // rowid
    const rowidAlias = !withoutRowid && !pkIndex && keyColumns.length === 1;
    return {
      affinity: rowidAlias ? 'INTEGER' : affinityOf(col.type),
      collation: coll.get(k) ?? 'BINARY',
      nullable: !withoutRowid && !rowidAlias && col.notnull === 0n,
    };
  });
}

function uniqueIndexes(conn: Connection, indexes: readonly IndexListRow[]): UniqueIndex[] {
  const out: UniqueIndex[] = [];
  for (const ix of indexes) {
    if (ix.unique !== 1n || ix.origin === 'pk' || ix.partial === 1n) continue;
    const cols = indexColumns(conn, ix.name);
    if (cols.some((c) => c.cid < 0n || c.name === null)) continue; // expression or rowid column: rivals not found by column lookups
    out.push({ name: ix.name, columns: cols.map((c) => c.name!), collations: cols.map((c) => c.coll) });
  }
  return out.sort((a, b) => (a.name < b.name ? -1 : 1));
}

/** Scan the main schema: capturable tables, and tables skipped with the reason (virtual, shadow, …). */
export function scanSchema(conn: Connection): SchemaScan {
  const list = conn.prepare('PRAGMA main.table_list').all() as TableListRow[];
  const tables = new Map<string, TableSchema>();
  const skipped: SkippedTable[] = [];
  for (const t of list) {
    if (t.schema !== 'main' || isInternalName(t.name)) continue;
    if (t.type === 'virtual') {
      skipped.push({ name: t.name, reason: 'virtual table (FTS5, rtree, …) is not replicated' });
      continue;
    }
    if (t.type === 'shadow') {
      skipped.push({ name: t.name, reason: 'shadow table of a virtual table is not replicated' });
      continue;
    }
    if (t.type !== 'table') continue; // views
    const info = conn.prepare(`PRAGMA main.table_xinfo(${quoteIdent(t.name)})`).all() as XInfoRow[];
    const stored = info.filter((c) => c.hidden === 0n);
    const pk = stored.filter((c) => c.pk > 0n).sort((a, b) => Number(a.pk - b.pk)).map((c) => c.name);
    const withoutRowid = t.wr === 1n;
    let keyColumns = pk;
    let columns = stored.map((c) => c.name);
    let rowidKeyed = false;
    if (pk.length === 0) {
      const shadowed = stored.some((c) => ['rowid', '_rowid_', 'oid'].includes(c.name.toLowerCase()));
      if (shadowed) {
        skipped.push({ name: t.name, reason: 'no primary key and a column named rowid/_rowid_/oid hides the rowid: declare a PRIMARY KEY' });
        continue;
      }
      keyColumns = ['rowid'];
      columns = ['rowid', ...columns];
      rowidKeyed = true;
    }
    if (keyColumns.length > logKeyColumnsMax) {
      skipped.push({ name: t.name, reason: `primary key has ${keyColumns.length} columns (burrow captures at most ${logKeyColumnsMax})` });
      continue;
    }
    const indexes = conn.prepare(`PRAGMA main.index_list(${quoteIdent(t.name)})`).all() as IndexListRow[];
    tables.set(t.name, Object.freeze({
      name: t.name, keyColumns, keyDecls: keyDecls(conn, t.name, info, keyColumns, withoutRowid, indexes),
      uniqueIndexes: uniqueIndexes(conn, indexes), columns, rowidKeyed, withoutRowid,
    }));
  }
  return { tables, skipped };
}
