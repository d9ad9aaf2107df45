import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { TestCluster } from '../helpers/cluster.ts';

/**
 * Messages JetStream acknowledged and then lost (nats-server 2.9 does this after quorum kills;
 * here a stream purge stands in for it) reach the node that missed them anyway: batch numbers
 * reveal the gap, and the node fetches the batches from their origin's sent log.
 */
describe('gap repair', () => {
  let c: TestCluster;
  let nc: NatsConnection;
  const env = { BURROW_REPAIR_GAP_MS: '1500' };

  before(async () => {
    c = await TestCluster.create({ nodes: 3, env: { n1: env, n2: env, n3: env } });
    await c.start();
    nc = await connect({ servers: c.node('n1').natsUrl });
  });

  after(async () => {
    await nc?.close();
    await c?.destroy();
  });

  test('batches JetStream lost before a paused node read them are fetched from their origin; the replicas converge', async () => {
    c.execAll('CREATE TABLE notes(id INTEGER PRIMARY KEY, body TEXT)');
    c.db('n1').prepare('INSERT INTO notes VALUES (0, ?)').run('before');
    await c.waitConverged('SELECT * FROM notes');
    await c.stopNode('n2');
    const ins = c.db('n1').prepare('INSERT INTO notes VALUES (?, ?)');
    for (let i = 1; i <= 40; i++) ins.run(BigInt(i), `note ${i}`); // 40 transactions → many batches over the shards
    await c.waitFor('n3 has all 41 rows and n1 published everything', async () =>
      c.query<{ n: bigint }>('n3', 'SELECT count(*) AS n FROM notes')[0]!.n === 41n && (await c.status('n1'))?.pending?.outboxBatches === 0);
    // JetStream "loses" every message n2 has not read yet.
    // A stream n2's server led is electing a new leader right after the stop: no answer until then.
    for (let s = 0; s < 16; s++) {
      let answer = '';
      await c.waitFor(`stream ${s} purged`, async () => {
        const r = await nc.request(`$JS.API.STREAM.PURGE.burrow_${c.clusterName}_${s}`, new TextEncoder().encode('{}'), { timeout: 2000 });
        answer = new TextDecoder().decode(r.data);
        return true;
      }, 30_000, 200);
      assert.match(answer, /"success":true/);
    }
    c.startNode('n2');
    const rows = await c.waitConverged('SELECT count(*) AS n, max(body) AS last FROM notes', 30_000);
    assert.deepEqual(rows, [{ n: '41n', last: 'note 9' }]);
    const st = await c.status('n2');
    assert.ok(st.repair.batchesRepaired >= 1, `n2 repaired batches: ${JSON.stringify(st.repair)}`);
    assert.equal(st.repair.lost, 0);
    assert.ok((await c.status('n1')).repair.served >= 1);
    assert.equal(c.checksum().code, 0);
  });
});
