import { isUtf8 } from 'node:buffer';
import { assert } from '../util/assert.ts';

/**
 * Canonical, lossless encoding of SQLite values — used for primary keys (shard routing, the
 * per-row clock table) and for row images on the wire. Deterministic across nodes and versions:
 *
 *   NULL    0x00
 *   INTEGER 0x01 + 8 bytes big-endian two's complement      (JS: bigint)
 *   REAL    0x02 + 8 bytes big-endian IEEE-754 binary64     (JS: number; keeps -0.0)
 *   TEXT    0x03 + u32 BE byte length + the stored bytes    (JS: string, or TextBytes when not valid UTF-8)
 *   BLOB    0x04 + u32 BE byte length + bytes               (JS: Buffer/Uint8Array)
 *
 * Values are concatenated without a count; the reader knows how many to expect (or reads to end).
 * better-sqlite3 with safe integers returns exactly these JS types, and binds them back to the
 * same storage classes (bigint → INTEGER, number → REAL). SQLite stores any bytes as TEXT;
 * better-sqlite3 would hand back invalid UTF-8 with U+FFFD replacements, so such values are read
 * as their bytes (sqlite/exact.ts) and carried as TextBytes, bound back with CAST(? AS TEXT).
 */
export type SqlValue = null | bigint | number | string | Uint8Array | TextBytes;

/** A TEXT value whose stored bytes are not valid UTF-8 (a JS string cannot hold them exactly). */
export class TextBytes {
  constructor(readonly bytes: Buffer) {}
}

/** Stored TEXT bytes as a value: a string when they are valid UTF-8 (exact round trip), else TextBytes. */
export function textFromBytes(bytes: Buffer): string | TextBytes {
  return isUtf8(bytes) ? bytes.toString('utf8') : new TextBytes(Buffer.from(bytes));
}

const T_NULL = 0, T_INT = 1, T_REAL = 2, T_TEXT = 3, T_BLOB = 4;

export class ValueWriter {
  private buf: Buffer;
  private pos = 0;

  constructor(initialBytes = 256) {
    this.buf = Buffer.allocUnsafe(initialBytes);
  }

  private ensure(n: number): void {
    if (this.pos + n <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < this.pos + n) size *= 2;
    const next = Buffer.allocUnsafe(size);
    this.buf.copy(next, 0, 0, this.pos);
    this.buf = next;
  }

  reset(): this {
    this.pos = 0;
    return this;
  }

  write(v: SqlValue): this {
    if (v === null || v === undefined) {
      this.ensure(1);
      this.buf[this.pos++] = T_NULL;
    } else if (typeof v === 'bigint') {
      this.ensure(9);
      this.buf[this.pos++] = T_INT;
      this.buf.writeBigInt64BE(BigInt.asIntN(64, v), this.pos);
      assert(BigInt.asIntN(64, v) === v, `integer out of 64-bit range: ${v}`);
      this.pos += 8;
    } else if (typeof v === 'number') {
      this.ensure(9);
      this.buf[this.pos++] = T_REAL;
      this.buf.writeDoubleBE(v, this.pos);
      this.pos += 8;
    } else if (typeof v === 'string') {
      const len = Buffer.byteLength(v, 'utf8');
      this.ensure(5 + len);
      this.buf[this.pos++] = T_TEXT;
      this.buf.writeUInt32BE(len, this.pos);
      this.pos += 4;
      this.pos += this.buf.write(v, this.pos, len, 'utf8');
    } else if (v instanceof TextBytes) {
      this.ensure(5 + v.bytes.length);
      this.buf[this.pos++] = T_TEXT;
      this.buf.writeUInt32BE(v.bytes.length, this.pos);
      this.pos += 4;
      this.buf.set(v.bytes, this.pos);
      this.pos += v.bytes.length;
    } else if (v instanceof Uint8Array) {
      this.ensure(5 + v.length);
      this.buf[this.pos++] = T_BLOB;
      this.buf.writeUInt32BE(v.length, this.pos);
      this.pos += 4;
      this.buf.set(v, this.pos);
      this.pos += v.length;
    } else {
      throw new TypeError(`cannot encode value of type ${typeof v}`);
    }
    return this;
  }

  writeAll(values: readonly SqlValue[]): this {
    for (const v of values) this.write(v);
    return this;
  }

  /** A copy of the bytes written so far. */
  bytes(): Buffer {
    return Buffer.from(this.buf.subarray(0, this.pos));
  }
}

const shared = new ValueWriter(1024);

export function encodeValues(values: readonly SqlValue[]): Buffer {
  return shared.reset().writeAll(values).bytes();
}

/** Decode every value in `buf`. Throws RangeError/TypeError on malformed input. */
export function decodeValues(buf: Uint8Array): SqlValue[] {
  const b = Buffer.isBuffer(buf) ? buf : Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength);
  const out: SqlValue[] = [];
  let pos = 0;
  while (pos < b.length) {
    const tag = b[pos++];
    switch (tag) {
      case T_NULL:
        out.push(null);
        break;
      case T_INT:
        out.push(b.readBigInt64BE(pos));
        pos += 8;
        break;
      case T_REAL:
        out.push(b.readDoubleBE(pos));
        pos += 8;
        break;
      case T_TEXT: {
        const len = b.readUInt32BE(pos);
        pos += 4;
        if (pos + len > b.length) throw new RangeError('truncated TEXT value');
        out.push(textFromBytes(b.subarray(pos, pos + len)));
        pos += len;
        break;
      }
      case T_BLOB: {
        const len = b.readUInt32BE(pos);
        pos += 4;
        if (pos + len > b.length) throw new RangeError('truncated BLOB value');
        out.push(Buffer.from(b.subarray(pos, pos + len)));
        pos += len;
        break;
      }
      default:
        throw new TypeError(`unknown value tag ${tag} at byte ${pos - 1}`);
    }
  }
  return out;
}
