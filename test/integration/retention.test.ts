import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { TestCluster } from '../helpers/cluster.ts';
import { streamName } from '../../src/shard/shard-router.ts';

/**
 * Streams keep messages by size and age, whoever has read them: a node that is down holds
 * nothing back. Here each of 2 shard streams is bounded at 1 MiB while n3 is down and n1 writes
 * about 2.5× that per stream: publishes go on, n2 keeps up, the streams drop their oldest
 * messages; n3 comes back behind the retention and restores from a snapshot a peer takes for it
 * (merged by LWW), keeping the writes its application made while burrow was down.
 */
for (const external of [false, true]) describe(`retention by limits${external ? ' (external NATS cluster: [nats] urls, three nats-servers)' : ''}`, () => {
  let c: TestCluster;
  let nc: NatsConnection;
  const bound = 1024 * 1024;

  before(async () => {
    c = await TestCluster.create({ nodes: 3, shards: 2, clusterToml: `stream_bytes_max = ${bound}\n`, externalNats: external ? 3 : undefined });
    await c.start();
    nc = await connect({ servers: c.node('n1').natsUrl });
  });

  after(async () => {
    await nc?.close();
    await c?.destroy();
  });

  const streamState = async (shard: number) => {
    const r = await nc.request(`$JS.API.STREAM.INFO.${streamName(c.clusterName, shard)}`, new Uint8Array(0), { timeout: 5000 });
    return (JSON.parse(new TextDecoder().decode(r.data)) as { state: { bytes: number; first_seq: number; last_seq: number } }).state;
  };

  test('a node down while 2.5× the stream bound is written holds nothing back; back, it restores from a snapshot and keeps its offline writes', async () => {
    c.execAll('CREATE TABLE big(id INTEGER PRIMARY KEY, pad BLOB)');
    await c.waitFor('every node captures big', async () => (await Promise.all(c.nodes.map((n) => c.status(n.id)))).every((s) => s?.capture.tables.includes('big')));
    await c.stopNode('n3');
    // n3's application keeps writing while its burrow is down (captured by the triggers).
    c.sqlite3('n3', 'INSERT INTO big VALUES (100000, x\'01\'), (100001, x\'02\');');
    const rows = 2600;
    const ins = c.db('n1').prepare('INSERT INTO big VALUES (?, randomblob(2000))');
    for (let i = 0; i < rows; i += 100) c.db('n1').transaction(() => { for (let k = i; k < i + 100; k++) ins.run(BigInt(k)); })();
    // Nothing stalls: every batch is published and n2 has every row.
    await c.waitFor('n1 published everything', async () => (await c.status('n1'))?.pending.outboxBatches === 0, 60_000, 100);
    await c.waitConverged('SELECT count(*) n, sum(id) s FROM big', 60_000, ['n1', 'n2']);
    assert.deepEqual(c.query('n2', 'SELECT count(*) AS n FROM big'), [{ n: BigInt(rows) }]);
    for (const shard of [0, 1]) {
      const st = await streamState(shard);
      assert.ok(st.bytes <= bound, `shard ${shard} stream holds ${st.bytes} bytes (bound ${bound})`);
      assert.ok(st.first_seq > 1, `shard ${shard} dropped its oldest messages (first_seq ${st.first_seq})`);
    }
    c.startNode('n3');
    await c.waitReady(60_000, ['n3']);
    const s3 = await c.status('n3');
    assert.equal(s3.snapshots.restore?.state, 'done', JSON.stringify(s3.snapshots));
    // A failed attempt is retried (its errors are in restoreErrors); the reason stays the first one.
    assert.match(s3.snapshots.restore.reason, /fell past retention/, JSON.stringify(s3.snapshots) + c.logs(60));
    await c.waitConverged('SELECT count(*) n, sum(id) s FROM big', 120_000);
    assert.deepEqual(c.query('n1', 'SELECT count(*) AS n FROM big'), [{ n: BigInt(rows + 2) }]);
    assert.equal(c.checksum().code, 0);
  });

  if (!external) test('a node removed from cluster.toml holds nothing back: 2.5× the stream bound written after it left', async () => {
    c.writeConfig(['n1', 'n2']);
    for (const id of ['n1', 'n2']) c.hup(id);
    await c.waitFor('n3 no longer a member', async () => (await Promise.all(['n1', 'n2'].map((id) => c.status(id)))).every((s) => s && !s.members.includes('n3')));
    await c.stopNode('n3');
    const from = 200_000;
    const rows = 2600;
    const ins = c.db('n2').prepare('INSERT INTO big VALUES (?, randomblob(2000))');
    for (let i = from; i < from + rows; i += 100) c.db('n2').transaction(() => { for (let k = i; k < i + 100; k++) ins.run(BigInt(k)); })();
    await c.waitFor('n2 published everything', async () => (await c.status('n2'))?.pending.outboxBatches === 0, 60_000, 100);
    await c.waitConverged('SELECT count(*) n, sum(id) s FROM big', 60_000, ['n1', 'n2']);
    assert.deepEqual(c.query('n1', `SELECT count(*) AS n FROM big WHERE id >= ${from}`), [{ n: BigInt(rows) }]);
    for (const shard of [0, 1]) assert.ok((await streamState(shard)).bytes <= bound, `shard ${shard} within its bound`);
  });
});

