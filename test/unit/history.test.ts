import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { hlcPack } from '../../src/clock/hlc.ts';
import { copySnapshot } from '../../src/snapshot/copy.ts';
import { mergeSnapshot } from '../../src/snapshot/merge.ts';
import { silentLogger } from '../../src/util/log.ts';
import { Replicas } from '../helpers/replicas.ts';

/**
 * Bounded history on in-process replicas (real SQLite files, simulated clocks): tombstones past
 * the horizon are collected, and a replica that comes back from beyond it follows the snapshot
 * instead of resurrecting rows the cluster deleted and forgot.
 */

const schema = 'CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT); CREATE TABLE k(name TEXT PRIMARY KEY COLLATE NOCASE, v) WITHOUT ROWID;';

function stamp(rs: Replicas, id: string): void {
  while (rs.node(id).applier.stampLocal().logRows > 0) { /* drain */ }
}

async function withReplicas(ids: string[], fn: (rs: Replicas) => Promise<void>): Promise<void> {
  const rs = await Replicas.start(ids);
  try {
    await fn(rs);
  } finally {
    await rs.closeAll();
  }
}

const nowMs = (rs: Replicas, id: string) => rs.clocks.get(id)!.nowMs();
const tombstones = (rs: Replicas, id: string) => {
  const r = rs.node(id);
  return r.capture.tables().reduce((a, t) => a + r.clocks.tombstoneCount(t.tid), 0);
};

test('tombstones older than the horizon are collected, newer ones stay; the horizon only rises', () => withReplicas(['n1'], async (rs) => {
  rs.everywhere(schema);
  const app = rs.app('n1');
  for (let i = 1; i <= 10; i++) app.prepare('INSERT INTO t VALUES (?, ?)').run(BigInt(i), `v${i}`);
  app.prepare("INSERT INTO k VALUES ('Alpha', 1), ('beta', 2)").run();
  stamp(rs, 'n1');
  app.prepare('DELETE FROM t WHERE id <= 5').run();
  app.prepare("DELETE FROM k WHERE name = 'ALPHA'").run();
  stamp(rs, 'n1');
  rs.advance(1000);
  const horizon = hlcPack(nowMs(rs, 'n1') - 500, 0);
  rs.advance(1000);
  app.prepare('DELETE FROM t WHERE id IN (6, 7)').run();
  stamp(rs, 'n1');
  assert.equal(tombstones(rs, 'n1'), 8);
  const r = rs.node('n1');
  assert.equal(r.applier.collectHistory(horizon, 2), 2, 'one pass collects at most its limit');
  assert.equal(r.applier.collectHistory(horizon, 100), 4);
  assert.equal(tombstones(rs, 'n1'), 2, 'the two deletes after the horizon keep their tombstones');
  assert.equal(r.meta.historyHorizon(), horizon);
  r.applier.collectHistory(horizon - 1n, 100);
  assert.equal(r.meta.historyHorizon(), horizon, 'never lowered');
  // Live rows keep their clocks: nothing is stamped again, nothing to publish.
  assert.deepEqual(rs.dump('n1', 't').length, 3);
  assert.deepEqual(rs.publish('n1').length > 0, true);
  assert.deepEqual(rs.publish('n1'), []);
}));

