import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { connect, nkeyAuthenticator, type NatsConnection } from '@nats-io/transport-node';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { createUser } from '@nats-io/nkeys';
import { pack } from 'msgpackr';
import { TestCluster } from '../helpers/cluster.ts';
import { batchVersion, encodeBatch, type WireBatch } from '../../src/codec/batch-codec.ts';
import { encodeValues } from '../../src/codec/value-codec.ts';
import { Sealer } from '../../src/security/envelope.ts';
import { keyFiles, readSeed } from '../../src/security/keys.ts';

/**
 * Issue 13 on a real 3-node cluster with [security] sign + auth (keys made as burrow keygen makes
 * them): who can connect, and what a member's credentials can and cannot make other nodes apply.
 */
describe('security: signed batches and authenticated NATS (3-node cluster)', () => {
  let c: TestCluster;
  let asN1: NatsConnection;

  const seedOf = (id: string, which: 'sign' | 'nats') => readSeed(keyFiles(path.join(c.dir, id))[which]);

  before(async () => {
    c = await TestCluster.create({ nodes: 3, security: {} });
    await c.start();
    c.execAll('CREATE TABLE users(id INTEGER PRIMARY KEY, name TEXT)');
    await c.waitSchemaSettled();
    // An attacker holding n1's NATS credentials (a stolen nats.nkey), but not n2's signing key.
    asN1 = await connect({ servers: c.node('n1').natsUrl, authenticator: nkeyAuthenticator(new TextEncoder().encode(seedOf('n1', 'nats'))) });
  });

  after(async () => {
    await asN1?.close();
    await c?.destroy();
  });

  test('writes replicate with signing and authentication on; status says so, without secrets', async () => {
    c.db('n1').prepare('INSERT INTO users VALUES (1, ?)').run('ann');
    await c.waitConverged('SELECT * FROM users ORDER BY id');
    const st = await c.status('n2');
    assert.deepEqual({ sign: st.security.sign, auth: st.security.auth }, { sign: true, auth: true });
    assert.ok(st.security.verified > 0, 'n2 verified batches');
    const text = JSON.stringify(st);
    assert.ok(!text.includes(seedOf('n2', 'sign')) && !text.includes(readFileSync(path.join(c.dir, 'cluster.secret'), 'utf8').trim()), 'no seed or secret in status');
  });

  test('local hardening: data folder 0700, keys, database and server config 0600; HTTP refuses a foreign Host header', async () => {
    const mode = (f: string) => statSync(f).mode & 0o777;
    const d = path.join(c.dir, 'n1');
    assert.equal(mode(d), 0o700);
    for (const f of ['node.nkey', 'nats.nkey', 'app.db', 'nats.conf', 'node.pid']) assert.equal(mode(path.join(d, f)), 0o600, f);
    const status = (host: string) => new Promise<number>((resolve, reject) => {
      const u = new URL(c.node('n1').http);
      http.get({ host: u.hostname, port: u.port, path: '/status', headers: { host } }, (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      }).on('error', reject);
    });
    assert.equal(await status(`localhost:${new URL(c.node('n1').http).port}`), 200);
    assert.equal(await status('attacker.example'), 421);
  });

  test('a client without credentials, or with a key that is not a member\'s, cannot connect', async () => {
    await assert.rejects(connect({ servers: c.node('n2').natsUrl, reconnect: false, timeout: 3000 }), /Authorization Violation|AUTHORIZATION_VIOLATION|authorization/i);
    const stranger = createUser();
    await assert.rejects(connect({ servers: c.node('n2').natsUrl, reconnect: false, timeout: 3000, authenticator: nkeyAuthenticator(stranger.getSeed()) }),
      /Authorization Violation|AUTHORIZATION_VIOLATION|authorization/i);
  });

  test('forged, unsigned, tampered and misattributed batches are rejected on every node; nothing of them is applied', async () => {
    const js = jetstream(asN1);
    const shard = 0;
    const subject = `burrow.${c.clusterName}.s.${shard}.n1`; // n1's own subject: the server lets these credentials publish there
    const before = await Promise.all(c.nodes.map(async (n) => (await c.status(n.id)).apply.messagesRejected as number));
    const evil = (o: string): WireBatch => ({ v: batchVersion, o, s: shard, n: 2 ** 40, tables: [{ n: 'users', k: ['id'], c: ['id', 'name'] }],
      changes: [{ t: 0, h: BigInt(Date.now() + 30_000) << 16n, d: 0, k: encodeValues([666n]), r: encodeValues([666n, 'forged']) }] });
    const n1 = new Sealer(c.clusterName, 'n1', seedOf('n1', 'sign'));
    const signedByN1 = n1.seal('batch', encodeBatch(evil('n1')));
    const tampered = Buffer.from(signedByN1);
    tampered[tampered.length - 3] = tampered[tampered.length - 3]! ^ 0x55;
    const bad: [string, Uint8Array][] = [
      ['unsigned, naming n2', encodeBatch(evil('n2'))],
      ['signed by n1, claiming to be n2', n1.seal('batch', encodeBatch(evil('n2')))],
      ['signed with n1\'s NATS key instead of its signing key', new Sealer(c.clusterName, 'n1', seedOf('n1', 'nats')).seal('batch', encodeBatch(evil('n1')))],
      ['n1\'s batch with bytes changed after signing', tampered],
    ];
    // Retried through stream leader elections (no responders meanwhile); the msgID makes a retry a duplicate, not a second message.
    for (const [i, [what, data]] of bad.entries()) {
      await c.waitFor(`JetStream stores ${what}`, async () => Boolean(await js.publish(subject, data, { msgID: `forged-${c.clusterName}-${i}` })), 20_000, 250);
    }
    for (const [i, n] of c.nodes.entries()) {
      await c.waitFor(`${n.id} rejected ${bad.length} messages`, async () => (await c.status(n.id))?.apply.messagesRejected >= before[i]! + bad.length, 20_000, 50);
      const reasons = c.query<{ reason: string }>(n.id, 'SELECT reason FROM __burrow_dead ORDER BY id DESC LIMIT 4').map((r) => r.reason).join(' | ');
      assert.match(reasons, /rejected message: not signed/, n.id);
      assert.match(reasons, /batch says origin n2 but comes from n1/, n.id);
      assert.match(reasons, /bad signature/, n.id);
    }
    for (const n of c.nodes) assert.equal(c.query(n.id, 'SELECT 1 FROM users WHERE id = 666').length, 0, `${n.id}: nothing applied`);
    // The cluster goes on.
    c.db('n2').prepare('INSERT INTO users VALUES (2, ?)').run('bob');
    await c.waitConverged('SELECT * FROM users ORDER BY id');
  });

  test('n1\'s credentials cannot publish as n2: the server refuses n2\'s subjects and the cluster\'s streams cannot be purged or deleted', async () => {
    const js = jetstream(asN1);
    const jsm = await jetstreamManager(asN1);
    const n1 = new Sealer(c.clusterName, 'n1', seedOf('n1', 'sign'));
    const payload = n1.seal('batch', encodeBatch({ v: batchVersion, o: 'n1', s: 0, n: 2 ** 41, tables: [{ n: 'users', k: ['id'], c: ['id', 'name'] }],
      changes: [{ t: 0, h: BigInt(Date.now()) << 16n, d: 0, k: encodeValues([667n]), r: encodeValues([667n, 'as n2']) }] }));
    for (const subject of [`burrow.${c.clusterName}.s.0.n2`, `burrow.${c.clusterName}.schema.n2`]) {
      await assert.rejects(js.publish(subject, payload, { timeout: 3000 }), /permission/i, subject);
    }
    const stored = await jsm.streams.getMessage(`burrow_${c.clusterName}_0`, { last_by_subj: `burrow.${c.clusterName}.s.0.n2` }).catch(() => null);
    assert.ok(!stored || Buffer.compare(Buffer.from(stored.data), Buffer.from(payload)) !== 0, 'nothing stored under n2\'s subject');
    await assert.rejects(jsm.streams.purge(`burrow_${c.clusterName}_0`), /permission/i);
    await assert.rejects(jsm.streams.delete(`burrow_${c.clusterName}_schema`), /permission/i);
    assert.ok((await jsm.streams.info(`burrow_${c.clusterName}_schema`)).state.messages > 0, 'schema stream still there');
    for (const n of c.nodes) assert.equal(c.query(n.id, 'SELECT 1 FROM users WHERE id = 667').length, 0, `${n.id}: nothing applied`);
  });

  test('forged heartbeats (unsigned, or claiming another node) change nothing: counted as refused', async () => {
    const before = await Promise.all(c.nodes.map(async (n) => (await c.status(n.id)).repair.refused as number));
    const n1 = new Sealer(c.clusterName, 'n1', seedOf('n1', 'sign'));
    // A huge acknowledged mark would switch gap detection off for n2 if it were believed.
    asN1.publish(`burrow.${c.clusterName}.hb.n1`, pack({ o: 'n2', u: 2 ** 53 - 1 }));
    asN1.publish(`burrow.${c.clusterName}.hb.n1`, n1.seal('hb', pack({ o: 'n2', u: 2 ** 53 - 1 })));
    asN1.publish(`burrow.${c.clusterName}.hb.n2`, n1.seal('hb', pack({ o: 'n2', u: 2 ** 53 - 1 }))); // refused by the server: never delivered
    await asN1.flush();
    for (const [i, n] of c.nodes.entries()) {
      await c.waitFor(`${n.id} refused both heartbeats`, async () => (await c.status(n.id))?.repair.refused >= before[i]! + 2, 10_000, 50);
      const origins = (await c.status(n.id)).repair.origins as { origin: string; known: number }[];
      for (const v of origins) assert.ok(v.known < 2 ** 40, `${n.id}: origin ${v.origin} not moved by the forgery (${JSON.stringify(v)})`);
    }
  });
});

