import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { SimulatedClock } from '../../src/clock/clock.ts';
import { Hlc, hlcCounter, hlcMs, hlcPack, hlcFormat } from '../../src/clock/hlc.ts';

const T0 = 1_763_700_000_000; // 2025-11-21, a realistic wall-clock ms value
const SKEW = 60_000;

function setup(startMs = T0): { clock: SimulatedClock; hlc: Hlc } {
  const clock = new SimulatedClock(startMs);
  return { clock, hlc: new Hlc(clock, SKEW) };
}

describe('hlcPack / hlcMs / hlcCounter', () => {
  test('round-trips (ms, counter) including the extremes', () => {
    const cases: Array<[number, number]> = [
      [0, 0], [0, 1], [1, 0], [T0, 0], [T0, 1], [T0, 0xffff], [2 ** 47 - 1, 0xffff], [2 ** 47 - 1, 0],
    ];
    for (const [ms, counter] of cases) {
      const ts = hlcPack(ms, counter);
      assert.equal(hlcMs(ts), ms, `ms of (${ms}, ${counter})`);
      assert.equal(hlcCounter(ts), counter, `counter of (${ms}, ${counter})`);
    }
  });

  test('layout: physical ms in the high bits, 16-bit counter in the low bits', () => {
    assert.equal(hlcPack(1, 0), 65536n);
    assert.equal(hlcPack(0, 7), 7n);
    assert.equal(hlcPack(T0, 0xffff), (BigInt(T0) << 16n) | 0xffffn);
    assert.equal(hlcPack(2 ** 47 - 1, 0xffff), 2n ** 63n - 1n); // the largest int64
  });

  test('rejects out-of-range components', () => {
    assert.throws(() => hlcPack(-1, 0), /physical ms out of range/);
    assert.throws(() => hlcPack(2 ** 47, 0), /physical ms out of range/);
    assert.throws(() => hlcPack(1.5, 0), /physical ms out of range/);
    assert.throws(() => hlcPack(T0, 0x10000), /counter out of range/);
    assert.throws(() => hlcPack(T0, -1), /counter out of range/);
  });

  test('ordering of packed values equals lexicographic (ms, counter) order', () => {
    const pairs: Array<[number, number]> = [];
    for (const ms of [0, 1, 2, T0 - 1, T0, T0 + 1, 2 ** 47 - 1]) {
      for (const counter of [0, 1, 2, 0x7fff, 0x8000, 0xfffe, 0xffff]) pairs.push([ms, counter]);
    }
    for (const a of pairs) {
      for (const b of pairs) {
        const lex = a[0] !== b[0] ? Math.sign(a[0] - b[0]) : Math.sign(a[1] - b[1]);
        const pa = hlcPack(a[0], a[1]);
        const pb = hlcPack(b[0], b[1]);
        const packed = pa < pb ? -1 : pa > pb ? 1 : 0;
        assert.equal(packed, lex, `(${a}) vs (${b})`);
      }
    }
  });

  test('hlcFormat shows ISO time and counter', () => {
    assert.equal(hlcFormat(hlcPack(T0, 42)), `${new Date(T0).toISOString()}+42`);
  });
});

