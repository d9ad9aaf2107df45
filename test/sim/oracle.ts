import BetterSqlite3 from 'better-sqlite3';
import { decodeBatch } from '../../src/codec/batch-codec.ts';
import { decodeValues } from '../../src/codec/value-codec.ts';
import { quoteIdent as q } from '../../src/sqlite/database.ts';
import { bindable as bind, placeholder as ph } from '../../src/sqlite/exact.ts';

/**
 * What every replica must hold, computed without burrow's apply path: fold every published change
 * per key to its (hlc, node) winner, then build the tables from the winners. It uses SQLite only
 * to compare keys the way the user's table does (key columns declared with the same type and
 * collation) and to enforce UNIQUE; the LWW order, tombstones and the shadowing of UNIQUE losers
 * (strongest version first, a weaker one that clashes stays out) are written out here again.
 */

type Db = BetterSqlite3.Database;


interface KeyDecl {
  readonly type: string;
  readonly collation: string;
}

/** The declared type and collation of each key column, read from the user's table. */
function keyDecls(db: Db, table: string, keyCols: readonly string[]): KeyDecl[] {
  if (keyCols.length === 1 && keyCols[0] === 'rowid') return [{ type: 'INTEGER', collation: 'BINARY' }];
  const info = db.prepare(`PRAGMA table_xinfo(${q(table)})`).all() as { name: string; type: string }[];
  const pk = (db.prepare(`PRAGMA index_list(${q(table)})`).all() as { name: string; origin: string }[]).find((i) => i.origin === 'pk');
  const coll = new Map<string, string>();
  if (pk) {
    for (const c of db.prepare(`PRAGMA index_xinfo(${q(pk.name)})`).all() as { name: string | null; coll: string; key: bigint }[]) {
      if (Number(c.key) === 1 && c.name !== null) coll.set(c.name, c.coll);
    }
  }
  return keyCols.map((k) => ({ type: info.find((c) => c.name === k)?.type ?? '', collation: coll.get(k) ?? 'BINARY' }));
}

export class Oracle {
  private readonly db: Db = new BetterSqlite3(':memory:');
  private readonly folded = new Set<string>();
  private readonly seen = new Set<Buffer>();

  /** `schema`: the CREATE TABLE statements every replica ends with. */
  constructor(private readonly schema: ReadonlyMap<string, string>) {
    this.db.defaultSafeIntegers(true);
    for (const sql of schema.values()) this.db.exec(sql);
  }

  /** Fold one published batch (the same batch object twice counts once). */
  add(data: Buffer): void {
    if (this.seen.has(data)) return;
    this.seen.add(data);
    const b = decodeBatch(data);
    for (const c of b.changes) {
      const t = b.tables[c.t]!;
      if (!this.schema.has(t.n)) continue; // a DDL table (compared across nodes, not here)
      const w = this.winners(t.n, t.k);
      const key = decodeValues(c.k);
      const where = t.k.map((_, i) => `k${i} = ${ph(key[i]!)}`).join(' AND ');
      const cur = this.db.prepare(`SELECT hlc, node FROM ${w} WHERE ${where}`).raw(true).get(...bind(key)) as [bigint, string] | undefined;
      if (cur && !(c.h > cur[0] || (c.h === cur[0] && b.o > cur[1]))) continue;
      // REPLACE: the winner's key bytes replace the stored ones (keys equal under the collation).
      this.db.prepare(`INSERT OR REPLACE INTO ${w} VALUES (${key.map(ph).join(', ')}, ?, ?, ?, ?, ?)`)
        .run(...bind(key), c.h, b.o, BigInt(c.d), JSON.stringify(t.c), c.d === 0 ? Buffer.from(c.r!) : null);
    }
  }

  private winners(table: string, keyCols: readonly string[]): string {
    const w = q(`w_${table}`);
    if (this.folded.has(table)) return w;
    const decls = keyDecls(this.db, table, keyCols);
    const cols = decls.map((d, i) => `k${i} ${d.type} COLLATE ${d.collation}`).join(', ');
    this.db.exec(`CREATE TABLE ${w}(${cols}, hlc INTEGER, node TEXT, d INTEGER, cols TEXT, image BLOB, PRIMARY KEY(${decls.map((_, i) => `k${i}`).join(', ')}))`);
    this.folded.add(table);
    return w;
  }

  /** Build the user tables from the winners, strongest first; returns how many were shadowed. */
  build(): number {
    let shadowed = 0;
    for (const table of this.folded) {
      const rows = this.db.prepare(`SELECT cols, image FROM ${q(`w_${table}`)} WHERE d = 0 ORDER BY hlc DESC, node DESC`).raw(true).all() as [string, Buffer][];
      for (const [colsJson, image] of rows) {
        const cols = JSON.parse(colsJson) as string[];
        const vals = decodeValues(image);
        try {
          this.db.prepare(`INSERT INTO ${q(table)}(${cols.map(q).join(', ')}) VALUES (${vals.map(ph).join(', ')})`).run(...bind(vals));
        } catch (err) {
          if ((err as { code?: string }).code !== 'SQLITE_CONSTRAINT_UNIQUE') throw err;
          shadowed++;
        }
      }
    }
    return shadowed;
  }

  dump(table: string): string[] {
    return dumpTable(this.db, table);
  }

  close(): void {
    this.db.close();
  }
}

/** Every row of a table as exact text (storage class and bytes of each value; -0.0 kept), sorted. */
export function dumpTable(db: Db, table: string): string[] {
  const cols = (db.prepare(`PRAGMA table_info(${q(table)})`).all() as { name: string }[]).map((c) => q(c.name));
  const exprs = cols.flatMap((c) => [`typeof(${c})`, `CASE WHEN typeof(${c}) IN ('text', 'blob') THEN hex(CAST(${c} AS BLOB)) END`, `CASE WHEN typeof(${c}) IN ('integer', 'real') THEN ${c} END`]);
  const rows = db.prepare(`SELECT ${exprs.join(', ')} FROM ${q(table)}`).raw(true).safeIntegers(true).all() as unknown[][];
  return rows.map((r) => {
    const out: string[] = [];
    for (let i = 0; i < r.length; i += 3) {
      const n = r[i + 2];
      const num = typeof n === 'number' ? (Object.is(n, -0) ? '-0' : String(n)) : typeof n === 'bigint' ? String(n) : '';
      out.push(`${String(r[i])}:${(r[i + 1] as string | null) ?? ''}${num}`);
    }
    return out.join('|');
  }).sort();
}
