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
/** Bounds of the two tables (a flood of bad messages must not fill the disk): oldest rows go first. */
export const quarantineLimits = { rowsMax: 100_000, deadBytesMax: 256 * 1024 * 1024, ageMsMax: 30 * 86_400_000, pruneEvery: 1000 };

export class Quarantine {
  /** Rows pruned since start (status). */
  pruned = 0;
  private inserts = 0;

  constructor(private readonly db: Database, private readonly limits = quarantineLimits) {}

  /**
   * Keep both tables within their bounds: rows, bytes of kept messages, age. Run every
   * `pruneEvery` inserts (inside the caller's transaction) and by the node's housekeeping.
   */
  prune(nowMs = Date.now()): number {
    const { rowsMax, deadBytesMax, ageMsMax } = this.limits;
    let n = 0;
    for (const t of ['__burrow_dead', '__burrow_conflicts']) {
      n += this.db.prepare(`DELETE FROM ${t} WHERE id <= (SELECT max(id) FROM ${t}) - ? OR at_ms < ?`).run(BigInt(rowsMax), BigInt(nowMs - ageMsMax)).changes;
    }
    // Bytes: the newest messages kept up to the bound (a window sum, cheap at this row count).
    n += this.db.prepare(`DELETE FROM __burrow_dead WHERE id <= (SELECT id FROM (SELECT id, sum(coalesce(length(change), 0) + length(reason)) OVER (ORDER BY id DESC) AS s
      FROM __burrow_dead) WHERE s > ? ORDER BY id DESC LIMIT 1)`).run(BigInt(deadBytesMax)).changes;
    this.pruned += n;
    return n;
  }

  private inserted(): void {
    if (++this.inserts % this.limits.pruneEvery === 0) this.prune();
  }

  deadLetter(d: DeadLetter): void {
    this.inserted();
    this.db.prepare('INSERT INTO __burrow_dead(at_ms, shard, stream_seq, origin, tbl, hlc, reason, change) VALUES (?, ?, ?, ?, ?, ?, ?, ?)')
      .run(BigInt(Date.now()), d.shard === null ? null : BigInt(d.shard), d.seq === null ? null : BigInt(d.seq), d.origin, d.table, d.hlc, d.reason,
        d.change ? Buffer.from(d.change) : null);
  }

  conflict(table: string, uniqueColumns: readonly string[], winner: ConflictSide, loser: ConflictSide): void {
    this.inserted();
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

  /** Dead letters, newest first (inspection: `burrow dead`). */
  listDead(limit: number): unknown[] {
    return this.db.prepare('SELECT id, at_ms AS atMs, shard, stream_seq AS seq, origin, tbl AS "table", hlc, reason, length(change) AS bytes '
      + 'FROM __burrow_dead ORDER BY id DESC LIMIT ?').all(BigInt(limit));
  }

  /** Dead letters taken out to be applied again (`all`, or these ids), oldest first, with their bytes. */
  takeDead(ids: readonly number[] | 'all', limit: number): { id: number; reason: string; change: Buffer | null; shard: number | null }[] {
    const rows = (ids === 'all'
      ? this.db.prepare('SELECT id, reason, change, shard FROM __burrow_dead ORDER BY id LIMIT ?').all(BigInt(limit))
      : ids.slice(0, limit).map((id) => this.db.prepare('SELECT id, reason, change, shard FROM __burrow_dead WHERE id = ?').get(BigInt(id))).filter((r) => r !== undefined)) as
      { id: bigint; reason: string; change: Buffer | null; shard: bigint | null }[];
    const del = this.db.prepare('DELETE FROM __burrow_dead WHERE id = ?');
    for (const r of rows) del.run(r.id);
    return rows.map((r) => ({ id: Number(r.id), reason: r.reason, change: r.change, shard: r.shard === null ? null : Number(r.shard) }));
  }

  /** Ids of whole messages refused because their origin or signer was not a member, oldest first (retried when members are added). */
  refusedNonMembers(limit: number): number[] {
    return (this.db.prepare("SELECT id FROM __burrow_dead WHERE reason LIKE 'rejected message:%not a member%' ORDER BY id LIMIT ?")
      .pluck().all(BigInt(limit)) as bigint[]).map(Number);
  }

  /** Dead letters deleted for good (`all`, or these ids); how many. */
  purgeDead(ids: readonly number[] | 'all'): number {
    if (ids === 'all') return this.db.prepare('DELETE FROM __burrow_dead').run().changes;
    const del = this.db.prepare('DELETE FROM __burrow_dead WHERE id = ?');
    return ids.reduce((n, id) => n + del.run(BigInt(id)).changes, 0);
  }

  /** UNIQUE conflicts resolved here, newest first (`burrow conflicts`). */
  listConflicts(limit: number): unknown[] {
    return this.db.prepare('SELECT id, at_ms AS atMs, tbl AS "table", unique_columns AS uniqueColumns, winner_node AS winnerNode, winner_hlc AS winnerHlc, winner_row AS winnerRow, '
      + 'loser_node AS loserNode, loser_hlc AS loserHlc, loser_row AS loserRow FROM __burrow_conflicts ORDER BY id DESC LIMIT ?').all(BigInt(limit));
  }

  conflictCount(): number {
    return Number(this.db.prepare('SELECT count(*) FROM __burrow_conflicts').pluck().get() as bigint);
  }
}
