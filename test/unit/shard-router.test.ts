import { test, describe, before } from 'node:test';
import assert from 'node:assert/strict';
import { xxhash64 } from 'hash-wasm';
import {
  ShardRouter, heartbeatSubject, jumpHash, legacyStreamSubjects, publisherOfSubject, schemaStreamSubjects, schemaSubject, shardOfStream, shardStreamSubjects,
  shardSubject, streamName,
} from '../../src/shard/shard-router.ts';
import { encodeValues, type SqlValue } from '../../src/codec/value-codec.ts';

/*
 * Routing must be identical on every node and across versions: changing the hash, the byte layout
 * fed to it, or the jump hash reshuffles every row's shard. These vectors pin the current behaviour.
 */

let router: ShardRouter;
before(async () => {
  router = await ShardRouter.create(16);
});

const hex = (h: bigint): string => h.toString(16).padStart(16, '0');

/** (table, key values) → [expected shard of 16, expected xxhash64 hex]. */
const ROUTING_VECTORS: Array<{ table: string; key: SqlValue[]; shard: number; hash: string }> = [
  { table: 'users', key: [1n], shard: 6, hash: '9573a45aec9a9dcf' },
  { table: 'users', key: ['alice'], shard: 3, hash: '6f7e91deda2b5346' },
  { table: 'orders', key: [42n, 'x'], shard: 12, hash: '48e430d69ec2df51' },
  { table: 'orders', key: [1n, 2n], shard: 11, hash: 'a930e43ff1b65855' },
  { table: 'files', key: [Buffer.from([0xde, 0xad, 0xbe, 0xef])], shard: 7, hash: 'd4d2e901cc296499' },
  { table: '', key: [1n], shard: 13, hash: '7595425dac7c3823' },
  { table: 'users', key: [null], shard: 15, hash: '5b0e3de080196ec6' },
  { table: 'users', key: [1.5], shard: 15, hash: 'd2ffa5ad86629a85' },
];

describe('ShardRouter test vectors', () => {
  for (const v of ROUTING_VECTORS) {
    const label = `${JSON.stringify(v.table)} ${v.key.map((k) => (typeof k === 'bigint' ? `${k}n` : Buffer.isBuffer(k) ? `0x${k.toString('hex')}` : JSON.stringify(k))).join(',')}`;
    test(`shardOf(${label}) = ${v.shard}`, () => {
      const key = encodeValues(v.key);
      assert.equal(router.shardOf(v.table, key), v.shard);
      assert.equal(hex(router.hash(v.table, key)), v.hash);
    });
  }

  test('hash() hex vectors for raw byte keys', () => {
    assert.equal(hex(router.hash('', new Uint8Array())), 'e934a84adb052768');
    assert.equal(hex(router.hash('users', new Uint8Array())), '36fb32623cbdeb54');
    assert.equal(hex(router.hash('t', Buffer.from('é', 'utf8'))), 'e58a643498d4e781');
    assert.equal(hex(router.hash('é', new Uint8Array())), '47f6a9801aaf9045');
  });

  test('the 0x00 separator keeps table name and key apart', () => {
    // 'a' ‖ 0 ‖ 'b'  vs  'ab' ‖ 0 ‖ ''
    assert.notEqual(router.hash('a', Buffer.from('b')), router.hash('ab', new Uint8Array()));
  });

  test('shard count does not change the hash, only the bucket', async () => {
    const r1000 = await ShardRouter.create(1000);
    const key = encodeValues([1n]);
    assert.equal(r1000.hash('users', key), router.hash('users', key));
    assert.equal(r1000.shards, 1000);
    assert.equal(r1000.shardOf('users', key), jumpHash(router.hash('users', key), 1000));
  });

  test('a router with 1 shard maps everything to shard 0', async () => {
    const r1 = await ShardRouter.create(1);
    for (const v of ROUTING_VECTORS) assert.equal(r1.shardOf(v.table, encodeValues(v.key)), 0);
  });

  test('create rejects a non-positive or fractional shard count', async () => {
    await assert.rejects(ShardRouter.create(0), /shards must be a positive integer/);
    await assert.rejects(ShardRouter.create(2.5), /shards must be a positive integer/);
  });

  test('hash is stable across repeated calls (hasher state is reset)', () => {
    const key = encodeValues(['alice']);
    const first = router.hash('users', key);
    router.hash('other', encodeValues([99n]));
    assert.equal(router.hash('users', key), first);
  });
});

