import { test } from 'node:test';
import assert from 'node:assert/strict';
import { GapTracker } from '../../src/replication/gaps.ts';

function clock() {
  let t = 1000;
  return { now: () => t, advance: (ms: number) => { t += ms; } };
}
const at = (contiguous: number, above: number[] = []) => ({ contiguous, above });

test('gaps: batches applied in any order advance contiguous; nothing is due while complete', () => {
  const c = clock();
  const g = new GapTracker(new Map([['n1', at(10)]]), c.now);
  assert.deepEqual(g.noteApplied('n1', 12), { contiguous: null, above: true });
  assert.deepEqual(g.noteApplied('n1', 13), { contiguous: null, above: true });
  assert.deepEqual(g.noteApplied('n1', 11), { contiguous: 13, above: false });
  assert.deepEqual(g.noteApplied('n1', 12), { contiguous: null, above: false }, 'duplicates are ignored');
  g.due(20_000, 100);
  c.advance(60_000);
  assert.deepEqual(g.due(20_000, 100), []);
});

test('gaps: a hole below numbers applied gapMs ago is due, with the missing numbers only — and again at each call until filled', () => {
  const c = clock();
  const g = new GapTracker(new Map([['n1', at(0)]]), c.now);
  for (const n of [1, 2, 4, 5, 8]) g.noteApplied('n1', n);
  assert.deepEqual(g.due(20_000, 100), [], 'just seen: probably in flight');
  c.advance(19_999);
  assert.deepEqual(g.due(20_000, 100), []);
  c.advance(1);
  assert.deepEqual(g.due(20_000, 100), [{ origin: 'n1', missing: [3, 6, 7] }]);
  g.noteApplied('n1', 3);
  c.advance(2000);
  assert.deepEqual(g.due(20_000, 100), [{ origin: 'n1', missing: [6, 7] }], 'progress does not restart the wait for what is still missing');
  g.noteApplied('n1', 6);
  g.noteApplied('n1', 7);
  assert.deepEqual(g.snapshot(), [{ origin: 'n1', contiguous: 8, known: 0, aheadApplied: 0, behind: 0 }]);
});

test('gaps: the heartbeat reveals a lost tail; numbers newer than gapMs are not asked for', () => {
  const c = clock();
  const g = new GapTracker(new Map([['n3', at(40)]]), c.now);
  g.noteKnown('n3', 45);
  g.due(20_000, 100);
  c.advance(10_000);
  g.noteKnown('n3', 60);
  g.due(20_000, 100);
  c.advance(10_000);
  assert.deepEqual(g.due(20_000, 100), [{ origin: 'n3', missing: [41, 42, 43, 44, 45] }], 'only what was due 20 s ago');
  assert.deepEqual(g.due(20_000, 2), [{ origin: 'n3', missing: [41, 42] }], 'capped at max numbers per request');
});

test('gaps: a lagging origin whose batches keep arriving within gapMs is never asked', () => {
  const c = clock();
  const g = new GapTracker(new Map([['n2', at(0)]]), c.now);
  for (let n = 1; n <= 100; n++) {
    g.noteKnown('n2', n + 5); // acknowledged a little before it is delivered here
    c.advance(1000);
    g.noteApplied('n2', n);
    assert.deepEqual(g.due(20_000, 10), []);
  }
});

test('gaps: numbers applied out of order survive a restart (persisted above); a new origin is due from its first batch', () => {
  const c = clock();
  const g = new GapTracker(new Map([['n1', at(5, [7, 8, 20])]]), c.now);
  assert.deepEqual(g.snapshot()[0], { origin: 'n1', contiguous: 5, known: 5, aheadApplied: 3, behind: 12 });
  assert.deepEqual(g.noteApplied('n1', 6), { contiguous: 8, above: false });
  // First batch seen from n9 is number 3: 1 and 2 are missing (JetStream may have lost them), not assumed applied.
  assert.deepEqual(g.noteApplied('n9', 3), { contiguous: null, above: true });
  g.due(20_000, 10);
  c.advance(30_000);
  assert.deepEqual(g.due(20_000, 10).find((r) => r.origin === 'n9'), { origin: 'n9', missing: [1, 2] });
  assert.deepEqual(g.giveUp('n9', [1, 2]).at(-1), { contiguous: 3, above: false });
});

test('gaps: a first heartbeat makes every number up to it due, none assumed applied', () => {
  const c = clock();
  const g = new GapTracker(new Map(), c.now);
  g.noteKnown('n4', 3);
  g.due(20_000, 10);
  c.advance(30_000);
  assert.deepEqual(g.due(20_000, 10), [{ origin: 'n4', missing: [1, 2, 3] }]);
});

test('gaps: notes of a rolled-back transaction are forgotten (the batch is asked for again)', () => {
  const c = clock();
  const g = new GapTracker(new Map([['n1', at(5, [])]]), c.now);
  g.begin();
  assert.deepEqual(g.noteApplied('n1', 6), { contiguous: 6, above: false });
  g.noteApplied('n2', 1);
  g.rollback();
  assert.deepEqual(g.snapshot(), [{ origin: 'n1', contiguous: 5, known: 5, aheadApplied: 0, behind: 0 }]);
  g.begin();
  assert.deepEqual(g.noteApplied('n1', 6), { contiguous: 6, above: false }, 'the same batch counts again after the rollback');
  g.commit();
  g.rollback(); // no transaction open: nothing to undo
  assert.equal(g.snapshot()[0]!.contiguous, 6);
});

test('gaps: more than aboveMax numbers beyond holes: the lowest holes are given up until the rest fits (received_above stays bounded)', () => {
  const g = new GapTracker(new Map([['n1', at(0)]]));
  // Holes at 1, 5, 9 and 40; everything else up to 30 applied, and 41..44.
  for (const n of [41, 42, 43, 44]) g.noteApplied('n1', n);
  for (let n = 1; n <= 30; n++) if (![1, 5, 9].includes(n)) g.noteApplied('n1', n);
  assert.deepEqual(g.overflowing(100, 10), [], 'within the bound: nothing');
  const over = g.overflowing(20, 10);
  assert.deepEqual(over, [{ origin: 'n1', missing: [1, 5, 9] }], 'the lowest holes, enough that at most 20 stay above (27 are)');
  g.giveUp('n1', over[0]!.missing);
  const s = g.snapshot()[0]!;
  assert.equal(s.contiguous, 30);
  assert.ok(s.aheadApplied <= 20, `above: ${s.aheadApplied}`);
  assert.deepEqual(g.overflowing(20, 10), []);
});