describe('Hlc.now', () => {
  test('first timestamp is the physical time with counter 0', () => {
    const { hlc } = setup();
    const t = hlc.now();
    assert.equal(hlcMs(t), T0);
    assert.equal(hlcCounter(t), 0);
    assert.equal(hlc.peek(), t);
  });

  test('physical time standing still: the counter increments, strictly monotonic', () => {
    const { hlc } = setup();
    let prev = hlc.now();
    for (let i = 1; i <= 1000; i++) {
      const t = hlc.now();
      assert.ok(t > prev, `call ${i}: ${t} must exceed ${prev}`);
      assert.equal(hlcMs(t), T0);
      assert.equal(hlcCounter(t), i);
      prev = t;
    }
  });

  test('counter exhaustion within one ms still yields strictly increasing timestamps', () => {
    const { hlc } = setup();
    let prev = hlc.now();
    for (let i = 0; i < 70_000; i++) {
      const t = hlc.now();
      assert.ok(t > prev);
      prev = t;
    }
    // 70,001 timestamps in one physical ms: the counter carried into the ms part.
    assert.equal(prev, hlcPack(T0, 0) + 70_000n);
    assert.equal(hlcMs(prev), T0 + 1);
  });

  test('physical ms advancing resets the counter to 0', () => {
    const { clock, hlc } = setup();
    hlc.now();
    hlc.now();
    assert.equal(hlcCounter(hlc.now()), 2);
    clock.advance(1);
    const t = hlc.now();
    assert.equal(hlcMs(t), T0 + 1);
    assert.equal(hlcCounter(t), 0);
    clock.advance(250);
    assert.equal(hlc.now(), hlcPack(T0 + 251, 0));
  });

  test('clock stepping backwards: still strictly monotonic, ms held at the high-water mark', () => {
    const { clock, hlc } = setup();
    const before = hlc.now();
    clock.set(T0 - 5_000);
    let prev = before;
    for (let i = 1; i <= 10; i++) {
      const t = hlc.now();
      assert.ok(t > prev);
      assert.equal(hlcMs(t), T0, 'the physical part never goes back');
      assert.equal(hlcCounter(t), i);
      prev = t;
    }
    // Once physical time passes the high-water mark again, the counter resets.
    clock.set(T0 + 1);
    assert.equal(hlc.now(), hlcPack(T0 + 1, 0));
  });

  test('fractional clock readings are floored', () => {
    const { hlc } = setup(T0 + 0.9);
    assert.equal(hlc.now(), hlcPack(T0, 0));
  });

  test('constructor rejects a non-positive skew bound', () => {
    assert.throws(() => new Hlc(new SimulatedClock(T0), 0), /skewMsMax must be positive/);
  });
});

describe('Hlc.receive', () => {
  test('a remote timestamp ahead (within skew) makes the next now() greater than it', () => {
    const { hlc } = setup();
    hlc.now();
    const remote = hlcPack(T0 + 10_000, 7);
    assert.deepEqual(hlc.receive(remote), { ok: true });
    assert.equal(hlc.peek(), remote);
    const t = hlc.now();
    assert.ok(t > remote);
    assert.equal(t, remote + 1n);
  });

  test('a remote timestamp exactly skewMsMax ahead is accepted', () => {
    const { hlc } = setup();
    const remote = hlcPack(T0 + SKEW, 0);
    assert.deepEqual(hlc.receive(remote), { ok: true });
    assert.ok(hlc.now() > remote);
  });

  test('a remote timestamp further ahead than skewMsMax is refused and does not move the clock', () => {
    const { hlc } = setup();
    const local = hlc.now();
    const remote = hlcPack(T0 + SKEW + 1, 0);
    assert.deepEqual(hlc.receive(remote), { ok: false, aheadMs: SKEW + 1 });
    assert.equal(hlc.peek(), local, 'refused timestamp must not be adopted');
    const next = hlc.now();
    assert.equal(next, local + 1n);
    assert.ok(next < remote);
  });

  test('aheadMs reports how far ahead the remote is', () => {
    const { hlc } = setup();
    const r = hlc.receive(hlcPack(T0 + 3_600_000, 5));
    assert.deepEqual(r, { ok: false, aheadMs: 3_600_000 });
  });

  test('a remote timestamp behind ours leaves the clock alone', () => {
    const { hlc } = setup();
    hlc.now();
    const local = hlc.now();
    assert.deepEqual(hlc.receive(hlcPack(T0 - 1_000, 99)), { ok: true });
    assert.equal(hlc.peek(), local);
    assert.equal(hlc.now(), local + 1n);
  });
});

describe('Hlc.observe (restart seeding)', () => {
  test('seeding with a persisted timestamp makes now() exceed it, even with the clock behind', () => {
    const { hlc } = setup();
    const seed = hlcPack(T0 + 5_000, 12);
    hlc.observe(seed);
    assert.equal(hlc.peek(), seed);
    const t = hlc.now();
    assert.ok(t > seed);
    assert.equal(t, seed + 1n);
  });

  test('observe skips the skew check', () => {
    const { hlc } = setup();
    const seed = hlcPack(T0 + SKEW * 10, 0);
    hlc.observe(seed);
    assert.ok(hlc.now() > seed);
  });

  test('an older seed does not move the clock back', () => {
    const { hlc } = setup();
    const local = hlc.now();
    hlc.observe(hlcPack(T0 - 1, 0));
    assert.equal(hlc.peek(), local);
    assert.ok(hlc.now() > local);
  });
});