describe('cross-check against hash-wasm xxhash64 (seed 0)', () => {
  const inputs: Array<[string, Uint8Array]> = [
    ['users', encodeValues([1n])],
    ['users', encodeValues(['alice'])],
    ['orders', encodeValues([42n, 'x'])],
    ['', new Uint8Array()],
    ['tàblé', encodeValues([Buffer.from([0, 1, 2, 0])])],
  ];
  for (const [table, key] of inputs) {
    test(`xxhash64(utf8(${JSON.stringify(table)}) ‖ 0x00 ‖ key) = router.hash`, async () => {
      const bytes = Buffer.concat([Buffer.from(table, 'utf8'), Buffer.from([0]), key]);
      const expected = await xxhash64(new Uint8Array(bytes), 0);
      assert.equal(hex(router.hash(table, key)), expected);
    });
  }
});

describe('jumpHash', () => {
  test('published vectors (ClickHouse jumpConsistentHash, Rust jump-consistent-hash crate)', () => {
    const published: Array<[bigint, number, number]> = [
      [1n, 1, 0],
      [42n, 57, 43],
      [256n, 1024, 520],
      [3735883980n, 1, 0],
      [3735883980n, 666, 361],
      [16045690984833335023n, 255, 237],
      [0n, 60, 0],
      [1n, 60, 55],
      [2n, 60, 46],
    ];
    for (const [key, buckets, expected] of published) {
      assert.equal(jumpHash(key, buckets), expected, `jumpHash(${key}, ${buckets})`);
    }
  });

  test('fixed 64-bit keys into 1, 2, 16 and 1000 buckets', () => {
    const vectors: Array<[bigint, [number, number, number, number]]> = [
      [0n, [0, 0, 0, 0]],
      [1n, [0, 0, 6, 549]],
      [0xdeadbeefn, [0, 1, 5, 285]],
      [0xffffffffffffffffn, [0, 1, 10, 313]],
      [0x0123456789abcdefn, [0, 0, 13, 194]],
    ];
    for (const [key, expected] of vectors) {
      assert.deepEqual([1, 2, 16, 1000].map((b) => jumpHash(key, b)), expected, `key 0x${key.toString(16)}`);
    }
  });

  test('keys are taken modulo 2^64 (a negative bigint is its two\'s complement)', () => {
    assert.equal(jumpHash(-1n, 16), jumpHash(0xffffffffffffffffn, 16));
    assert.equal(jumpHash((1n << 64n) + 1n, 1000), jumpHash(1n, 1000));
  });

  test('the 32-bit implementation equals the BigInt reference on 20,000 pseudo-random keys', () => {
    const ref = (key: bigint, buckets: number): number => {
      let k = key & ((1n << 64n) - 1n);
      let b = -1;
      let j = 0;
      while (j < buckets) {
        b = j;
        k = (k * 2862933555777941757n + 1n) & ((1n << 64n) - 1n);
        j = Math.floor((b + 1) * (2 ** 31 / (Number(k >> 33n) + 1)));
      }
      return b;
    };
    let x = 0x9e3779b97f4a7c15n;
    for (let i = 0; i < 20_000; i++) {
      x = (x * 6364136223846793005n + 1442695040888963407n) & ((1n << 64n) - 1n);
      const buckets = [1, 2, 16, 17, 1000, 65_536][i % 6]!;
      assert.equal(jumpHash(x, buckets), ref(x, buckets), `key 0x${x.toString(16)}, ${buckets} buckets`);
    }
    // shardOf (hi/lo path) agrees with jumpHash(hash()) (BigInt path).
    for (let i = 0; i < 2000; i++) {
      const key = encodeValues([BigInt(i), `k${i}`]);
      assert.equal(router.shardOf('tbl', key), jumpHash(router.hash('tbl', key), router.shards));
    }
  });

  test('rejects zero buckets', () => {
    assert.throws(() => jumpHash(1n, 0), /buckets must be >= 1/);
  });

  test('result always lies in [0, buckets)', () => {
    for (const buckets of [1, 2, 3, 7, 16, 17, 100, 1000, 65_536]) {
      for (let i = 0; i < 300; i++) {
        const key = router.hash('range', encodeValues([BigInt(i)]));
        const b = jumpHash(key, buckets);
        assert.ok(Number.isInteger(b) && b >= 0 && b < buckets, `jumpHash(${key}, ${buckets}) = ${b}`);
      }
    }
  });
});