describe('security: snapshots and restore under member permissions (3-node cluster, sign + auth)', () => {
  let c: TestCluster;

  before(async () => {
    c = await TestCluster.create({ nodes: 3, security: {} });
    await c.start();
    c.execAll('CREATE TABLE items(id INTEGER PRIMARY KEY, v TEXT)');
    await c.waitSchemaSettled();
  });

  after(async () => {
    await c?.destroy();
  });

  test('a wiped node restores from a snapshot a peer takes on request (object store, request subjects); burrow snapshot works', async () => {
    c.db('n1').transaction(() => { for (let i = 1; i <= 200; i++) c.db('n1').prepare('INSERT INTO items VALUES (?, ?)').run(BigInt(i), `v${i}`); })();
    await c.waitConverged('SELECT count(*) n, sum(id) s FROM items');
    await c.stopNode('n3');
    for (const ext of ['', '-wal', '-shm']) rmSync(c.node('n3').db + ext, { force: true });
    c.startNode('n3');
    await c.waitReady(90_000, ['n3']);
    const s3 = await c.status('n3');
    assert.equal(s3.snapshots.restore?.state, 'done', JSON.stringify(s3.snapshots) + c.logs(40));
    await c.waitConverged('SELECT count(*) n, sum(id) s, group_concat(v) g FROM items');
    const made = c.cli(['snapshot', '--node', 'n2', '--json']);
    assert.equal(made.code, 0, made.stderr + c.logs(40));
    const list = c.cli(['snapshots', '--json']);
    assert.ok((JSON.parse(list.stdout).snapshots as unknown[]).length >= 2, list.stdout);
  });
});

