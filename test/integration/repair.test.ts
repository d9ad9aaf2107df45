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

  /** A JetStream API request through n1's server, retried while a stream has no leader. */
  const jsRequest = async (subject: string, body: unknown): Promise<string> => {
    let answer = '';
    await c.waitFor(`answer to ${subject}`, async () => {
      const r = await nc.request(subject, new TextEncoder().encode(JSON.stringify(body)), { timeout: 2000 });
      answer = new TextDecoder().decode(r.data);
      return true;
    }, 30_000, 200);
    return answer;
  };

  after(async () => {
    try {
      process.kill(c.node('n2').pid!, 'SIGCONT'); // a failure while n2 was paused
    } catch { /* not running */ }
    await nc?.close();
    await c?.destroy();
  });

  test('batches JetStream lost before a paused node read them are fetched from their origin; the replicas converge', async () => {
    c.execAll('CREATE TABLE notes(id INTEGER PRIMARY KEY, body TEXT)');
    c.db('n1').prepare('INSERT INTO notes VALUES (0, ?)').run('before');
    await c.waitConverged('SELECT * FROM notes');
    // n2 is paused (SIGSTOP: its process, not its nats-server), so it reads nothing meanwhile but
    // stays where it was — a running node that falls behind, not one that restarts past retention.
    process.kill(c.node('n2').pid!, 'SIGSTOP');
    // Its readers go too (every node's: n1 and n3 read again from their positions), so nothing
    // written from now on is delivered into n2's socket while it is paused.
    for (let s = 0; s < 16; s++) {
      const stream = `burrow_${c.clusterName}_${s}`;
      const names = (JSON.parse(await jsRequest(`$JS.API.CONSUMER.NAMES.${stream}`, {})) as { consumers: string[] | null }).consumers ?? [];
      for (const name of names) assert.match(await jsRequest(`$JS.API.CONSUMER.DELETE.${stream}.${name}`, {}), /"success":true/);
    }
    const ins = c.db('n1').prepare('INSERT INTO notes VALUES (?, ?)');
    for (let i = 1; i <= 40; i++) ins.run(BigInt(i), `note ${i}`); // 40 transactions → many batches over the shards
    await c.waitFor('n3 has all 41 rows and n1 published everything', async () =>
      c.query<{ n: bigint }>('n3', 'SELECT count(*) AS n FROM notes')[0]!.n === 41n && (await c.status('n1'))?.pending?.outboxBatches === 0);
    // JetStream "loses" every message n2 has not read yet.
    for (let s = 0; s < 16; s++) {
      let answer = '';
      await c.waitFor(`stream ${s} purged`, async () => {
        const r = await nc.request(`$JS.API.STREAM.PURGE.burrow_${c.clusterName}_${s}`, new TextEncoder().encode('{}'), { timeout: 2000 });
        answer = new TextDecoder().decode(r.data);
        return true;
      }, 30_000, 200);
      assert.match(answer, /"success":true/);
    }
    process.kill(c.node('n2').pid!, 'SIGCONT');
    const rows = await c.waitConverged('SELECT count(*) AS n, max(body) AS last FROM notes', 30_000);
    assert.deepEqual(rows, [{ n: '41n', last: 'note 9' }]);
    const st = await c.status('n2');
    assert.ok(st.repair.batchesRepaired >= 1, `n2 repaired batches: ${JSON.stringify(st.repair)}`);
    assert.equal(st.repair.lost, 0);
    assert.ok((await c.status('n1')).repair.served >= 1);
    assert.equal(c.checksum().code, 0);
  });
});
