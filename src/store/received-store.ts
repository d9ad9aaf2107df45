import type { Database } from '../sqlite/database.ts';
import type { NoteResult } from '../replication/gaps.ts';

/**
 * Owner of `__burrow_received` / `__burrow_received_above` (per origin: batch numbers applied
 * here, for gap repair) and `__burrow_applied` (per shard: highest stream sequence applied).
 * Written inside the apply transaction, so they always describe what the replica holds.
 */
export class ReceivedStore {
  constructor(private readonly db: Database) {}

  load(): Map<string, { contiguous: number; above: number[] }> {
    const out = new Map<string, { contiguous: number; above: number[] }>();
    for (const [o, c] of this.db.conn.prepare('SELECT origin, contiguous FROM __burrow_received').raw(true).all() as [string, bigint][]) {
      out.set(o, { contiguous: Number(c), above: [] });
    }
    for (const [o, n] of this.db.conn.prepare('SELECT origin, n FROM __burrow_received_above').raw(true).all() as [string, bigint][]) {
      const r = out.get(o) ?? { contiguous: 0, above: [] };
      r.above.push(Number(n));
      out.set(o, r);
    }
    return out;
  }

  /** Persist one batch-number note (GapTracker.noteApplied's result). */
  save(origin: string, n: number, r: NoteResult): void {
    if (r.above) this.db.prepare('INSERT OR IGNORE INTO __burrow_received_above(origin, n) VALUES (?, ?)').run(origin, BigInt(n));
    if (r.contiguous !== null) {
      this.db.prepare('INSERT INTO __burrow_received(origin, contiguous) VALUES (?, ?) ON CONFLICT(origin) DO UPDATE SET contiguous = excluded.contiguous')
        .run(origin, BigInt(r.contiguous));
      this.db.prepare('DELETE FROM __burrow_received_above WHERE origin = ? AND n <= ?').run(origin, BigInt(r.contiguous));
    }
  }

  /** A snapshot restore brought in every batch of `origin` up to `contiguous` (never lowers it). */
  raiseContiguous(origin: string, contiguous: number): void {
    this.db.prepare('INSERT INTO __burrow_received(origin, contiguous) VALUES (?, ?) ON CONFLICT(origin) DO UPDATE SET contiguous = max(contiguous, excluded.contiguous)')
      .run(origin, BigInt(contiguous));
    this.db.prepare('DELETE FROM __burrow_received_above WHERE origin = ? AND n <= (SELECT contiguous FROM __burrow_received WHERE origin = ?)').run(origin, origin);
  }

  positions(): Map<number, number> {
    const out = new Map<number, number>();
    for (const [s, q] of this.db.conn.prepare('SELECT shard, stream_seq FROM __burrow_applied').raw(true).all() as [bigint, bigint][]) out.set(Number(s), Number(q));
    return out;
  }

  savePositions(positions: ReadonlyMap<number, number>): void {
    const pos = this.db.prepare('INSERT INTO __burrow_applied(shard, stream_seq, at_ms) VALUES (?, ?, ?) '
      + 'ON CONFLICT(shard) DO UPDATE SET stream_seq = max(stream_seq, excluded.stream_seq), at_ms = excluded.at_ms');
    const now = BigInt(Date.now());
    for (const [shard, seq] of positions) pos.run(BigInt(shard), BigInt(seq), now);
  }
}
