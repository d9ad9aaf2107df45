import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { encodeValues, decodeValues, ValueWriter, type SqlValue } from '../../src/codec/value-codec.ts';

function roundTrip(v: SqlValue): SqlValue {
  const out = decodeValues(encodeValues([v]));
  assert.equal(out.length, 1);
  return out[0]!;
}

describe('round trip', () => {
  test('null', () => {
    assert.equal(roundTrip(null), null);
  });

  test('bigints stay exact bigints', () => {
    for (const v of [0n, 1n, -1n, 2n ** 63n - 1n, -(2n ** 63n), 9007199254740993n, -9007199254740993n]) {
      const out = roundTrip(v);
      assert.equal(typeof out, 'bigint', `${v}`);
      assert.equal(out, v);
    }
  });

  test('numbers stay numbers, bit-exact (including -0)', () => {
    const values = [0, -0, 1, -1, 0.1, Infinity, -Infinity, 5e-324, -5e-324, 1.7976931348623157e308, Number.MAX_SAFE_INTEGER, 2 ** 53 + 2];
    for (const v of values) {
      const out = roundTrip(v);
      assert.equal(typeof out, 'number', `${v}`);
      assert.ok(Object.is(out, v), `${Object.is(v, -0) ? '-0' : v} came back as ${Object.is(out, -0) ? '-0' : out}`);
    }
  });

  test('-0 and 0 encode differently', () => {
    assert.notDeepEqual(encodeValues([-0]), encodeValues([0]));
    assert.ok(Object.is(roundTrip(-0), -0));
    assert.ok(Object.is(roundTrip(0), 0));
  });

  test('integral number and bigint of the same value keep their storage class', () => {
    const [n, b] = decodeValues(encodeValues([1, 1n]));
    assert.equal(typeof n, 'number');
    assert.equal(typeof b, 'bigint');
  });

  test('strings, byte-exact (no normalization, NULs kept)', () => {
    const values = [
      '',
      'hello, world',
      '🦫',
      'e\u0301', // decomposed é: must not be normalized to U+00E9
      '\u00e9',
      'a\u0000b\u0000',
      '𝄞 𠜎 😀', // 4-byte UTF-8 characters
      'x'.repeat(5000),
    ];
    for (const v of values) {
      const out = roundTrip(v);
      assert.equal(typeof out, 'string');
      assert.equal(out, v);
    }
    assert.equal((roundTrip('e\u0301') as string).length, 2);
  });

  test('Buffers come back as Buffers with identical bytes', () => {
    const values = [Buffer.alloc(0), Buffer.from([0, 0, 1, 0, 255]), randomBytes(70_000)];
    for (const v of values) {
      const out = roundTrip(v);
      assert.ok(Buffer.isBuffer(out), 'decoded BLOB must be a Buffer');
      assert.equal(out.length, v.length);
      assert.ok(out.equals(v));
    }
  });

  test('a plain Uint8Array encodes like a Buffer', () => {
    const u = new Uint8Array([1, 2, 3]);
    assert.deepEqual(encodeValues([u]), encodeValues([Buffer.from(u)]));
    const out = roundTrip(u);
    assert.ok(Buffer.isBuffer(out));
    assert.deepEqual([...(out as Buffer)], [1, 2, 3]);
  });

  test('a mixed list keeps order, count and types', () => {
    const blob = randomBytes(300);
    const values: SqlValue[] = [null, 42n, -0, 'héllo', blob, '', null, -(2n ** 63n), 0.5, Buffer.alloc(0)];
    const out = decodeValues(encodeValues(values));
    assert.equal(out.length, values.length);
    for (const [i, v] of values.entries()) {
      const o = out[i];
      if (v instanceof Uint8Array) {
        assert.ok(Buffer.isBuffer(o) && o.equals(v), `index ${i}`);
      } else {
        assert.equal(typeof o, typeof v, `type at index ${i}`);
        assert.ok(Object.is(o, v), `value at index ${i}`);
      }
    }
  });

  test('decodes from a Uint8Array view with a non-zero byteOffset', () => {
    const enc = encodeValues([7n, 'seven']);
    const backing = new Uint8Array(enc.length + 10);
    backing.set(enc, 5);
    const view = new Uint8Array(backing.buffer, 5, enc.length);
    assert.deepEqual(decodeValues(view), [7n, 'seven']);
  });

  test('empty input decodes to no values', () => {
    assert.deepEqual(decodeValues(new Uint8Array()), []);
    assert.equal(encodeValues([]).length, 0);
  });
});

