import { test } from 'node:test';
import assert from 'node:assert/strict';
import { GapTracker } from '../../src/replication/gaps.ts';

function clock() {
  let t = 1000;
  return { now: () => t, advance: (ms: number) => { t += ms; } };
}

test('gaps: batches applied in any order advance contiguous; nothing is due while complete', () => {
  const c = clock();
  const g = new GapTracker(new Map([['n1', 10]]), c.now);
  assert.equal(g.noteApplied('n1', 12), null);
  assert.equal(g.noteApplied('n1', 13), null);
  assert.equal(g.noteApplied('n1', 11), 13);
  assert.equal(g.noteApplied('n1', 12), null, 'duplicates are ignored');
  c.advance(60_000);
  assert.deepEqual(g.due(20_000, 100), []);
});

test('gaps: a hole that stays without progress for gapMs is due once per gapMs, with the missing numbers only', () => {
  const c = clock();
  const g = new GapTracker(new Map([['n1', 0]]), c.now);
  for (const n of [1, 2, 4, 5, 8]) g.noteApplied('n1', n);
  c.advance(19_999);
  assert.deepEqual(g.due(20_000, 100), []);
  c.advance(1);
  assert.deepEqual(g.due(20_000, 100), [{ origin: 'n1', missing: [3, 6, 7] }]);
  assert.deepEqual(g.due(20_000, 100), [], 'not asked again at once');
  g.noteApplied('n1', 3);
  g.noteApplied('n1', 6);
  g.noteApplied('n1', 7);
  assert.deepEqual(g.snapshot(), [{ origin: 'n1', contiguous: 8, known: 0, aheadApplied: 0, behind: 0 }]);
});

test('gaps: the heartbeat reveals a lost tail (no later batch ever arrives)', () => {
  const c = clock();
  const g = new GapTracker(new Map([['n3', 40]]), c.now);
  g.noteKnown('n3', 45);
  c.advance(25_000);
  assert.deepEqual(g.due(20_000, 3), [{ origin: 'n3', missing: [41, 42, 43] }], 'capped at max numbers per request');
});

test('gaps: progress resets the clock (a lagging but moving origin is not asked)', () => {
  const c = clock();
  const g = new GapTracker(new Map([['n2', 0]]), c.now);
  g.noteKnown('n2', 100);
  for (let n = 1; n <= 50; n++) {
    c.advance(1000);
    g.noteApplied('n2', n);
  }
  assert.deepEqual(g.due(20_000, 10), []);
  c.advance(20_000);
  assert.deepEqual(g.due(20_000, 2), [{ origin: 'n2', missing: [51, 52] }]);
});

test('gaps: first contact starts at the first batch seen (history before it predates this replica); giving up settles numbers', () => {
  const c = clock();
  const g = new GapTracker(new Map(), c.now);
  assert.equal(g.noteApplied('n9', 500), 500);
  g.noteApplied('n9', 503);
  c.advance(30_000);
  assert.deepEqual(g.due(20_000, 10), [{ origin: 'n9', missing: [501, 502] }]);
  assert.equal(g.giveUp('n9', [501, 502]), 503);
});
