import { test } from 'node:test';
import assert from 'node:assert/strict';
import { SchemaLossWatch } from '../../src/replication/schema-loss.ts';
import { silentLogger } from '../../src/util/log.ts';

/** The watch republishes own entries the schema stream acknowledged and lost — and nothing that is merely on its way. */

function fake() {
  const st = { ready: true, position: 10, lastSeq: 10, pending: [4, 5], republished: [] as number[][] };
  const w = new SchemaLossWatch({
    ready: () => st.ready,
    position: () => st.position,
    publishedPending: () => st.pending,
    streamLastSeq: async () => st.lastSeq,
    republish: (ns) => { st.republished.push([...ns]); },
  }, silentLogger, 3);
  return { st, w };
}

test('schema loss: entries not back while the stream is read to its end, three checks in a row, are published again', async () => {
  const { st, w } = fake();
  await w.tick();
  await w.tick();
  assert.deepEqual(st.republished, []);
  await w.tick();
  assert.deepEqual(st.republished, [[4, 5]]);
  assert.equal(w.stats.republished, 2);
});

test('schema loss: nothing is republished while this node is still reading the stream, before it was read once, or when nothing waits', async () => {
  const { st, w } = fake();
  st.lastSeq = 12; // entries 11, 12 not folded yet: ours may be among them
  for (let i = 0; i < 5; i++) await w.tick();
  assert.deepEqual(st.republished, []);
  st.lastSeq = 10;
  st.ready = false;
  for (let i = 0; i < 5; i++) await w.tick();
  assert.deepEqual(st.republished, []);
  st.ready = true;
  st.pending = [];
  for (let i = 0; i < 5; i++) await w.tick();
  assert.deepEqual(st.republished, []);
});

test('schema loss: the count starts over when the waiting entries change (one came back)', async () => {
  const { st, w } = fake();
  await w.tick();
  await w.tick();
  st.pending = [5];
  await w.tick();
  await w.tick();
  assert.deepEqual(st.republished, []);
  await w.tick();
  assert.deepEqual(st.republished, [[5]]);
});
