import { mkdirSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { jetstream } from '@nats-io/jetstream';
import { Objm } from '@nats-io/obj';
import { TestCluster } from '../helpers/cluster.ts';
import { bucketName } from '../../src/snapshot/store.ts';
import { streamName } from '../../src/shard/shard-router.ts';

/**
 * Snapshots and joining (membership issue), on real processes: n1..n3 run with data; n4 is in
 * the config but starts later with an empty folder and must get schema and rows by itself.
 * Then a corrupt snapshot (bytes that do not match its manifest's SHA-256) is refused and the
 * previous one used.
 */
for (const external of [false, true]) describe(`snapshots and joining with an empty folder${external ? ' (external NATS cluster: [nats] urls, three nats-servers)' : ''}`, () => {
  let c: TestCluster;
  let nc: NatsConnection;

  before(async () => {
    c = await TestCluster.create({ nodes: 5, shards: 4, externalNats: external ? 3 : undefined });
    for (const id of ['n1', 'n2', 'n3']) c.startNode(id);
    await c.waitReady(60_000, ['n1', 'n2', 'n3']);
    nc = await connect({ servers: c.node('n1').natsUrl });
  });

  after(async () => {
    await nc?.close();
    await c?.destroy();
  });

  const ids3 = ['n1', 'n2', 'n3'];

  test('a node started with an empty folder gets the schema and every row (a peer takes the snapshot), then replicates', async () => {
    for (const id of ids3) c.sqlite3(id, "CREATE TABLE IF NOT EXISTS people(id INTEGER PRIMARY KEY, name TEXT, email TEXT UNIQUE); CREATE INDEX IF NOT EXISTS people_name ON people(name); CREATE TABLE IF NOT EXISTS kv(k TEXT PRIMARY KEY COLLATE NOCASE, v) WITHOUT ROWID;");
    await c.waitFor('n1..n3 capture both tables', async () => (await Promise.all(ids3.map((id) => c.status(id)))).every((s) => s?.capture.tables.length === 2));
    c.sqlite3('n1', "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 500) INSERT INTO people SELECT i, 'p' || i, i || '@x' FROM n;");
    c.sqlite3('n2', "INSERT INTO kv VALUES ('Alpha', x'ff00'), ('beta', 2);");
    await c.waitConverged('SELECT count(*) n, sum(id) s FROM people', 30_000, ids3);
    c.sqlite3('n3', 'DELETE FROM people WHERE id <= 10;');
    await c.waitConverged('SELECT count(*) n, sum(id) s FROM people', 30_000, ids3);
    await c.waitConverged('SELECT k, hex(v) FROM kv ORDER BY k', 30_000, ids3);
    // No snapshot exists yet: n4 asks a peer for one.
    const none = c.cli(['snapshots']);
    assert.equal(none.code, 0, none.stderr);
    assert.match(none.stdout, /no snapshots yet/);
    c.startNode('n4');
    await c.waitReady(120_000, ['n4']);
    const s4 = await c.status('n4');
    assert.equal(s4.snapshots.restore?.state, 'done', JSON.stringify(s4.snapshots));
    assert.match(s4.snapshots.restore.reason, /new replica/);
    assert.deepEqual(s4.capture.tables, ['kv', 'people']);
    assert.equal(c.query('n4', "SELECT count(*) AS n FROM sqlite_schema WHERE name = 'people_name'")[0]!.n, 1n);
    await c.waitConverged('SELECT count(*) n, sum(id) s FROM people', 30_000, [...ids3, 'n4']);
    // Writes after the join flow both ways.
    c.sqlite3('n4', "INSERT INTO people VALUES (1000, 'from n4', 'n4@x'); DELETE FROM kv WHERE k = 'BETA';");
    c.sqlite3('n3', "UPDATE people SET name = 'renamed' WHERE id = 20;");
    await c.waitConverged('SELECT id, name, email FROM people ORDER BY id', 30_000, [...ids3, 'n4']);
    await c.waitConverged('SELECT k, hex(v) FROM kv ORDER BY k', 30_000, [...ids3, 'n4']);
    const list = c.cli(['snapshots', '--json']);
    assert.equal(list.code, 0, list.stderr);
    const snaps = JSON.parse(list.stdout).snapshots as { name: string; node: string; sha256: string }[];
    assert.equal(snaps.length, 1, list.stdout);
    assert.notEqual(snaps[0]!.node, 'n4');
    assert.match(snaps[0]!.sha256, /^[0-9a-f]{64}$/);
  });

  test('burrow snapshot writes one; a corrupt newer one is refused (SHA-256) and the previous one restores the next new node', async () => {
    const made = c.cli(['snapshot', '--node', 'n2', '--json']);
    assert.equal(made.code, 0, made.stderr + c.logs());
    const m = JSON.parse(made.stdout) as { name: string; node: string; bytes: number; tables: { name: string; rows: number }[] };
    assert.equal(m.node, 'n2');
    assert.deepEqual(m.tables.map((t) => t.name), ['kv', 'people']);
    assert.equal(BigInt(m.tables.find((t) => t.name === 'people')!.rows), c.query<{ n: bigint }>('n2', 'SELECT count(*) AS n FROM people')[0]!.n);
    // A newer object with n2's manifest (renamed, newer) but other bytes: corrupt.
    const os = await new Objm(jetstream(nc)).open(bucketName(c.clusterName));
    const info = (await os.list()).find((i) => i.name === m.name)!;
    const manifest = JSON.parse(info.metadata!.manifest!) as Record<string, unknown>;
    const badName = `snap-29990101T000000.000Z-n2`;
    const bytes = new Uint8Array(m.bytes).fill(7);
    await os.put({ name: badName, metadata: { manifest: JSON.stringify({ ...manifest, name: badName, atMs: Date.parse('2999-01-01') }) } },
      new ReadableStream({ start(ctl) { ctl.enqueue(bytes); ctl.close(); } }));
    c.sqlite3('n1', "INSERT INTO people VALUES (2000, 'after the snapshot', 'late@x');");
    c.startNode('n5');
    await c.waitReady(120_000, ['n5']);
    const s5 = await c.status('n5');
    const r = s5.snapshots.restore;
    assert.equal(r.state, 'done', JSON.stringify(r));
    assert.equal(r.snapshot, m.name);
    assert.ok(r.refused.some((x: { name: string; problem: string }) => x.name === badName && /corrupt: SHA-256/.test(x.problem)), JSON.stringify(r.refused));
    await c.waitConverged('SELECT id, name, email FROM people ORDER BY id', 30_000);
    await c.waitConverged('SELECT k, hex(v) FROM kv ORDER BY k', 30_000);
    const sum = c.checksum();
    assert.equal(sum.code, 0, JSON.stringify(sum.out));
    const st = c.cli(['status']);
    assert.equal(st.code, 0, st.stderr);
    assert.match(st.stdout, /^members n1, n2, n3, n4, n5$/m);
    assert.match(st.stdout, /^newest snapshot snap-2999/m, 'the newest object in the bucket (the corrupt one is listed by its manifest)');
  });
});

/**
 * Membership from the config, live: n4 is added to cluster.toml, the running nodes get SIGHUP (one
 * only after n4 wrote: what it refused meanwhile is applied on its reload), n4 starts with an
 * empty folder and joins (its writes are accepted: it is a member now); a bad
 * file on SIGHUP is refused with one error and the running config kept; n4 removed and stopped,
 * the others go on.
 */
describe('membership by SIGHUP', () => {
  let c: TestCluster;

  before(async () => {
    c = await TestCluster.create({ nodes: 4, shards: 2 });
    c.writeConfig(['n1', 'n2', 'n3']);
    for (const id of ['n1', 'n2', 'n3']) c.startNode(id);
    await c.waitReady(60_000, ['n1', 'n2', 'n3']);
  });

  after(async () => {
    await c?.destroy();
  });

  test('a bad file is refused and kept out; adding n4 by SIGHUP lets it join empty; removing it holds nothing back', async () => {
    const ids3 = ['n1', 'n2', 'n3'];
    for (const id of ids3) c.sqlite3(id, 'CREATE TABLE IF NOT EXISTS t(id INTEGER PRIMARY KEY, v TEXT);');
    await c.waitFor('t captured', async () => (await Promise.all(ids3.map((id) => c.status(id)))).every((s) => s?.capture.tables.includes('t')));
    c.sqlite3('n1', "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 200) INSERT INTO t SELECT i, 'v' || i FROM n;");
    await c.waitConverged('SELECT count(*) n FROM t', 30_000, ids3);

    // A broken file: refused, one error line, running config kept.
    c.writeConfig(['n1', 'n2', 'n3'], '\n[cluster.nope\n');
    c.hup('n1');
    await c.waitFor('n1 reports the refused reload', async () => (await c.status('n1'))?.config.lastReload?.ok === false);
    const bad = (await c.status('n1')).config.lastReload.message as string;
    assert.match(bad, /config reload failed, keeping the running config: .*cluster\.toml: not valid TOML/);
    assert.equal((await c.status('n1')).ready, true);

    // n4 is added; n3 gets its SIGHUP only after n4 has started and written (SIGHUPs out of order).
    c.writeConfig(['n1', 'n2', 'n3', 'n4']);
    for (const id of ['n1', 'n2']) c.hup(id);
    await c.waitFor('n1, n2 have n4 as a member', async () => (await Promise.all(['n1', 'n2'].map((id) => c.status(id)))).every((s) => s?.members.includes('n4')));
    c.startNode('n4');
    await c.waitReady(120_000, ['n4']);
    assert.equal((await c.status('n4')).snapshots.restore?.state, 'done');
    c.sqlite3('n4', "INSERT INTO t VALUES (1000, 'written on n4');");
    await c.waitFor('n3 refused n4\'s batch (not a member there yet)', async () => (await c.status('n3'))?.apply.messagesRejected >= 1);
    c.hup('n3');
    // Its reload adds n4: the refused batch is applied then, and its dead letter goes.
    await c.waitConverged('SELECT count(*) n, sum(id) s FROM t', 30_000);
    await c.waitFor('n3 holds no dead letter', async () => (await c.status('n3'))?.deadLetters === 0);
    assert.equal((await c.status('n1')).apply.messagesRejected, 0);

    // Removal: out of the file, SIGHUP, stop it. The others keep replicating.
    c.writeConfig(ids3);
    for (const id of ids3) c.hup(id);
    await c.waitFor('n4 no longer a member', async () => (await Promise.all(ids3.map((id) => c.status(id)))).every((s) => s && !s.members.includes('n4')));
    // Its messages still in flight are accepted alike everywhere for history_s (node/membership.ts).
    assert.deepEqual((await c.status('n1')).formerMembers.map((f: { id: string }) => f.id), ['n4']);
    await c.stopNode('n4');
    c.sqlite3('n2', "WITH RECURSIVE n(i) AS (SELECT 2000 UNION ALL SELECT i + 1 FROM n WHERE i < 2300) INSERT INTO t SELECT i, 'after removal' FROM n;");
    await c.waitConverged('SELECT count(*) n, sum(id) s FROM t', 30_000, ids3);
    assert.equal(c.checksum().code, 0);

    // Its server leaves the JetStream cluster (peer removal); the stream groups heal on n1..n3.
    await c.waitFor('n4 peer-removed', async () => {
      const s = await c.status('n1');
      return s?.jetstreamPeers?.removals.some((r: { node: string; state: string }) => r.node === 'n4' && r.state === 'removed');
    }, 90_000, 500).catch(async (err) => {
      throw new Error(`${(err as Error).message}\n${JSON.stringify((await Promise.all(ids3.map((id) => c.status(id)))).map((x) => x?.jetstreamPeers))}`);
    });
    const nc = await connect({ servers: c.node('n1').natsUrl });
    try {
      await c.waitFor('every shard stream on n1..n3 only, all current', async () => {
        for (const shard of [0, 1]) {
          const r = await nc.request(`$JS.API.STREAM.INFO.${streamName(c.clusterName, shard)}`, new Uint8Array(0), { timeout: 5000 });
          const cl = (JSON.parse(new TextDecoder().decode(r.data)) as { cluster?: { leader?: string; replicas?: { name: string; current: boolean }[] } }).cluster;
          const names = [cl?.leader, ...(cl?.replicas ?? []).map((x) => x.name)].sort();
          if (JSON.stringify(names) !== JSON.stringify(ids3) || !(cl?.replicas ?? []).every((x) => x.current)) return false;
        }
        return true;
      }, 60_000, 500);
    } finally {
      await nc.close();
    }

    // Added back: JetStream refuses its old peer name for good, so its server rejoins as a new peer.
    c.writeConfig(['n1', 'n2', 'n3', 'n4']);
    for (const id of ids3) c.hup(id);
    c.startNode('n4');
    await c.waitFor('n4 rejoined JetStream as n4~1', async () => (await c.status('n4'))?.jetstreamPeers?.server === 'n4~1', 90_000, 500);
    await c.waitReady(120_000, ['n4']);
    c.sqlite3('n4', "INSERT INTO t VALUES (5000, 'n4 is back');");
    await c.waitConverged('SELECT count(*) n, sum(id) s FROM t', 60_000);
    assert.equal(c.checksum().code, 0);
  });
});

/**
 * A restore under a live application, killed halfway: n4's app has the database open and writes
 * before, during and after n4's restore; n4 is SIGKILLed while merging (never ready before),
 * restarts, redoes the restore, and every app write reaches every node. Then the bucket is
 * deleted under the running cluster: the next
 * listing or snapshot creates it again (one retry on a fresh handle).
 */
describe('restore under an application, SIGKILLed halfway; the bucket lost', () => {
  let c: TestCluster;
  let nc: NatsConnection;
  const ids3 = ['n1', 'n2', 'n3'];

  before(async () => {
    c = await TestCluster.create({ nodes: 4, shards: 2, env: { n4: { BURROW_RESTORE_CHUNK_CHANGES: '50' } } });
    for (const id of ids3) c.startNode(id);
    await c.waitReady(60_000, ids3);
    nc = await connect({ servers: c.node('n1').natsUrl });
  });

  after(async () => {
    await nc?.close();
    await c?.destroy();
  });

  test('killed while merging, it restores again at restart; the app writes of the whole time are everywhere', async () => {
    const ddl = 'CREATE TABLE IF NOT EXISTS big(id INTEGER PRIMARY KEY, pad BLOB);';
    for (const id of ids3) c.sqlite3(id, ddl);
    await c.waitFor('big captured', async () => (await Promise.all(ids3.map((id) => c.status(id)))).every((s) => s?.capture.tables.includes('big')));
    c.sqlite3('n1', 'WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 30000) INSERT INTO big SELECT i, randomblob(100) FROM n;');
    await c.waitConverged('SELECT count(*) n FROM big', 60_000, ids3);
    const made = c.cli(['snapshot', '--node', 'n1']);
    assert.equal(made.code, 0, made.stderr);
    // n4's application created its database (same schema) and keeps it open, writing.
    mkdirSync(c.node('n4').dataDir, { recursive: true });
    c.sqlite3('n4', ddl);
    const app = c.db('n4');
    let written = 0;
    const appWrite = () => {
      app.prepare('INSERT INTO big VALUES (?, x\'aa\')').run(BigInt(1_000_000 + written));
      written++;
    };
    for (let i = 0; i < 20; i++) appWrite();
    c.startNode('n4');
    let sawRestoring = false;
    await c.waitFor('n4 merging the snapshot', async () => {
      appWrite();
      const s = await c.status('n4');
      assert.notEqual(s?.ready, true, 'n4 must not be ready before its restore is done');
      sawRestoring = s?.snapshots.restore?.state === 'restoring' && s.snapshots.restore.changes > 0;
      return sawRestoring;
    }, 60_000, 10);
    await c.killNode('n4');
    for (let i = 0; i < 20; i++) appWrite();
    c.startNode('n4');
    await c.waitFor('n4 ready again', async () => {
      appWrite();
      return (await c.status('n4'))?.ready === true;
    }, 120_000, 20);
    const s4 = await c.status('n4');
    assert.match(s4.snapshots.restore.reason, /cut short/);
    for (let i = 0; i < 20; i++) appWrite();
    await c.waitConverged('SELECT count(*) n, sum(id) s FROM big', 60_000);
    assert.deepEqual(c.query('n1', 'SELECT count(*) AS n FROM big WHERE id >= 1000000'), [{ n: BigInt(written) }]);
    assert.equal(c.checksum().code, 0);
  });

  test('the bucket deleted under a running cluster is created again at its next use', async () => {
    const bucketStream = `OBJ_${bucketName(c.clusterName)}`;
    const r = await nc.request(`$JS.API.STREAM.DELETE.${bucketStream}`, new Uint8Array(0), { timeout: 10_000 });
    assert.match(r.string(), /"success":\s*true/);
    // Listing opens the bucket again (created empty).
    const list = c.cli(['snapshots']);
    assert.equal(list.code, 0, list.stderr);
    assert.match(list.stdout, /no snapshots yet/);
    const made = c.cli(['snapshot', '--node', 'n2', '--json']);
    assert.equal(made.code, 0, made.stderr);
    const again = c.cli(['snapshots', '--json']);
    assert.deepEqual((JSON.parse(again.stdout).snapshots as { node: string }[]).map((m) => m.node), ['n2']);
  });
});
