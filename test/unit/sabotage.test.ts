import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseSabotage, sabotageActive, sabotageCorrupts, sabotageDrops } from '../../src/util/sabotage.ts';

test('sabotage: off unless asked; the old BURROW_TEST_INVERT_LWW=1 still inverts', () => {
  assert.deepEqual(sabotageActive(parseSabotage(undefined, undefined)), []);
  assert.deepEqual(sabotageActive(parseSabotage('', '1')), ['invert-lww']);
  assert.deepEqual(sabotageActive(parseSabotage('drop-acked:8, no-echo-suppression,corrupt-published:3', undefined)),
    ['drop-acked:8', 'corrupt-published:3', 'no-echo-suppression']);
  assert.deepEqual(sabotageActive(parseSabotage('lose-schema-entry:2', undefined)), ['lose-schema-entry:2']);
});

test('sabotage: a bad item is an error naming the variable and the item', () => {
  for (const bad of ['drop-acked', 'drop-acked:0', 'drop-acked:x', 'invert-lww:2', 'lose-schema-entry', 'everything']) {
    assert.throws(() => parseSabotage(bad, undefined), new RegExp(`BURROW_TEST_SABOTAGE: cannot use "${bad}"`));
  }
});

test('sabotage: about 1 in N batches is picked, the same ones everywhere, drops and corruptions independently', () => {
  const s = parseSabotage('drop-acked:10,corrupt-published:10', undefined);
  const ids = Array.from({ length: 5000 }, (_, i) => `c.n1.${1_000_000 + i * 7}`);
  const dropped = ids.filter((id) => sabotageDrops(id, s));
  const corrupted = ids.filter((id) => sabotageCorrupts(id, s));
  for (const n of [dropped.length, corrupted.length]) assert.ok(n > 350 && n < 650, `picked ${n} of 5000`);
  assert.deepEqual(ids.filter((id) => sabotageDrops(id, s)), dropped, 'deterministic');
  assert.ok(dropped.filter((id) => corrupted.includes(id)).length < 100);
  assert.equal(ids.filter((id) => sabotageDrops(id, parseSabotage(undefined, undefined))).length, 0, 'off: nothing picked');
});
