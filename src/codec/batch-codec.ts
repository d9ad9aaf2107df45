import { createHash } from 'node:crypto';
import { Packr } from 'msgpackr';

/**
 * One NATS message = one batch of changes of one shard from one node (msgpack).
 * Row images and keys are canonical value bytes (value-codec.ts), so values stay exact
 * whatever msgpack does with numbers; the HLC is an int64 (bigint on both ends).
 */
export const batchVersion = 1;

export interface WireTable {
  /** Table name. */
  readonly n: string;
  /** Primary-key column names ("rowid" for tables without a declared primary key). */
  readonly k: readonly string[];
  /** Column names of the row images, in order (includes the key columns). */
  readonly c: readonly string[];
  /**
   * The table's schema its changes were made under (schema replication): the schema stream
   * position of the entry that last defined the table on the origin (q) and the origin's own last
   * schema entry touching it that was not ordered yet (m, 0 if none). A receiver applies the
   * changes once it has folded both; then the table (followed through renames since q) or a
   * column it lacks was dropped since, and the change goes with it. Absent: the receiver waits
   * for missing tables and columns.
   */
  readonly q?: number;
  readonly m?: number;
}

export interface WireChange {
  /** Index into `tables`. */
  readonly t: number;
  /** HLC of the change. */
  readonly h: bigint;
  /** 1 = delete (tombstone), 0 = upsert. */
  readonly d: 0 | 1;
  /** Canonical key bytes. */
  readonly k: Uint8Array;
  /** Canonical row image (values for table.c), absent for deletes. */
  readonly r?: Uint8Array;
}

export interface WireBatch {
  readonly v: number;
  /** Origin node id. */
  readonly o: string;
  readonly s: number;
  /**
   * The origin's batch number (1, 2, 3 … over all its shards, in stamp order); receivers track
   * which numbers they applied and ask the origin directly for any JetStream lost (gaps.ts).
   * Absent in batches written before burrow tracked them.
   */
  readonly n?: number;
  readonly tables: readonly WireTable[];
  readonly changes: readonly WireChange[];
}

/**
 * A batch's JetStream msgID: `<cluster>.<node>.<hlc of its first change>.<digest of its bytes>`.
 * HLC stamps of one node are unique, so it names the batch for ever (publish retries are
 * deduplicated); the digest makes it unpredictable, so no one can publish a future msgID first and
 * have JetStream drop the real batch as its duplicate. (Batches stamped before the digest was
 * added have three parts.)
 */
export function batchMsgId(cluster: string, node: string, firstHlc: bigint, payload: Uint8Array): string {
  return `${cluster}.${node}.${firstHlc}.${createHash('sha256').update(payload).digest('hex').slice(0, 16)}`;
}

/** The origin node named by a msgID (cluster names and node ids have no dots), or undefined. */
export function originOfMsgId(msgId: string | undefined): string | undefined {
  const parts = msgId?.split('.');
  return parts && parts.length >= 3 ? parts[1] : undefined;
}

/** The HLC of a batch's first change, from its msgID. */
export function firstHlcOfMsgId(msgId: string): bigint {
  return BigInt(msgId.split('.')[2]!);
}

export class MalformedBatchError extends Error {
  override name = 'MalformedBatchError';
}

const packr = new Packr({ useRecords: false, mapsAsObjects: true, int64AsType: 'bigint' } as ConstructorParameters<typeof Packr>[0]);

export function encodeBatch(b: WireBatch): Buffer {
  return packr.pack(b);
}

const hlcMax = (1n << 63n) - 1n;
const isStr = (x: unknown): x is string => typeof x === 'string' && x.length > 0;
const isBytes = (x: unknown): x is Uint8Array => x instanceof Uint8Array;
const isCount = (x: unknown): x is number => typeof x === 'number' && Number.isSafeInteger(x) && x >= 0;

/** Decode and validate; anything off → MalformedBatchError naming the problem. */
export function decodeBatch(data: Uint8Array): WireBatch {
  let b: unknown;
  try {
    b = packr.unpack(data);
  } catch (err) {
    throw new MalformedBatchError(`not msgpack: ${(err as Error).message}`);
  }
  if (typeof b !== 'object' || b === null) throw new MalformedBatchError('not a batch object');
  const o = b as Record<string, unknown>;
  if (o.v !== batchVersion) throw new MalformedBatchError(`unsupported batch version ${String(o.v)} (this node speaks ${batchVersion})`);
  if (!isStr(o.o)) throw new MalformedBatchError('missing origin node id');
  if (typeof o.s !== 'number' || !Number.isInteger(o.s) || o.s < 0) throw new MalformedBatchError('missing shard');
  if (o.n !== undefined && (typeof o.n !== 'number' || !Number.isSafeInteger(o.n) || o.n < 1)) throw new MalformedBatchError('bad batch number');
  if (!Array.isArray(o.tables)) throw new MalformedBatchError('missing tables');
  if (!Array.isArray(o.changes)) throw new MalformedBatchError('missing changes');
  for (const [i, t] of (o.tables as unknown[]).entries()) {
    const tt = t as Record<string, unknown>;
    if (typeof t !== 'object' || t === null || !isStr(tt.n) || !Array.isArray(tt.k) || !Array.isArray(tt.c)
      || !(tt.k as unknown[]).every(isStr) || !(tt.c as unknown[]).every(isStr) || tt.k.length === 0
      || (tt.q === undefined) !== (tt.m === undefined) || (tt.q !== undefined && (!isCount(tt.q) || !isCount(tt.m)))) {
      throw new MalformedBatchError(`tables[${i}] is malformed`);
    }
  }
  const nt = o.tables.length;
  for (const [i, c] of (o.changes as unknown[]).entries()) {
    const cc = c as Record<string, unknown>;
    if (typeof c !== 'object' || c === null || typeof cc.t !== 'number' || !Number.isInteger(cc.t) || cc.t < 0 || cc.t >= nt
      || typeof cc.h !== 'bigint' || cc.h < 0n || cc.h > hlcMax || (cc.d !== 0 && cc.d !== 1) || !isBytes(cc.k)
      || (cc.d === 0 && !isBytes(cc.r))) {
      throw new MalformedBatchError(`changes[${i}] is malformed`);
    }
  }
  return o as unknown as WireBatch;
}
