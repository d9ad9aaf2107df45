import type { Database } from '../sqlite/database.ts';

/**
 * Bounds of the waiting room: at most this many changes and bytes wait for a schema (beyond them
 * messages are held in JetStream and read again later: nothing is dropped); a change waiting
 * longer than the age bound moves to the dead letters (`burrow dead --retry` brings it back).
 */
export const waitingLimits = { changesMax: 1_000_000, bytesMax: 256 * 1024 * 1024, ageMsMax: 7 * 86_400_000 };
const retryMsMin = 1_000;
const retryMsMax = 60_000;

export interface WaitingChange {
  readonly id: bigint;
  readonly attempts: number;
  readonly shard: number;
  readonly seq: number;
  /** The change as a one-change batch (batch-codec). */
  readonly change: Buffer;
}

/**
 * Owner of `__burrow_waiting`: changes whose table or columns do not exist here yet (a migration
 * not yet run on this node), retried with backoff and whenever the schema changes. The count is
 * kept in memory and re-read after a rolled-back transaction (`recount`).
 */
export class WaitingRoom {
  private n = 0;
  private bytes = 0;
  /** Changes moved to the dead letters by the age bound since start (status). */
  expired = 0;

  constructor(private readonly db: Database, private readonly limits = waitingLimits) {
    this.recount();
  }

  count(): number {
    return this.n;
  }

  full(): boolean {
    return this.n >= this.limits.changesMax || this.bytes >= this.limits.bytesMax;
  }

  recount(): number {
    const r = this.db.prepare('SELECT count(*) AS n, coalesce(sum(length(change)), 0) AS b FROM __burrow_waiting').get() as { n: bigint; b: bigint };
    this.n = Number(r.n);
    this.bytes = Number(r.b);
    return this.n;
  }

  park(shard: number, seq: number, origin: string, table: string, hlc: bigint, reason: string, change: Buffer, nowMs = Date.now()): void {
    this.db.prepare('INSERT INTO __burrow_waiting(at_ms, next_ms, attempts, shard, stream_seq, origin, tbl, hlc, reason, change) VALUES (?, ?, 0, ?, ?, ?, ?, ?, ?, ?)')
      .run(BigInt(nowMs), BigInt(nowMs + retryMsMin), BigInt(shard), BigInt(seq), origin, table, hlc, reason, change);
    this.n++;
    this.bytes += change.length;
  }

  /**
   * Take (delete and return) up to `limit` changes that have waited longer than the age bound,
   * oldest first: the caller dead-letters them in the same transaction.
   */
  takeExpired(limit: number, nowMs = Date.now()): { shard: number; seq: number; origin: string; table: string; hlc: bigint; reason: string; change: Buffer }[] {
    if (this.n === 0) return [];
    const rows = this.db.prepare('SELECT id, shard, stream_seq AS seq, origin, tbl AS "table", hlc, reason, change FROM __burrow_waiting WHERE at_ms < ? ORDER BY id LIMIT ?')
      .all(BigInt(nowMs - this.limits.ageMsMax), BigInt(limit)) as { id: bigint; shard: bigint | null; seq: bigint | null; origin: string; table: string; hlc: bigint; reason: string; change: Buffer }[];
    for (const r of rows) this.remove(r.id, r.change.length);
    this.expired += rows.length;
    return rows.map((r) => ({ shard: Number(r.shard ?? -1), seq: Number(r.seq ?? 0), origin: r.origin, table: r.table, hlc: r.hlc, reason: r.reason, change: r.change }));
  }

  /** Changes due for a retry (all of them when `all`), oldest due first. */
  due(all: boolean, limit: number): WaitingChange[] {
    const rows = this.db.prepare(
      'SELECT id, attempts, shard, stream_seq, change FROM __burrow_waiting WHERE next_ms <= ? ORDER BY next_ms, id LIMIT ?',
    ).raw(true).all(all ? BigInt(Number.MAX_SAFE_INTEGER) : BigInt(Date.now()), BigInt(limit)) as [bigint, bigint, bigint | null, bigint | null, Buffer][];
    return rows.map(([id, attempts, shard, seq, change]) => ({ id, attempts: Number(attempts), shard: Number(shard ?? -1), seq: Number(seq ?? 0), change }));
  }

  remove(id: bigint, bytes: number): void {
    this.db.prepare('DELETE FROM __burrow_waiting WHERE id = ?').run(id);
    this.n--;
    this.bytes -= bytes;
  }

  /** Not yet: try again later (exponential backoff up to a minute). */
  later(w: WaitingChange, reason: string): void {
    const attempts = w.attempts + 1;
    const delay = Math.min(retryMsMax, retryMsMin * 2 ** Math.min(attempts, 10));
    this.db.prepare('UPDATE __burrow_waiting SET attempts = ?, next_ms = ?, reason = ? WHERE id = ?').run(BigInt(attempts), BigInt(Date.now() + delay), reason, w.id);
  }

  /** Make every waiting change due now (the schema changed). */
  wakeAll(): void {
    if (this.n > 0) this.db.prepare('UPDATE __burrow_waiting SET next_ms = 0').run();
  }

  /** Waiting changes, oldest first (`burrow waiting`). */
  list(limit: number): unknown[] {
    return this.db.prepare('SELECT id, at_ms AS atMs, origin, tbl AS "table", hlc, reason, attempts, next_ms AS nextRetryAtMs FROM __burrow_waiting ORDER BY id LIMIT ?').all(BigInt(limit));
  }

  /** Per table and reason (status). */
  summary(limit: number): unknown[] {
    return this.db.prepare('SELECT tbl AS "table", reason, count(*) AS changes, max(attempts) AS attempts, min(next_ms) AS nextRetryAtMs '
      + 'FROM __burrow_waiting GROUP BY tbl, reason ORDER BY tbl LIMIT ?').all(BigInt(limit));
  }
}
