import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { connect, headers, type NatsConnection } from '@nats-io/transport-node';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { TestCluster } from '../helpers/cluster.ts';
import { batchVersion, encodeBatch } from '../../src/codec/batch-codec.ts';
import { encodeValues } from '../../src/codec/value-codec.ts';
import { hlcPack } from '../../src/clock/hlc.ts';
import { legacyStreamSubjects, schemaStreamName, ShardRouter, shardStreamSubjects, streamName } from '../../src/shard/shard-router.ts';

let c: TestCluster | null = null;
let nc: NatsConnection | null = null;
after(async () => {
  await nc?.close();
  await c?.destroy();
});

/**
 * Streams made by a burrow before per-publisher subjects (one subject per stream, the publisher
 * named only in the msgID): what they hold is still read, and the node moves them to the new
 * subjects when it starts, then publishes what waited meanwhile.
 */
test('streams with the subjects of an older burrow: their messages are read, and the node moves them to per-publisher subjects at start', async () => {
  c = await TestCluster.create({ nodes: 1, replicas: 1 });
  await c.start();
  const cl = c.clusterName;
  c.db('n1').exec('CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)');
  await c.waitFor('the schema entry is published', async () => (await c!.status('n1'))?.schema?.pending === 0);
  nc = await connect({ servers: c.node('n1').natsUrl });
  const jsm = await jetstreamManager(nc);
  const shards = 16;
  // Back to the old layout, as an older burrow made it.
  for (const [name, legacy] of [...Array.from({ length: shards }, (_, s) => [streamName(cl, s), legacyStreamSubjects(cl, s)] as const),
    [schemaStreamName(cl), legacyStreamSubjects(cl, 'schema')] as const]) {
    const info = await jsm.streams.info(name);
    await jsm.streams.update(name, { ...info.config, subjects: [...legacy] });
  }
  // A batch published the old way (a row this replica never stamped), on the old subject.
  const router = await ShardRouter.create(shards);
  const key = encodeValues([7n]);
  const shard = router.shardOf('t', key);
  const h = hlcPack(Date.now(), 0);
  const data = encodeBatch({ v: batchVersion, o: 'n1', s: shard, tables: [{ n: 't', k: ['id'], c: ['id', 'v'] }], changes: [{ t: 0, h, d: 0, k: key, r: encodeValues([7n, 'legacy']) }] });
  const hdrs = headers();
  hdrs.set('Nats-Msg-Id', `${cl}.n1.${h}.legacy`);
  await jetstream(nc).publish(legacyStreamSubjects(cl, shard)[0]!, data, { headers: hdrs });
  await c.waitFor('the legacy message is applied', () => c!.query('n1', 'SELECT v FROM t WHERE id = 7').length === 1);
  // A write while the streams have the old subjects waits in the outbox; the restart moves them.
  c.db('n1').prepare('INSERT INTO t VALUES (8, ?)').run('after');
  await c.stopNode('n1');
  c.startNode('n1');
  await c.waitReady(60_000, ['n1']);
  await c.waitFor('the outbox drains', async () => (await c!.status('n1'))?.pending.outboxBatches === 0, 30_000);
  // A fresh connection: the first one lost its server with the node.
  await nc.close();
  nc = await connect({ servers: c.node('n1').natsUrl });
  const jsm2 = await jetstreamManager(nc);
  for (let s = 0; s < shards; s++) assert.deepEqual((await jsm2.streams.info(streamName(cl, s))).config.subjects, shardStreamSubjects(cl, s));
  assert.match(c.logs(400), /stream moves to per-publisher subjects/);
  const s8 = router.shardOf('t', encodeValues([8n]));
  const last = await jsm2.streams.getMessage(streamName(cl, s8), { last_by_subj: `burrow.${cl}.s.${s8}.n1` });
  assert.ok(last && last.seq > 0, 'the waiting batch went out on the per-publisher subject');
  assert.deepEqual(c.query('n1', 'SELECT id, v FROM t ORDER BY id'), [{ id: 7n, v: 'legacy' }, { id: 8n, v: 'after' }]);
});
