import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { pack } from 'msgpackr';
import {
  encodeBatch, decodeBatch, batchVersion, batchMsgId, originOfMsgId, firstHlcOfMsgId, MalformedBatchError, type WireBatch, type WireChange,
} from '../../src/codec/batch-codec.ts';
import { encodeValues } from '../../src/codec/value-codec.ts';
import { seededRandom } from '../../src/util/random.ts';

const HLC = (1763700000000n << 16n) | 65535n;

function validBatch(): WireBatch {
  return {
    v: batchVersion,
    o: 'n1',
    s: 3,
    tables: [
      { n: 'users', k: ['id'], c: ['id', 'name', 'score'] },
      { n: 'orders', k: ['user_id', 'n'], c: ['user_id', 'n', 'total'] },
    ],
    changes: [
      { t: 0, h: HLC, d: 0, k: encodeValues([1n]), r: encodeValues([1n, 'alice', 0.5]) },
      { t: 1, h: HLC + 1n, d: 0, k: encodeValues([1n, 2n]), r: encodeValues([1n, 2n, Buffer.from([0, 1])]) },
      { t: 0, h: HLC + 2n, d: 1, k: encodeValues([7n]) },
    ],
  };
}

/** A valid batch with one field replaced (or removed when the value is undefined). */
function withTop(patch: Record<string, unknown>): Uint8Array {
  const b: Record<string, unknown> = { ...validBatch() };
  for (const [k, v] of Object.entries(patch)) {
    if (v === undefined) delete b[k];
    else b[k] = v;
  }
  return encodeBatch(b as unknown as WireBatch);
}

/** A valid batch whose change `index` is patched (a field is removed when the value is undefined). */
function withChange(index: number, patch: Record<string, unknown>): Uint8Array {
  const b = validBatch();
  const changes = b.changes.map((c) => ({ ...c }) as Record<string, unknown>);
  for (const [k, v] of Object.entries(patch)) {
    if (v === undefined) delete changes[index]![k];
    else changes[index]![k] = v;
  }
  return encodeBatch({ ...b, changes: changes as unknown as WireChange[] });
}

function rejects(data: Uint8Array, message: RegExp): void {
  assert.throws(() => decodeBatch(data), (err: unknown) => {
    assert.ok(err instanceof MalformedBatchError, `expected MalformedBatchError, got ${String(err)}`);
    assert.equal(err.name, 'MalformedBatchError');
    assert.match(err.message, message);
    return true;
  });
}

describe('round trip', () => {
  test('encodeBatch → decodeBatch returns the same batch', () => {
    const b = validBatch();
    const out = decodeBatch(encodeBatch(b));
    assert.equal(out.v, 1);
    assert.equal(out.o, 'n1');
    assert.equal(out.s, 3);
    assert.deepEqual(out.tables, b.tables);
    assert.equal(out.changes.length, 3);
    for (const [i, c] of b.changes.entries()) {
      const o = out.changes[i]!;
      assert.equal(o.t, c.t);
      assert.equal(o.d, c.d);
      assert.ok(Buffer.from(o.k).equals(Buffer.from(c.k)), `key of change ${i}`);
      if (c.r) assert.ok(o.r && Buffer.from(o.r).equals(Buffer.from(c.r)), `row of change ${i}`);
      else assert.equal(o.r, undefined);
    }
  });

  test('the hlc survives exactly as a bigint', () => {
    const out = decodeBatch(encodeBatch(validBatch()));
    const h = out.changes[0]!.h;
    assert.equal(typeof h, 'bigint');
    assert.equal(h, (1763700000000n << 16n) | 65535n);
    assert.equal(h, 115585843200065535n);
    assert.equal(out.changes[1]!.h, HLC + 1n); // beyond 2^53: a float would lose the +1
  });

  test('hlc extremes 0 and int64 max survive', () => {
    for (const h of [0n, 1n, 2n ** 63n - 1n]) {
      const out = decodeBatch(withChange(0, { h }));
      assert.equal(out.changes[0]!.h, h);
    }
  });

  test('a batch with no changes is valid', () => {
    const out = decodeBatch(encodeBatch({ ...validBatch(), tables: [], changes: [] }));
    assert.deepEqual(out.changes, []);
  });

  test('encoding is deterministic', () => {
    assert.ok(encodeBatch(validBatch()).equals(encodeBatch(validBatch())));
  });
});