/** A CA and one certificate for 127.0.0.1/localhost (clients and servers), made with openssl. */
function makeCerts(dir: string): { cert: string; key: string; ca: string } {
  const run = (args: string[]) => {
    const r = spawnSync('openssl', args, { cwd: dir, encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`openssl ${args.join(' ')}: ${r.stderr}`);
  };
  writeFileSync(path.join(dir, 'ext.cnf'), 'subjectAltName = IP:127.0.0.1, DNS:localhost\nextendedKeyUsage = serverAuth, clientAuth\n');
  run(['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'ca-key.pem', '-out', 'ca.pem', '-days', '2', '-subj', '/CN=burrow test CA']);
  run(['req', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'node-key.pem', '-out', 'node.csr', '-subj', '/CN=127.0.0.1']);
  run(['x509', '-req', '-in', 'node.csr', '-CA', 'ca.pem', '-CAkey', 'ca-key.pem', '-CAcreateserial', '-out', 'node.pem', '-days', '2', '-extfile', 'ext.cnf']);
  return { cert: path.join(dir, 'node.pem'), key: path.join(dir, 'node-key.pem'), ca: path.join(dir, 'ca.pem') };
}

describe('security: TLS on client and route connections (3-node cluster)', () => {
  let c: TestCluster;
  let certDir: string;

  before(async () => {
    certDir = mkdtempSync(path.join(os.tmpdir(), 'burrow-tls-'));
    c = await TestCluster.create({ nodes: 3, security: { tls: makeCerts(certDir) } });
    await c.start();
  });

  after(async () => {
    await c?.destroy();
    rmSync(certDir, { recursive: true, force: true });
  });

  test('replicates with TLS everywhere; a client without TLS is refused', async () => {
    c.execAll('CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)');
    c.db('n3').prepare('INSERT INTO t VALUES (1, ?)').run('over tls');
    await c.waitConverged('SELECT * FROM t');
    const st = await c.status('n1');
    assert.deepEqual({ tls: st.security.tls, sign: st.security.sign }, { tls: true, sign: true });
    const conf = readFileSync(path.join(c.dir, 'n1', 'nats.conf'), 'utf8');
    assert.match(conf, /^tls \{ cert_file/m);
    assert.match(conf, /^ {2}tls \{ cert_file/m, 'routes use TLS');
    await assert.rejects(connect({ servers: c.node('n1').natsUrl, reconnect: false, timeout: 3000, tls: null as never }), /tls|TLS|secure|authorization/i);
  });
});