describe('distribution and consistency', () => {
  const N = 10_000;
  const hashes = (): bigint[] => Array.from({ length: N }, (_, i) => router.hash('users', encodeValues([BigInt(i)])));

  test('10,000 integer keys spread over 16 shards: every shard gets 400..850 keys', () => {
    const counts = new Array<number>(16).fill(0);
    for (let i = 0; i < N; i++) {
      const s = router.shardOf('users', encodeValues([BigInt(i)]));
      counts[s] = (counts[s] ?? 0) + 1;
    }
    for (const [shard, count] of counts.entries()) {
      assert.ok(count >= 400 && count <= 850, `shard ${shard} got ${count} keys: ${counts.join(',')}`);
    }
  });

  test('growing 16 → 17 buckets moves about 1/17 of keys, and only into the new bucket', () => {
    let moved = 0;
    for (const h of hashes()) {
      const before16 = jumpHash(h, 16);
      const after17 = jumpHash(h, 17);
      if (before16 !== after17) {
        moved++;
        assert.equal(after17, 16, `a moved key must land in the new bucket 16, went ${before16} → ${after17}`);
      }
    }
    const fraction = moved / N;
    assert.ok(fraction >= 0.03 && fraction <= 0.10, `moved fraction ${fraction}`);
  });
});

describe('JetStream names', () => {
  test('streamName', () => {
    assert.equal(streamName('demo', 0), 'burrow_demo_0');
    assert.equal(streamName('my-cluster_1', 15), 'burrow_my-cluster_1_15');
  });
  test('shardOfStream reads streamName back; other names give -1', () => {
    assert.equal(shardOfStream('my-cluster_1', streamName('my-cluster_1', 15)), 15);
    assert.equal(shardOfStream('demo', streamName('demo', 0)), 0);
    assert.equal(shardOfStream('demo', streamName('other', 3)), -1);
    assert.equal(shardOfStream('demo', 'burrow_demo_x'), -1);
    assert.equal(shardOfStream('demo', 'burrow_demo_'), -1);
    assert.equal(shardOfStream('demo', undefined), -1);
  });
  test('subjects name their publisher last; publisherOfSubject reads it back (legacy subjects name none)', () => {
    assert.equal(shardSubject('demo', 0, 'n1'), 'burrow.demo.s.0.n1');
    assert.equal(shardSubject('my-cluster_1', 15, 'node-7'), 'burrow.my-cluster_1.s.15.node-7');
    assert.deepEqual(shardStreamSubjects('demo', 3), ['burrow.demo.s.3.*']);
    assert.deepEqual(schemaStreamSubjects('demo'), ['burrow.demo.schema.*']);
    assert.equal(publisherOfSubject('demo', shardSubject('demo', 3, 'n2')), 'n2');
    assert.equal(publisherOfSubject('demo', schemaSubject('demo', 'n3')), 'n3');
    assert.equal(publisherOfSubject('demo', heartbeatSubject('demo', 'n1')), 'n1');
    for (const s of [...legacyStreamSubjects('demo', 3), ...legacyStreamSubjects('demo', 'schema'), 'burrow.other.s.3.n2', 'burrow.demo.s.x.n2', 'burrow.demo.replay.n1']) {
      assert.equal(publisherOfSubject('demo', s), undefined, s);
    }
  });
});
