import type { Database } from '../sqlite/database.ts';
import { batchMsgId, decodeBatch, encodeBatch, firstHlcOfMsgId, type WireBatch } from '../codec/batch-codec.ts';
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
  /**
   * Batches whose first change is older than this are not handed out for publishing: the cluster
   * may have collected the tombstones they would lose to (a node cut off for most of the history
   * horizon). The node restores from a fresh snapshot, which takes them out (dropOlderThan).
   */
  holdBelow = 0n;
  /** Payload bytes in __burrow_sent, once summed (null: not yet). */
  private sentBytes: number | null = null;

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
      if (r && this.holdBelow > 0n && SqliteOutbox.firstHlc(r[0]) < this.holdBelow) break;
      if (r) out.push({ id: n, shard, msgId: r[0], changes: Number(r[1]), payload: r[2] });
      if (out.length >= limit) break;
    }
    return out;
  }

  /** The HLC of a batch's first (oldest) change, read from its msgID. */
  static firstHlc(msgId: string): bigint {
    return firstHlcOfMsgId(msgId);
  }

  /** The oldest change still waiting to be published, or null with an empty outbox. */
  oldestHlc(): bigint | null {
    const ids = this.db.prepare('SELECT msg_id FROM __burrow_outbox').pluck().all() as string[];
    return ids.reduce<bigint | null>((m, id) => {
      const h = SqliteOutbox.firstHlc(id);
      return m === null || h < m ? h : m;
    }, null);
  }

  /**
   * Restore past the history horizon: changes older than `below` are taken out of the outbox (the
   * cluster may have forgotten the deletes they lose to) and handed to `dropped` with their batch,
   * in one transaction. A batch keeps its number (a receiver finds it shorter, or gone) and gets the
   * msgID of its first remaining change. Returns the number of changes taken out.
   */
  dropOlderThan(below: bigint, dropped: (b: WireBatch, i: number) => void): number {
    const rows = this.db.prepare('SELECT id, msg_id, payload FROM __burrow_outbox').raw(true).all() as [bigint, string, Buffer][];
    const stale = rows.filter(([, msgId]) => SqliteOutbox.firstHlc(msgId) < below);
    if (stale.length === 0) return 0;
    let n = 0;
    this.db.writeTx(() => {
      for (const [id, msgId, payload] of stale) {
        const b = decodeBatch(payload);
        const keep = b.changes.filter((c) => c.h >= below);
        b.changes.forEach((c, i) => { if (c.h < below) dropped(b, i); });
        n += b.changes.length - keep.length;
        if (keep.length === 0) {
          this.db.prepare('DELETE FROM __burrow_outbox WHERE id = ?').run(id);
          continue;
        }
        const cluster = msgId.split('.')[0]!;
        const shorter = encodeBatch({ ...b, changes: keep });
        this.db.prepare('UPDATE __burrow_outbox SET msg_id = ?, changes = ?, payload = ? WHERE id = ?')
          .run(batchMsgId(cluster, b.o, keep[0]!.h, shorter), BigInt(keep.length), shorter, id);
      }
    });
    return n;
  }

  /** Acknowledged batches leave the outbox for the sent log (kept a while for receivers that find gaps). */
  remove(ids: readonly number[]): void {
    const keep = this.db.prepare('INSERT OR IGNORE INTO __burrow_sent(bseq, shard, at_ms, payload) '
      + 'SELECT bseq, shard, ?, payload FROM __burrow_outbox WHERE id = ? AND bseq IS NOT NULL RETURNING length(payload)').pluck();
    const del = this.db.prepare('DELETE FROM __burrow_outbox WHERE id = ?');
    const msgId = sabotage.dropAcked ? this.db.prepare('SELECT msg_id FROM __burrow_outbox WHERE id = ?').pluck() : null;
    const now = BigInt(Date.now());
    let added = 0;
    this.db.writeTx(() => {
      for (const id of ids) {
        // TEST ONLY (drop-acked): the batch the publisher pretended to send is not kept either.
        if (!(msgId && sabotageDrops(msgId.get(BigInt(id)) as string))) added += Number((keep.get(now, BigInt(id)) as bigint | undefined) ?? 0n);
        del.run(BigInt(id));
      }
    });
    // After the commit: a write transaction is never nested (Database.writeTx), so no rollback can follow.
    if (this.sentBytes !== null) this.sentBytes += added;
  }

  /** Payload bytes in the sent log (summed once, then kept by remove and pruneSent, its only writers). */
  sentLogBytes(): number {
    this.sentBytes ??= Number((this.db.prepare('SELECT sum(length(payload)) FROM __burrow_sent').pluck().get() as bigint | null) ?? 0n);
    return this.sentBytes;
  }

  /**
   * Bound the sent log: drop batches older than `retainMs`, all but the newest `countMax`, and the
   * oldest beyond `bytesMax`. Oldest first by number, as a prefix (gap repair takes numbers below
   * the first kept as gone), stopping at the first batch every bound keeps: a pass reads what it
   * drops plus one row. (At 1k writes/s the log reaches its 200k-batch bound within minutes; a
   * pass that summed every payload blocked the node ~140 ms there, every 10 s.)
   */
  pruneSent(retainMs: number, countMax: number, bytesMax = Number.MAX_SAFE_INTEGER): number {
    const total = this.sentLogBytes();
    const oldAt = BigInt(Date.now() - retainMs);
    const { dropped, freed } = this.db.writeTx(() => {
      const newest = (this.db.prepare('SELECT max(bseq) FROM __burrow_sent').pluck().get() as bigint | null) ?? 0n;
      const countBelow = newest - BigInt(countMax);
      // A cursor from the oldest: leaving the loop ends the read, so only what is dropped (and one row) is read.
      const oldest = this.db.prepare('SELECT bseq, at_ms, length(payload) FROM __burrow_sent ORDER BY bseq').raw(true);
      let cut: bigint | null = null;
      let n = 0;
      let bytes = 0;
      for (const [bseq, at, len] of oldest.iterate() as IterableIterator<[bigint, bigint, bigint]>) {
        if (bseq > countBelow && at >= oldAt && total - bytes <= bytesMax) break;
        cut = bseq;
        n++;
        bytes += Number(len);
      }
      if (cut !== null) this.db.prepare('DELETE FROM __burrow_sent WHERE bseq <= ?').run(cut);
      return { dropped: n, freed: bytes };
    });
    this.sentBytes = total - freed;
    return dropped;
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
