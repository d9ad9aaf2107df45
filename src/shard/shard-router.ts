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
  /** utf8(table) ‖ 0x00 per table name (a handful of tables; reset if it ever grows large). */
  private readonly prefixes = new Map<string, Buffer>();
  /** Scratch input buffer: one update() per hash instead of three. */
  private input = Buffer.alloc(1024);

  private constructor(private readonly hasher: IHasher, readonly shards: number) {}

  static async create(shards: number): Promise<ShardRouter> {
    assert(Number.isInteger(shards) && shards >= 1, `shards must be a positive integer, got ${shards}`);
    return new ShardRouter(await createXXHash64(0, 0), shards);
  }

  /** xxhash64 digest (8 bytes, big-endian) of utf8(table) ‖ 0x00 ‖ key. */
  private digest(table: string, key: Uint8Array): Uint8Array {
    let prefix = this.prefixes.get(table);
    if (!prefix) {
      if (this.prefixes.size >= 10_000) this.prefixes.clear();
      prefix = Buffer.concat([Buffer.from(table, 'utf8'), Buffer.from([0])]);
      this.prefixes.set(table, prefix);
    }
    const n = prefix.length + key.length;
    if (n > this.input.length) this.input = Buffer.alloc(2 * n);
    prefix.copy(this.input, 0);
    this.input.set(key, prefix.length);
    const h = this.hasher;
    h.init();
    h.update(this.input.subarray(0, n));
    return h.digest('binary');
  }

  hash(table: string, key: Uint8Array): bigint {
    const d = this.digest(table, key);
    return new DataView(d.buffer, d.byteOffset, 8).getBigUint64(0);
  }

  shardOf(table: string, key: Uint8Array): number {
    const d = this.digest(table, key);
    const v = new DataView(d.buffer, d.byteOffset, 8);
    return jumpHash32(v.getUint32(0), v.getUint32(4), this.shards);
  }
}

const mask64 = (1n << 64n) - 1n;

/** Jump consistent hash: uint64 key → bucket in [0, buckets). */
export function jumpHash(key: bigint, buckets: number): number {
  const k = key & mask64;
  return jumpHash32(Number(k >> 32n), Number(k & 0xffffffffn), buckets);
}

// The LCG multiplier 2862933555777941757 = 0x27BB2EE6_87B0B0FD in 32- and 16-bit parts.
const mulHi = 0x27bb2ee6;
const mulLo = 0x87b0b0fd;
const mulLo0 = 0xb0fd;
const mulLo1 = 0x87b0;

/**
 * Jump consistent hash (Lamping & Veach 2014) of the uint64 key hi·2^32 + lo, in 32-bit
 * arithmetic (no BigInt on the hot path): k = k·2862933555777941757 + 1 mod 2^64;
 * j = ⌊(b + 1) · 2^31 / ((k >> 33) + 1)⌋.
 */
export function jumpHash32(hi: number, lo: number, buckets: number): number {
  assert(buckets >= 1, 'buckets must be >= 1');
  let b = -1;
  let j = 0;
  while (j < buckets) {
    b = j;
    // 64-bit product mod 2^64: lo·mulLo in full (16-bit limbs), cross terms only in the high word.
    const a0 = lo & 0xffff;
    const a1 = lo >>> 16;
    const p0 = a0 * mulLo0;
    const p1 = a1 * mulLo0;
    const p2 = a0 * mulLo1;
    const p3 = a1 * mulLo1;
    const mid = (p0 >>> 16) + (p1 & 0xffff) + (p2 & 0xffff);
    let nlo = ((((mid & 0xffff) << 16) | (p0 & 0xffff)) >>> 0) + 1;
    let nhi = p3 + Math.floor(p1 / 0x10000) + Math.floor(p2 / 0x10000) + Math.floor(mid / 0x10000) + Math.imul(hi, mulLo) + Math.imul(lo, mulHi);
    if (nlo === 0x100000000) {
      nlo = 0;
      nhi += 1;
    }
    hi = nhi >>> 0;
    lo = nlo;
    j = Math.floor((b + 1) * (2 ** 31 / ((hi >>> 1) + 1)));
  }
  return b;
}

/** Names of the JetStream objects of a cluster. Cluster names and node ids are [A-Za-z0-9_-]. */
export function streamName(cluster: string, shard: number): string {
  return `burrow_${cluster}_${shard}`;
}

/** The shard a stream name of `cluster` stands for, or -1 for any other name. */
export function shardOfStream(cluster: string, stream: string | undefined): number {
  const prefix = `burrow_${cluster}_`;
  if (!stream?.startsWith(prefix)) return -1;
  const rest = stream.slice(prefix.length);
  return /^\d{1,9}$/.test(rest) ? Number(rest) : -1;
}

/** The schema stream: every node's schema entries in one cluster-wide order. */
export function schemaStreamName(cluster: string): string {
  return `burrow_${cluster}_schema`;
}

/**
 * Subjects carry their publisher as the last token (`burrow.<c>.s.<shard>.<node>`,
 * `burrow.<c>.schema.<node>`, `burrow.<c>.hb.<node>`): with [security] auth each member's NATS
 * user may publish only on its own (security/permissions.ts), so the server vouches for who
 * published a message, whatever the message says. Streams take every publisher (`.*`).
 */
export function schemaSubject(cluster: string, node: string): string {
  return `burrow.${cluster}.schema.${node}`;
}

export function shardSubject(cluster: string, shard: number | '*', node: string): string {
  return `burrow.${cluster}.s.${shard}.${node}`;
}

export function heartbeatSubject(cluster: string, node: string): string {
  return `burrow.${cluster}.hb.${node}`;
}

/** Gap repair asks `node` for batches it sent on this subject (repair.ts); only `node` listens. */
export function replaySubject(cluster: string, node: string): string {
  return `burrow.${cluster}.replay.${node}`;
}

/** A restoring node asks `node` to take a snapshot now (snapshots.ts); only `node` listens. */
export function snapshotTakeSubject(cluster: string, node: string): string {
  return `burrow.${cluster}.snapshot.take.${node}`;
}

/** What a shard stream stores: every member's subject of that shard. */
export function shardStreamSubjects(cluster: string, shard: number): string[] {
  return [shardSubject(cluster, shard, '*')];
}

export function schemaStreamSubjects(cluster: string): string[] {
  return [schemaSubject(cluster, '*')];
}

/**
 * The subjects streams of burrow before per-publisher subjects stored (one per stream, the
 * publisher only named in the msgID). Messages still stored under them are read as before;
 * ensureStreams moves a stream from them to the new subjects.
 */
export function legacyStreamSubjects(cluster: string, shard: number | 'schema'): string[] {
  return [shard === 'schema' ? `burrow.${cluster}.schema` : `burrow.${cluster}.s.${shard}`];
}

/** The publisher a stream message's subject names, or undefined for a legacy subject (or a foreign one). */
export function publisherOfSubject(cluster: string, subject: string): string | undefined {
  const prefix = `burrow.${cluster}.`;
  if (!subject.startsWith(prefix)) return undefined;
  const t = subject.slice(prefix.length).split('.');
  if (t.length === 3 && t[0] === 's' && /^\d{1,9}$/.test(t[1]!)) return t[2];
  if (t.length === 2 && (t[0] === 'schema' || t[0] === 'hb')) return t[1];
  return undefined;
}
