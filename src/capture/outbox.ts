import type { Database } from '../sqlite/database.ts';

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

  /** Oldest batches of one shard, skipping ids in `exclude`, at most `limit`. */
  pending(shard: number, limit: number, exclude: ReadonlySet<number>): OutboxRow[] {
    if (limit <= 0) return [];
    const rows = this.db.prepare('SELECT id, shard, msg_id, changes, payload FROM __burrow_outbox WHERE shard = ? ORDER BY id LIMIT ?')
      .raw(true).all(BigInt(shard), limit + exclude.size) as [bigint, bigint, string, bigint, Buffer][];
    const out: OutboxRow[] = [];
    for (const [id, sh, msgId, changes, payload] of rows) {
      const n = Number(id);
      if (exclude.has(n)) continue;
      out.push({ id: n, shard: Number(sh), msgId, changes: Number(changes), payload });
      if (out.length >= limit) break;
    }
    return out;
  }

  remove(ids: readonly number[]): void {
    const del = this.db.prepare('DELETE FROM __burrow_outbox WHERE id = ?');
    this.db.writeTx(() => {
      for (const id of ids) del.run(BigInt(id));
    });
  }

  counts(): { batches: number; changes: number } {
    const r = this.db.prepare('SELECT count(*), coalesce(sum(changes), 0) FROM __burrow_outbox').raw(true).get() as [bigint, bigint];
    return { batches: Number(r[0]), changes: Number(r[1]) };
  }

  logRows(): number {
    return Number(this.db.prepare('SELECT count(*) FROM __burrow_log').pluck().get() as bigint);
  }
}
