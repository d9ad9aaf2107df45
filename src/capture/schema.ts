import type { Connection } from '../sqlite/database.ts';
import { quoteIdent } from '../sqlite/database.ts';
import { logKeyColumnsMax } from '../sqlite/internal-schema.ts';

/** What burrow needs to know about one user table (read from SQLite's own catalog). */
export interface TableSchema {
  readonly name: string;
  /** Key columns in key order; ["rowid"] when the table declares no primary key. */
  readonly keyColumns: readonly string[];
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
interface XInfoRow { cid: bigint; name: string; type: string; pk: bigint; hidden: bigint }

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
    tables.set(t.name, Object.freeze({ name: t.name, keyColumns, columns, rowidKeyed, withoutRowid }));
  }
  return { tables, skipped };
}