/**
 * Bounded history: tombstones older than cluster.history_s and than the newest snapshot are
 * collected. A node down for longer than that comes back to streams that aged out and peers that
 * forgot the deletes: it restores, and below the horizon it follows the snapshot, so rows deleted
 * while it was away stay deleted (not resurrected), while its app's writes made while burrow was
 * down (stamped at restart) survive.
 */
describe('bounded history', () => {
  let c: TestCluster;

  before(async () => {
    const env = { BURROW_HISTORY_INTERVAL_MS: '1000' };
    // history − stream age − skew (18 s) is how long n3 may take from stamping its offline write at
    // start to merging: a change older than that is too old to publish and is dead-lettered. With
    // history_s = 20 (8 s) a loaded CI machine crossed it; 18 s was checked with a 10 s delay added.
    c = await TestCluster.create({
      nodes: 3, shards: 2, clusterToml: 'stream_age_max_s = 10\nhistory_s = 30\nhlc_skew_ms_max = 2000\n',
      extraToml: '[snapshot]\ninterval_s = 5\n', env: { n1: env, n2: env, n3: env },
    });
    await c.start();
  });

  after(async () => {
    await c?.destroy();
  });

  test('a node down longer than the history horizon restores instead of resurrecting deleted rows', async () => {
    c.execAll('CREATE TABLE items(id INTEGER PRIMARY KEY, v TEXT)');
    await c.waitFor('every node captures items', async () => (await Promise.all(c.nodes.map((n) => c.status(n.id)))).every((s) => s?.capture.tables.includes('items')));
    c.db('n1').transaction(() => { for (let i = 1; i <= 50; i++) c.db('n1').prepare('INSERT INTO items VALUES (?, ?)').run(BigInt(i), `v${i}`); })();
    await c.waitConverged('SELECT count(*) n, sum(id) s FROM items', 60_000);
    await c.stopNode('n3');
    c.sqlite3('n3', "UPDATE items SET v = 'n3 offline' WHERE id = 40;");
    c.db('n1').prepare('DELETE FROM items WHERE id <= 20').run();
    await c.waitConverged('SELECT count(*) n, sum(id) s FROM items', 60_000, ['n1', 'n2']);
    // Past the horizon, with a snapshot taken after the deletes: both live nodes forget them.
    await c.waitFor('n1 and n2 collected the 20 tombstones', async () => {
      const s = await Promise.all(['n1', 'n2'].map((id) => c.status(id)));
      return s.every((x) => x?.history?.tombstones === 0 && x.history.collected >= 20);
    }, 90_000, 500);
    // …and a snapshot taken after that holds no trace of them: only the horizon says they are gone.
    const collectedAt = Date.now();
    // …as the bucket lists it (what n3 will choose from), not only as its taker knows it.
    await c.waitFor('the newest snapshot in the bucket is newer than the collection', () => {
      const r = c.cli(['snapshots', '--json']);
      const newest = r.code === 0 ? (JSON.parse(r.stdout).snapshots as { atMs: number }[])[0] : undefined;
      return (newest?.atMs ?? 0) > collectedAt;
    }, 60_000, 1000);
    c.startNode('n3');
    await c.waitReady(90_000, ['n3']);
    const s3 = await c.status('n3');
    assert.equal(s3.snapshots.restore?.state, 'done', JSON.stringify(s3.snapshots) + c.logs(60));
    assert.match(s3.snapshots.restore.reason, /fell past retention/, JSON.stringify(s3.snapshots));
    assert.ok(s3.snapshots.restore.forgotten >= 20, `forgotten ${s3.snapshots.restore.forgotten}: ${JSON.stringify(s3.snapshots)}\n${c.logs(40)}`);
    await c.waitConverged('SELECT count(*) n, sum(id) s, group_concat(v) g FROM items', 60_000);
    assert.deepEqual(c.query('n3', 'SELECT count(*) AS n FROM items WHERE id <= 20'), [{ n: 0n }]);
    assert.deepEqual(c.query('n1', 'SELECT v FROM items WHERE id = 40'), [{ v: 'n3 offline' }], JSON.stringify(c.query('n3', 'SELECT reason FROM __burrow_dead'), (_k, v) => typeof v === 'bigint' ? String(v) : v));
    assert.equal(c.checksum().code, 0);
  });
});