describe('decodeBatch rejects malformed input with MalformedBatchError', () => {
  test('random garbage bytes', () => {
    const rand = seededRandom(1234);
    for (let i = 0; i < 500; i++) {
      const bytes = Buffer.alloc(1 + Math.floor(rand() * 200));
      for (let j = 0; j < bytes.length; j++) bytes[j] = Math.floor(rand() * 256);
      rejects(bytes, /not msgpack|not a batch object|unsupported batch version|missing|malformed/);
    }
  });

  test('empty input and trailing bytes are not msgpack', () => {
    rejects(new Uint8Array(), /^not msgpack: /);
    rejects(Buffer.concat([encodeBatch(validBatch()), Buffer.from([1, 2, 3])]), /^not msgpack: /);
  });

  test('msgpack values that are not a batch object', () => {
    rejects(pack('hello'), /not a batch object/);
    rejects(pack(42), /not a batch object/);
    rejects(pack(null), /not a batch object/);
  });

  test('wrong or missing version', () => {
    rejects(withTop({ v: 2 }), /unsupported batch version 2 \(this node speaks 1\)/);
    rejects(withTop({ v: 0 }), /unsupported batch version 0/);
    rejects(withTop({ v: '1' }), /unsupported batch version 1/);
    rejects(withTop({ v: undefined }), /unsupported batch version undefined/);
    rejects(pack([1, 'n1']), /unsupported batch version/);
  });

  test('missing or empty origin', () => {
    rejects(withTop({ o: undefined }), /missing origin node id/);
    rejects(withTop({ o: '' }), /missing origin node id/);
    rejects(withTop({ o: 7 }), /missing origin node id/);
  });

  test('bad shard', () => {
    rejects(withTop({ s: undefined }), /missing shard/);
    rejects(withTop({ s: -1 }), /missing shard/);
    rejects(withTop({ s: 1.5 }), /missing shard/);
    rejects(withTop({ s: '3' }), /missing shard/);
  });

  test('missing tables / changes lists', () => {
    rejects(withTop({ tables: undefined }), /missing tables/);
    rejects(withTop({ tables: { n: 'users' } }), /missing tables/);
    rejects(withTop({ changes: undefined }), /missing changes/);
    rejects(withTop({ changes: 'x' }), /missing changes/);
  });

  test('malformed table entries name their index', () => {
    const good = validBatch().tables[0]!;
    rejects(withTop({ tables: [good, { ...good, k: [] }] }), /tables\[1\] is malformed/);
    rejects(withTop({ tables: [{ ...good, n: '' }] }), /tables\[0\] is malformed/);
    rejects(withTop({ tables: [{ ...good, c: ['id', 5] }] }), /tables\[0\] is malformed/);
    rejects(withTop({ tables: [{ ...good, k: 'id' }] }), /tables\[0\] is malformed/);
    rejects(withTop({ tables: [null] }), /tables\[0\] is malformed/);
  });

  test('table index out of range', () => {
    rejects(withChange(1, { t: 2 }), /changes\[1\] is malformed/);
    rejects(withChange(0, { t: -1 }), /changes\[0\] is malformed/);
    rejects(withChange(0, { t: undefined }), /changes\[0\] is malformed/);
  });

  test('negative or non-bigint hlc', () => {
    rejects(withChange(0, { h: -1n }), /changes\[0\] is malformed/);
    rejects(withChange(2, { h: -(2n ** 63n) }), /changes\[2\] is malformed/);
    rejects(withChange(0, { h: 5 }), /changes\[0\] is malformed/);
    rejects(withChange(0, { h: undefined }), /changes\[0\] is malformed/);
  });

  test('bad delete flag', () => {
    rejects(withChange(0, { d: 2 }), /changes\[0\] is malformed/);
    rejects(withChange(0, { d: true }), /changes\[0\] is malformed/);
  });

  test('upsert without a row image', () => {
    rejects(withChange(1, { r: undefined }), /changes\[1\] is malformed/);
    rejects(withChange(0, { r: 'alice' }), /changes\[0\] is malformed/);
  });

  test('a delete needs no row image', () => {
    const out = decodeBatch(withChange(2, { r: undefined }));
    assert.equal(out.changes[2]!.d, 1);
  });

  test('non-bytes key', () => {
    rejects(withChange(0, { k: 'abc' }), /changes\[0\] is malformed/);
    rejects(withChange(2, { k: [1, 2] }), /changes\[2\] is malformed/);
    rejects(withChange(0, { k: undefined }), /changes\[0\] is malformed/);
  });

  test('a change that is not an object', () => {
    const b = validBatch();
    rejects(encodeBatch({ ...b, changes: [b.changes[0]!, null as unknown as WireChange] }), /changes\[1\] is malformed/);
  });
});

// Regressions: a non-integer table index once passed validation and failed the whole apply
// transaction (blocking its group); an hlc above int64 max would have been held for ever.
describe('table index and hlc range', () => {
  test('a non-integer table index (NaN, 0.5) is rejected', () => {
    rejects(withChange(0, { t: Number.NaN }), /changes\[0\] is malformed/);
    rejects(withChange(0, { t: 0.5 }), /changes\[0\] is malformed/);
  });

  test('an hlc above int64 max (uint64 on the wire) is rejected', () => {
    rejects(withChange(0, { h: 2n ** 64n - 1n }), /changes\[0\] is malformed/);
  });
});

describe('msgID', () => {
  test('names cluster, origin and first hlc, then a digest of the bytes (unpredictable); origin and hlc are read back', () => {
    const a = batchMsgId('prod', 'n1', 123n, new Uint8Array([1, 2, 3]));
    assert.match(a, /^prod\.n1\.123\.[0-9a-f]{16}$/);
    assert.notEqual(batchMsgId('prod', 'n1', 123n, new Uint8Array([1, 2, 4])), a, 'other bytes, other msgID');
    assert.equal(batchMsgId('prod', 'n1', 123n, new Uint8Array([1, 2, 3])), a, 'the same bytes, the same msgID (retries deduplicate)');
    assert.equal(originOfMsgId(batchMsgId('prod', 'n-2_x', 9223372036854775807n, new Uint8Array())), 'n-2_x');
    assert.equal(firstHlcOfMsgId(batchMsgId('prod', 'n-2_x', 9223372036854775807n, new Uint8Array())), 9223372036854775807n);
    assert.equal(originOfMsgId('prod.n3.77'), 'n3', 'a msgID from before the digest');
  });
  test('no origin from a missing or foreign msgID', () => {
    assert.equal(originOfMsgId(undefined), undefined);
    assert.equal(originOfMsgId(''), undefined);
    assert.equal(originOfMsgId('abc'), undefined);
    assert.equal(originOfMsgId('a.b'), undefined);
  });
});
