import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { checkRun, type FinalRows } from '../../chaos/checker.ts';
import { faultKinds, faultSchedule } from '../../chaos/schedule.ts';
import type { ObservedChange } from '../../chaos/observer.ts';
import type { HistoryWrite } from '../../chaos/workload.ts';

describe('chaos fault schedule', () => {
  const nodes = ['n1', 'n2', 'n3'];
  test('the same seed gives the same schedule; another seed another', () => {
    assert.deepEqual(faultSchedule(42, nodes, 300_000), faultSchedule(42, nodes, 300_000));
    assert.notDeepEqual(faultSchedule(42, nodes, 300_000), faultSchedule(43, nodes, 300_000));
  });

  test('a 300 s run injects every kind of fault, one at a time; each starts inside the run', () => {
    for (const seed of [1, 2, 3, 101, 202]) {
      const s = faultSchedule(seed, nodes, 300_000);
      assert.deepEqual(new Set(s.map((f) => f.kind)), new Set(faultKinds), `seed ${seed}`);
      for (const [i, f] of s.entries()) {
        const next = s[i + 1];
        if (next) assert.ok(f.atMs + f.healAfterMs < next.atMs, `seed ${seed}: fault ${i} healed before the next`);
        // The last fault may heal up to its duration after the run's end (the runner waits for it).
        assert.ok(f.atMs < 300_000 - 4000 && f.atMs + f.healAfterMs <= 300_000 + 9000, 'starts inside the run, heals soon after');
        for (const t of f.targets) assert.ok(nodes.includes(t));
        if (f.kind === 'pause') assert.ok(f.healAfterMs > 5000, 'pause longer than the publish timeout');
        if (f.kind === 'kill-quorum' || f.kind === 'kill-during-apply') {
          assert.equal(f.targets.length, 2);
          assert.notEqual(f.targets[0], f.targets[1]);
        }
        if (f.kind === 'clock-skew') assert.ok(Math.abs(f.skewMs!) >= 2000 && Math.abs(f.skewMs!) <= 8000);
      }
    }
  });
});

describe('chaos checker', () => {
  const w = (node: string, k: string, seq: number, v: string | null, op: 'u' | 'd' = 'u'): HistoryWrite =>
    ({ t: 'kv_int', k, op, v, node, w: 'w0', seq, tx: seq, ms: seq });
  const o = (node: string, k: string, hlc: bigint, v: string | null): ObservedChange =>
    ({ t: 'kv_int', k, hlc, node, deleted: v === null, v });
  const finals = (rows: Record<string, Record<string, string>>): Map<string, FinalRows> =>
    new Map(Object.entries(rows).map(([n, r]) => [n, new Map([['kv_int', new Map(Object.entries(r))]])]));

  // n1 writes k1 twice (the first coalesced away), n2 overwrites it later; n2 deletes k2 after n1 wrote it.
  const history = [w('n1', '1', 1, 'a'), w('n1', '1', 2, 'b'), w('n2', '1', 1, 'c'), w('n1', '2', 3, 'x'), w('n2', '2', 2, null, 'd')];
  const observed = [o('n1', '1', 10n, 'b'), o('n2', '1', 11n, 'c'), o('n1', '2', 12n, 'x'), o('n2', '2', 13n, null)];
  const good = finals({ n1: { 1: 'c' }, n2: { 1: 'c' } });

  test('a correct run has no violations and counts conflicts', () => {
    const r = checkRun(history, observed, good);
    assert.deepEqual(r.violations, []);
    assert.equal(r.stats.conflictKeys, 2);
    assert.equal(r.stats.keys, 2);
  });

  test('divergence: nodes hold different rows', () => {
    const r = checkRun(history, observed, finals({ n1: { 1: 'c' }, n2: { 1: 'b' } }));
    assert.ok(r.violations.some((v) => v.kind === 'divergence' && /kv_int\[1\]/.test(v.detail)));
  });

  test('wrong winner: every node agrees on the older value (an inverted LWW)', () => {
    const r = checkRun(history, observed, finals({ n1: { 1: 'b' }, n2: { 1: 'b' } }));
    assert.ok(r.violations.some((v) => v.kind === 'wrong-winner' && /hlc 11n?, n2/.test(v.detail)));
    assert.ok(!r.violations.some((v) => v.kind === 'divergence'));
  });

  test('a deleted key that came back is a wrong winner', () => {
    const r = checkRun(history, observed, finals({ n1: { 1: 'c', 2: 'x' }, n2: { 1: 'c', 2: 'x' } }));
    assert.ok(r.violations.some((v) => v.kind === 'wrong-winner' && /kv_int\[2\].*a delete/.test(v.detail)));
  });

  test('ties on hlc are broken by node id', () => {
    const obs = [o('n1', '1', 10n, 'b'), o('n2', '1', 10n, 'c'), o('n1', '2', 12n, 'x'), o('n2', '2', 13n, null)];
    assert.deepEqual(checkRun(history, obs, good).violations, []);
    assert.ok(checkRun(history, obs, finals({ n1: { 1: 'b' }, n2: { 1: 'b' } })).violations.some((v) => v.kind === 'wrong-winner'));
  });

  test('lost write: a node\'s last committed write was never published', () => {
    const r = checkRun([...history, w('n1', '1', 4, 'late')], observed, good);
    assert.ok(r.violations.some((v) => v.kind === 'lost-write' && /n1's last committed write to kv_int\[1\] \(late/.test(v.detail)));
  });

  test('phantom change: a published value nobody wrote; phantom row: a row never published', () => {
    const r1 = checkRun(history, [...observed, o('n3', '1', 5n, 'ghost')], good);
    assert.ok(r1.violations.some((v) => v.kind === 'phantom-change' && /n3 published kv_int\[1\] = ghost/.test(v.detail)));
    const r2 = checkRun(history, observed, finals({ n1: { 1: 'c', 9: 'zzz' }, n2: { 1: 'c', 9: 'zzz' } }));
    assert.ok(r2.violations.some((v) => v.kind === 'phantom-row' && /kv_int\[9\] = zzz/.test(v.detail)));
  });
});