test('a replica back from beyond the horizon follows the snapshot: no resurrection, its too-old changes dead-lettered', () => withReplicas(['n1', 'n2'], async (rs) => {
  rs.everywhere(schema);
  const a1 = rs.app('n1');
  for (let i = 1; i <= 10; i++) a1.prepare('INSERT INTO t VALUES (?, ?)').run(BigInt(i), `v${i}`);
  a1.prepare("INSERT INTO k VALUES ('Alpha', 1), ('beta', 2)").run();
  rs.sync();
  // n2 is cut off from here on. It writes (stamped, never published); n1 deletes and updates.
  rs.advance(100);
  rs.app('n2').prepare("INSERT INTO t VALUES (20, 'n2 offline')").run();
  rs.app('n2').prepare("UPDATE t SET v = 'n2 edit' WHERE id = 9").run();
  stamp(rs, 'n2');
  rs.advance(1000);
  a1.prepare('DELETE FROM t WHERE id <= 5').run();
  a1.prepare("DELETE FROM k WHERE name = 'alpha'").run();
  a1.prepare("UPDATE t SET v = 'n1 edit' WHERE id = 6").run();
  stamp(rs, 'n1');
  rs.publish('n1'); // n2 never gets these
  rs.advance(1000);
  // Past the horizon on n1: its tombstones are collected, then it snapshots.
  assert.equal(rs.node('n1').applier.collectHistory(hlcPack(nowMs(rs, 'n1') - 500, 0), 100), 6);
  const snap = path.join(rs.dir, 'h.snapshot.db');
  rmSync(snap, { force: true });
  await copySnapshot({ dbFile: rs.file('n1'), outFile: snap, shards: 4, busyTimeoutMs: 1000 });
  rs.advance(1000);
  const r = await mergeSnapshot(rs.node('n2'), snap, {
    nodeId: 'n2', cluster: 't', shards: 4, log: silentLogger, chunkChanges: 3, staleBelow: hlcPack(nowMs(rs, 'n2') - 1500, 0),
  });
  assert.ok(r.horizon > 0n);
  // Rows 1-5 and Alpha were deleted and forgotten by n1: gone here too, not resurrected. Row 20 and
  // n2's edit of row 9 were never published and are older than the horizon: out, to the dead letters.
  assert.equal(r.forgotten, 8, `forgotten ${r.forgotten}`);
  assert.equal(r.outboxDropped, 2);
  assert.deepEqual(rs.dump('n2', 't'), rs.dump('n1', 't'));
  assert.deepEqual(rs.dump('n2', 'k'), rs.dump('n1', 'k'));
  assert.equal(rs.app('n2').prepare('SELECT v FROM t WHERE id = 6').pluck().get(), 'n1 edit');
  assert.equal(rs.node('n2').quarantine.deadCount(), 2);
  assert.match(String((rs.node('n2').quarantine.recentDead(1)[0] as { reason: string }).reason), /history horizon/);
  assert.deepEqual(rs.publish('n2'), [], 'nothing too old is published');
  assert.deepEqual(await rs.node('n2').checksum(), await rs.node('n1').checksum());
}));

test('a replica within the horizon merges by LWW as before: its offline writes survive', () => withReplicas(['n1', 'n2'], async (rs) => {
  rs.everywhere(schema);
  for (let i = 1; i <= 5; i++) rs.app('n1').prepare('INSERT INTO t VALUES (?, ?)').run(BigInt(i), `v${i}`);
  rs.sync();
  rs.advance(100);
  rs.app('n2').prepare("INSERT INTO t VALUES (20, 'n2 offline')").run();
  stamp(rs, 'n2');
  rs.advance(100);
  rs.app('n1').prepare('DELETE FROM t WHERE id = 1').run();
  stamp(rs, 'n1');
  rs.publish('n1');
  const snap = path.join(rs.dir, 'w.snapshot.db');
  rmSync(snap, { force: true });
  await copySnapshot({ dbFile: rs.file('n1'), outFile: snap, shards: 4, busyTimeoutMs: 1000 });
  const r = await mergeSnapshot(rs.node('n2'), snap, { nodeId: 'n2', cluster: 't', shards: 4, log: silentLogger, staleBelow: 0n });
  assert.equal(r.horizon, 0n);
  assert.equal(r.forgotten + r.outboxDropped, 0);
  assert.equal(rs.app('n2').prepare('SELECT v FROM t WHERE id = 20').pluck().get(), 'n2 offline');
  assert.equal(rs.app('n2').prepare('SELECT count(*) FROM t WHERE id = 1').pluck().get(), 0n, 'the tombstone came with the snapshot');
  const out = rs.publish('n2');
  assert.equal(out.length, 1, 'the offline write is published');
}));

test('the outbox holds batches older than holdBelow back from publishing', () => withReplicas(['n1'], async (rs) => {
  rs.everywhere(schema);
  rs.app('n1').prepare("INSERT INTO t VALUES (1, 'a')").run();
  stamp(rs, 'n1');
  const ob = rs.node('n1').outbox;
  assert.equal(ob.pending(0, 10, new Set()).length + ob.pending(1, 10, new Set()).length + ob.pending(2, 10, new Set()).length + ob.pending(3, 10, new Set()).length, 1);
  ob.holdBelow = hlcPack(nowMs(rs, 'n1') + 1, 0);
  for (let s = 0; s < 4; s++) assert.deepEqual(ob.pending(s, 10, new Set()), []);
  assert.equal(ob.oldestHlc()! < ob.holdBelow, true);
}));