describe('canonical encoding', () => {
  test('fixed bytes for [null, 1n, "a"]', () => {
    assert.equal(encodeValues([null, 1n, 'a']).toString('hex'), '00010000000000000001030000000161');
  });

  test('fixed bytes per storage class', () => {
    const cases: Array<[SqlValue, string]> = [
      [null, '00'],
      [-1n, '01ffffffffffffffff'],
      [2n ** 63n - 1n, '017fffffffffffffff'],
      [-(2n ** 63n), '018000000000000000'],
      [1, '023ff0000000000000'],
      [-0, '028000000000000000'],
      ['é', '0300000002c3a9'],
      ['', '0300000000'],
      [Buffer.from([1, 2]), '04000000020102'],
      [Buffer.alloc(0), '0400000000'],
    ];
    for (const [v, hex] of cases) assert.equal(encodeValues([v]).toString('hex'), hex, String(v));
  });

  test('deterministic: same input → identical bytes, from either writer', () => {
    const values: SqlValue[] = [null, 1n, 'a', 0.25, Buffer.from('zz'), '🦫'];
    const a = encodeValues(values);
    const b = encodeValues(values);
    const c = new ValueWriter(1).writeAll(values).bytes();
    assert.ok(a.equals(b));
    assert.ok(a.equals(c));
  });

  test('returned bytes are a copy: a later encode does not change an earlier result', () => {
    const first = encodeValues(['first']);
    const snapshot = Buffer.from(first);
    encodeValues(['second!', 99n]);
    assert.ok(first.equals(snapshot));
    assert.deepEqual(decodeValues(first), ['first']);
  });

  test('ValueWriter.reset starts over', () => {
    const w = new ValueWriter(4);
    w.write('abc').write(1n);
    assert.equal(w.reset().write(null).bytes().toString('hex'), '00');
  });
});

describe('errors', () => {
  test('unknown tag throws, naming the tag and offset', () => {
    assert.throws(() => decodeValues(Buffer.from([0x05])), { name: 'TypeError', message: /unknown value tag 5 at byte 0/ });
    assert.throws(() => decodeValues(Buffer.from([0x00, 0xff])), /unknown value tag 255 at byte 1/);
  });

  test('truncated TEXT throws', () => {
    // Declares 10 bytes, carries 3.
    assert.throws(() => decodeValues(Buffer.from('030000000a616263', 'hex')), { name: 'RangeError', message: /truncated TEXT value/ });
    // Chop the last byte off a valid encoding.
    const enc = encodeValues(['hello']);
    assert.throws(() => decodeValues(enc.subarray(0, enc.length - 1)), /truncated TEXT value/);
  });

  test('truncated BLOB throws', () => {
    const enc = encodeValues([Buffer.from([1, 2, 3, 4])]);
    assert.throws(() => decodeValues(enc.subarray(0, enc.length - 1)), { name: 'RangeError', message: /truncated BLOB value/ });
  });

  test('truncated length header or fixed-size value throws RangeError', () => {
    assert.throws(() => decodeValues(Buffer.from('030000', 'hex')), RangeError);
    assert.throws(() => decodeValues(Buffer.from('04', 'hex')), RangeError);
    assert.throws(() => decodeValues(encodeValues([1n]).subarray(0, 8)), RangeError);
    assert.throws(() => decodeValues(encodeValues([1.5]).subarray(0, 5)), RangeError);
  });

  test('a bigint outside int64 throws', () => {
    assert.throws(() => encodeValues([2n ** 63n]), /integer out of 64-bit range/);
    assert.throws(() => encodeValues([-(2n ** 63n) - 1n]), /integer out of 64-bit range/);
    assert.throws(() => encodeValues([2n ** 64n]), /integer out of 64-bit range/);
    // The shared writer is still usable afterwards.
    assert.equal(encodeValues([null, 1n, 'a']).toString('hex'), '00010000000000000001030000000161');
  });

  test('unsupported JS types throw TypeError', () => {
    assert.throws(() => encodeValues([true as unknown as SqlValue]), { name: 'TypeError', message: /cannot encode value of type boolean/ });
    assert.throws(() => encodeValues([{} as unknown as SqlValue]), /cannot encode value of type object/);
  });
});
