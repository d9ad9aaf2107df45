import type { Database } from '../sqlite/database.ts';

/**
 * Owner of `__burrow_meta`: the node's identity facts (node_id, cluster, shards), the HLC
 * high-water mark (the highest timestamp this replica has seen or issued, persisted in every
 * stamp and apply transaction, so a restarted node never stamps below a clock it already saw)
 * the last batch number it issued, and the history horizon: the HLC below which this replica has
 * collected tombstones (its absence of a key then says nothing about older versions of it).
 */
export class MetaStore {
  constructor(private readonly db: Database) {}

  get(key: string): unknown {
    return this.db.prepare('SELECT value FROM __burrow_meta WHERE key = ?').pluck().get(key);
  }

  set(key: string, value: unknown): void {
    this.db.prepare('INSERT INTO __burrow_meta(key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value').run(key, value);
  }

  delete(key: string): void {
    this.db.prepare('DELETE FROM __burrow_meta WHERE key = ?').run(key);
  }

  hlc(): bigint {
    return (this.get('hlc') as bigint | undefined) ?? 0n;
  }

  /** Raise the persisted HLC mark (never lowers it). In the caller's transaction. */
  saveHlc(hlc: bigint): void {
    this.db.prepare("INSERT INTO __burrow_meta(key, value) VALUES ('hlc', ?) ON CONFLICT(key) DO UPDATE SET value = max(value, excluded.value)").run(hlc);
  }

  lastBatchNumber(): number {
    return Number((this.get('bseq') as bigint | undefined) ?? 0n);
  }

  saveLastBatchNumber(n: number): void {
    this.set('bseq', BigInt(n));
  }

  historyHorizon(): bigint {
    return (this.get('history_horizon') as bigint | undefined) ?? 0n;
  }

  /** Raise the history horizon (never lowers it). In the caller's transaction. */
  raiseHistoryHorizon(hlc: bigint): void {
    this.db.prepare("INSERT INTO __burrow_meta(key, value) VALUES ('history_horizon', ?) ON CONFLICT(key) DO UPDATE SET value = max(value, excluded.value)").run(hlc);
  }
}
