import test from 'node:test';
import assert from 'node:assert/strict';
import { Replicas } from '../helpers/replicas.ts';
import { Membership } from '../../src/node/membership.ts';
import type { Replica } from '../../src/node/replica.ts';

const dayMs = 86_400_000;
const spec = (...ids: string[]) => ids.map((id) => ({ id, publicKey: `key-${id}` }));

/** What the node does at start and on SIGHUP: the file's members, with the former ones, to the replica's member set. */
function reload(r: Replica, m: Membership, ids: string[], nowMs: number): void {
  m.take(spec(...ids), nowMs);
  r.db.writeTx(() => m.save());
  r.members.clear();
  for (const id of m.accepted(nowMs)) r.members.add(id);
}

test('a member dropped from cluster.toml is accepted for history_s, then forgotten; added back, it is a member again', async () => {
  const rs = await Replicas.start(['n1']);
  try {
    const r = rs.node('n1');
    const m = new Membership(r.meta, 7 * dayMs);
    m.take(spec('n1', 'n2', 'n3'), 1000);
    r.db.writeTx(() => m.save());
    m.take(spec('n1', 'n2'), 2000);
    r.db.writeTx(() => m.save());
    assert.deepEqual([...m.accepted(3000)].sort(), ['n1', 'n2', 'n3']);
    assert.deepEqual(m.acceptedKeys(3000).get('n3'), 'key-n3', 'its signatures still verify');
    assert.deepEqual(m.former(3000), [{ id: 'n3', removedAtMs: 2000, acceptedUntilMs: 2000 + 7 * dayMs }]);
    // Kept in the file: a restart (a new Membership over the same meta) with the new file still knows n3 left.
    const again = new Membership(r.meta, 7 * dayMs);
    again.take(spec('n1', 'n2'), 5000);
    r.db.writeTx(() => again.save());
    assert.deepEqual(again.former(5000).map((f) => f.removedAtMs), [2000], 'the removal time is the first reload without it');
    assert.deepEqual([...again.accepted(2000 + 7 * dayMs)].sort(), ['n1', 'n2']);
    again.take(spec('n1', 'n2'), 2000 + 7 * dayMs);
    r.db.writeTx(() => again.save());
    assert.equal(new Membership(r.meta, 7 * dayMs).former(0).length, 0, 'forgotten in the file too');
    again.take(spec('n1', 'n2', 'n3'), 3 * dayMs);
    r.db.writeTx(() => again.save());
    again.take(spec('n1', 'n3'), 4 * dayMs);
    r.db.writeTx(() => again.save());
    assert.deepEqual([...again.accepted(4 * dayMs)].sort(), ['n1', 'n2', 'n3']);
    assert.deepEqual(again.former(4 * dayMs).map((f) => f.id), ['n2']);
  } finally {
    await rs.closeAll();
  }
});

// Chaos seed 101 (41c0cef): n2 reloaded cluster.toml without n3 before n3's schema entry (published
// before it stopped) reached it, and refused it; n1, not reloaded yet, folded it. The schema and the
// rows differed from there on. A removed node's messages are now judged alike on every node.
test('a removed node\'s schema entry and batch in flight are applied by a node that reloaded first, as by one that did not', async () => {
  const rs = await Replicas.start(['n1', 'n2', 'n3'], { schema: true });
  try {
    rs.app('n3').exec("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT); INSERT INTO t VALUES (1, 'from n3');");
    assert.equal(rs.publishSchema('n3'), 1);
    const batches = rs.publish('n3');
    assert.ok(batches.length > 0);
    const m = new Membership(rs.node('n2').meta, 7 * dayMs);
    reload(rs.node('n2'), m, ['n1', 'n2', 'n3'], 1000);
    reload(rs.node('n2'), m, ['n1', 'n2'], 2000); // n2 got SIGHUP first; n1 has not yet
    for (const id of ['n1', 'n2']) {
      rs.deliverSchema(id);
      rs.deliver(id, batches);
      rs.node(id).applier.retryWaiting(true);
    }
    for (const id of ['n1', 'n2']) {
      assert.equal(rs.node(id).schema!.store.conflictCount(), 0, `${id}: no refused entry`);
      assert.deepEqual(rs.app(id).prepare('SELECT id, v FROM t').raw(true).all(), [[1n, 'from n3']], id);
    }
    // A node never in the file stays out.
    assert.equal(rs.node('n2').members.has('intruder'), false);
  } finally {
    await rs.closeAll();
  }
});
