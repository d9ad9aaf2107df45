import type { Database } from '../sqlite/database.ts';
import { sabotage, sabotageDrops } from '../util/sabotage.ts';

export interface OutboxRow {
  readonly id: number;
  readonly shard: number;
  readonly msgId: string;
  readonly changes: number;
  readonly payload: Uint8Array;
}

/** The SQLite side of the publisher's outbox (__burrow_outbox): read oldest first, delete after ack. */
export class SqliteOutbox {
  constructor(private readonly db: Database) {}

  /**
   * Oldest batches of one shard, skipping ids in `exclude`, at most `limit`. Ids come from the
   * (shard, id) index first, so payloads are read only for the batches returned, not for those
   * already in flight.
   */
  pending(shard: number, limit: number, exclude: ReadonlySet<number>): OutboxRow[] {
    if (limit <= 0) return [];
    const ids = this.db.prepare('SELECT id FROM __burrow_outbox WHERE shard = ? ORDER BY id LIMIT ?').pluck()
      .all(BigInt(shard), limit + exclude.size) as bigint[];
    const get = this.db.prepare('SELECT msg_id, changes, payload FROM __burrow_outbox WHERE id = ?').raw(true);
    const out: OutboxRow[] = [];
    for (const id of ids) {
      const n = Number(id);
      if (exclude.has(n)) continue;
      const r = get.get(id) as [string, bigint, Buffer] | undefined;
      if (r) out.push({ id: n, shard, msgId: r[0], changes: Number(r[1]), payload: r[2] });
      if (out.length >= limit) break;
    }
    return out;
  }

  /** Acknowledged batches leave the outbox for the sent log (kept a while for receivers that find gaps). */
  remove(ids: readonly number[]): void {
    const keep = this.db.prepare('INSERT OR IGNORE INTO __burrow_sent(bseq, shard, at_ms, payload) '
      + 'SELECT bseq, shard, ?, payload FROM __burrow_outbox WHERE id = ? AND bseq IS NOT NULL');
    const del = this.db.prepare('DELETE FROM __burrow_outbox WHERE id = ?');
    const msgId = sabotage.dropAcked ? this.db.prepare('SELECT msg_id FROM __burrow_outbox WHERE id = ?').pluck() : null;
    const now = BigInt(Date.now());
    this.db.writeTx(() => {
      for (const id of ids) {
        // TEST ONLY (drop-acked): the batch the publisher pretended to send is not kept either.
        if (!(msgId && sabotageDrops(msgId.get(BigInt(id)) as string))) keep.run(now, BigInt(id));
        del.run(BigInt(id));
      }
    });
  }

  /** Bound the sent log: drop batches older than `retainMs`, and all but the newest `countMax`. */
  pruneSent(retainMs: number, countMax: number): number {
    return this.db.writeTx(() => {
      const a = this.db.prepare('DELETE FROM __burrow_sent WHERE at_ms < ?').run(BigInt(Date.now() - retainMs)).changes;
      const b = this.db.prepare('DELETE FROM __burrow_sent WHERE bseq <= (SELECT max(bseq) FROM __burrow_sent) - ?').run(BigInt(countMax)).changes;
      return a + b;
    });
  }

  /** Sent batches by number, up to about `bytesMax` (at least one); numbers no longer kept are `gone`. */
  sentBatches(want: readonly number[], bytesMax: number): { batches: Buffer[]; gone: number[] } {
    const get = this.db.prepare('SELECT payload FROM __burrow_sent WHERE bseq = ?').pluck();
    const batches: Buffer[] = [];
    const gone: number[] = [];
    let bytes = 0;
    for (const n of want) {
      const p = get.get(BigInt(n)) as Buffer | undefined;
      if (!p) {
        // Not sent yet (still in the outbox: it will arrive through JetStream) or no longer kept.
        const queued = this.db.prepare('SELECT 1 FROM __burrow_outbox WHERE bseq = ?').pluck().get(BigInt(n)) !== undefined;
        if (!queued) gone.push(n);
        continue;
      }
      if (batches.length > 0 && bytes + p.length > bytesMax) break;
      batches.push(p);
      bytes += p.length;
    }
    return { batches, gone };
  }

  /** Every batch numbered up to this was acknowledged by JetStream (receivers should have it). */
  publishedUpto(): number {
    const minQueued = this.db.prepare('SELECT min(bseq) FROM __burrow_outbox').pluck().get() as bigint | null;
    if (minQueued !== null) return Number(minQueued) - 1;
    return Number((this.db.prepare("SELECT value FROM __burrow_meta WHERE key = 'bseq'").pluck().get() as bigint | undefined) ?? 0n);
  }

  counts(): { batches: number; changes: number } {
    const r = this.db.prepare('SELECT count(*), coalesce(sum(changes), 0) FROM __burrow_outbox').raw(true).get() as [bigint, bigint];
    return { batches: Number(r[0]), changes: Number(r[1]) };
  }

  logRows(): number {
    return Number(this.db.prepare('SELECT count(*) FROM __burrow_log').pluck().get() as bigint);
  }
}
