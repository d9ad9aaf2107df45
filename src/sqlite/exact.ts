import { TextBytes, textFromBytes, type SqlValue } from '../codec/value-codec.ts';
import type { Connection, Statement } from './database.ts';

/**
 * Exact values in and out of SQLite. better-sqlite3 decodes TEXT as UTF-8 and replaces invalid
 * bytes with U+FFFD, so a read whose strings contain U+FFFD is redone with the TEXT columns cast
 * to BLOB (valid UTF-8 stays a string, anything else becomes TextBytes). Writes bind TextBytes
 * as a BLOB behind CAST(? AS TEXT), so SQLite stores the original bytes as TEXT again.
 */

/** The placeholder for one value: TextBytes need CAST(? AS TEXT). */
export function placeholder(v: SqlValue): string {
  return v instanceof TextBytes ? 'CAST(? AS TEXT)' : '?';
}

export function hasTextBytes(values: readonly SqlValue[]): boolean {
  for (const v of values) if (v instanceof TextBytes) return true;
  return false;
}

/** Values as better-sqlite3 parameters (TextBytes → its bytes; pair with placeholder()). */
export function bindable(values: readonly SqlValue[]): unknown[] {
  return values.map((v) => (v instanceof TextBytes ? v.bytes : v));
}

function mayBeMangled(row: readonly unknown[]): boolean {
  for (const v of row) if (typeof v === 'string' && v.includes('\uFFFD')) return true;
  return false;
}

/** `expr` and, when it is TEXT, its bytes (NULL otherwise). */
function exactPair(expr: string): string {
  return `${expr}, CASE WHEN typeof(${expr}) = 'text' THEN CAST(${expr} AS BLOB) END`;
}

/** Rows of (value, text bytes) pairs → exact values. */
function fromPairs(pairs: readonly unknown[]): SqlValue[] {
  const out: SqlValue[] = new Array(pairs.length / 2);
  for (let i = 0; i < out.length; i++) {
    const bytes = pairs[2 * i + 1] as Buffer | null;
    out[i] = bytes === null ? (pairs[2 * i] as SqlValue) : textFromBytes(bytes);
  }
  return out;
}

/**
 * A SELECT of `exprs` (`tail` = FROM … WHERE … ORDER BY …) returning exact values. The fast
 * statement runs first; only when a string in its result contains U+FFFD is the pair statement
 * (each expression with its TEXT bytes) run instead.
 */
export class ExactSelect {
  private readonly fast: Statement;
  private pairStmt: Statement | null = null;

  constructor(private readonly conn: Connection, private readonly exprs: readonly string[], private readonly tail: string) {
    this.fast = conn.prepare(`SELECT ${exprs.join(', ')} ${tail}`).raw(true);
  }

  private pairs(): Statement {
    this.pairStmt ??= this.conn.prepare(`SELECT ${this.exprs.map(exactPair).join(', ')} ${this.tail}`).raw(true);
    return this.pairStmt;
  }

  get(...params: unknown[]): SqlValue[] | undefined {
    const row = this.fast.get(...params) as SqlValue[] | undefined;
    if (!row || !mayBeMangled(row)) return row;
    const p = this.pairs().get(...params) as unknown[] | undefined;
    return p ? fromPairs(p) : undefined;
  }

  all(...params: unknown[]): SqlValue[][] {
    const rows = this.fast.all(...params) as SqlValue[][];
    if (!rows.some(mayBeMangled)) return rows;
    return (this.pairs().all(...params) as unknown[][]).map(fromPairs);
  }

  /** Every row, always through the pair statement (whole-table scans: checksums). */
  *iterateExact(...params: unknown[]): IterableIterator<SqlValue[]> {
    for (const p of this.pairs().iterate(...params) as IterableIterator<unknown[]>) yield fromPairs(p);
  }
}
