import type { Database } from '../sqlite/database.ts';

export interface DeadLetter {
  readonly shard: number | null;
  readonly seq: number | null;
  readonly origin: string | null;
  readonly table: string | null;
  readonly hlc: bigint | null;
  readonly reason: string;
  /** The message, or the one change as a one-change batch, so it can be inspected or replayed. */
  readonly change: Uint8Array | null;
}

export interface ConflictSide {
  readonly node: string;
  readonly hlc: bigint;
  /** The row as readable JSON. */
  readonly row: string;
}

/**
 * Owner of `__burrow_dead` (changes that can never apply here, with the reason: never silently
 * lost) and `__burrow_conflicts` (secondary UNIQUE clashes resolved by (hlc, node), both sides).
 */
export class Quarantine {
  constructor(private readonly db: Database) {}

  deadLetter(d: DeadLetter): void {
    this.db.prepare('INSERT INTO __burrow_dead(at_ms, shard, stream_seq, origin, tbl, hlc, reason, change) VALUES (?, ?, ?, ?, ?, ?, ?, ?)')
      .run(BigInt(Date.now()), d.shard === null ? null : BigInt(d.shard), d.seq === null ? null : BigInt(d.seq), d.origin, d.table, d.hlc, d.reason,
        d.change ? Buffer.from(d.change) : null);
  }

  conflict(table: string, uniqueColumns: readonly string[], winner: ConflictSide, loser: ConflictSide): void {
    this.db.prepare('INSERT INTO __burrow_conflicts(at_ms, tbl, unique_columns, winner_node, winner_hlc, winner_row, loser_node, loser_hlc, loser_row) '
      + 'VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)')
      .run(BigInt(Date.now()), table, uniqueColumns.join(','), winner.node, winner.hlc, winner.row, loser.node, loser.hlc, loser.row);
  }

  deadCount(): number {
    return Number(this.db.prepare('SELECT count(*) FROM __burrow_dead').pluck().get() as bigint);
  }

  recentDead(limit: number): unknown[] {
    return this.db.prepare('SELECT id, at_ms AS atMs, origin, tbl AS "table", reason FROM __burrow_dead ORDER BY id DESC LIMIT ?').all(BigInt(limit));
  }

  conflictCount(): number {
    return Number(this.db.prepare('SELECT count(*) FROM __burrow_conflicts').pluck().get() as bigint);
  }
}
