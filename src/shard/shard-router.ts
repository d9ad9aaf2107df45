import { createXXHash64, type IHasher } from 'hash-wasm';
import { assert } from '../util/assert.ts';

/**
 * (table, encoded primary key) → shard, and shard → JetStream stream/subject names. Pure and
 * deterministic across nodes and versions (test vectors in test/unit/shard-router.test.ts):
 *
 *   h     = xxhash64(seed 0) over UTF-8(table) ‖ 0x00 ‖ key bytes (codec/value-codec.ts)
 *   shard = jump consistent hash (Lamping & Veach 2014) of h into `shards` buckets
 */
export class ShardRouter {
  private static readonly sep = new Uint8Array([0]);

  private constructor(private readonly hasher: IHasher, readonly shards: number) {}

  static async create(shards: number): Promise<ShardRouter> {
    assert(Number.isInteger(shards) && shards >= 1, `shards must be a positive integer, got ${shards}`);
    return new ShardRouter(await createXXHash64(0, 0), shards);
  }

  hash(table: string, key: Uint8Array): bigint {
    const h = this.hasher;
    h.init();
    h.update(table);
    h.update(ShardRouter.sep);
    h.update(key);
    return h.digest('binary').reduce((acc, byte) => (acc << 8n) | BigInt(byte), 0n);
  }

  shardOf(table: string, key: Uint8Array): number {
    return jumpHash(this.hash(table, key), this.shards);
  }
}

const mask64 = (1n << 64n) - 1n;

/** Jump consistent hash: uint64 key → bucket in [0, buckets). */
export function jumpHash(key: bigint, buckets: number): number {
  assert(buckets >= 1, 'buckets must be >= 1');
  let k = key & mask64;
  let b = -1;
  let j = 0;
  while (j < buckets) {
    b = j;
    k = (k * 2862933555777941757n + 1n) & mask64;
    j = Math.floor((b + 1) * (2 ** 31 / (Number(k >> 33n) + 1)));
  }
  return b;
}

/** Names of the JetStream objects of a cluster. Cluster names and node ids are [A-Za-z0-9_-]. */
export function streamName(cluster: string, shard: number): string {
  return `burrow_${cluster}_${shard}`;
}

export function shardSubject(cluster: string, shard: number): string {
  return `burrow.${cluster}.s.${shard}`;
}

export function consumerName(nodeId: string): string {
  return `node_${nodeId}`;
}
