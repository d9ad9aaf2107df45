import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { pack } from 'msgpackr';
import BetterSqlite3 from 'better-sqlite3';
import { TestCluster, freePort, repoRoot, stringify } from '../helpers/cluster.ts';
import { batchVersion, encodeBatch } from '../../src/codec/batch-codec.ts';
import { encodeValues } from '../../src/codec/value-codec.ts';
import { publishedChanges } from '../helpers/published.ts';

const binPath = path.join(repoRoot, 'bin', 'burrow.js');

/**
 * Issue 5: conflicts and bad input never stall a shard and never lose data — each case on a real
 * 3-node cluster (real nats-server processes, real SQLite files, outside writers).
 */
describe('hardening (3-node cluster)', () => {
  let c: TestCluster;
  let nc: NatsConnection;

  before(async () => {
    c = await TestCluster.create({ nodes: 3 });
    await c.start();
    nc = await connect({ servers: c.node('n1').natsUrl });
  });

  after(async () => {
    await nc?.close();
    await c?.destroy();
  });

  test('secondary UNIQUE conflict: the (hlc, node) winner keeps the value everywhere, losers are shadowed and land in __burrow_conflicts, the shard keeps flowing', async () => {
    c.execAll('CREATE TABLE users(id INTEGER PRIMARY KEY, email TEXT NOT NULL UNIQUE, name TEXT)');
    await c.waitFor('every node captures users', async () => (await Promise.all(c.nodes.map((n) => c.status(n.id))))
      .every((st) => st?.capture?.tables?.includes('users')));
    // n2 and n3 are stopped so all three inserts commit locally before any of them is seen elsewhere.
    await Promise.all([c.stopNode('n2'), c.stopNode('n3')]);
    c.db('n1').prepare('INSERT INTO users VALUES (1, ?, ?)').run('x@example.com', 'one on n1');
    c.db('n2').prepare('INSERT INTO users VALUES (2, ?, ?)').run('x@example.com', 'two on n2');
    c.db('n3').prepare('INSERT INTO users VALUES (3, ?, ?)').run('x@example.com', 'three on n3');
    c.startNode('n2');
    c.startNode('n3');
    await c.waitReady();
    const rows = await c.waitConverged('SELECT id, email, name FROM users ORDER BY id') as { id: string }[];
    assert.equal(rows.length, 1, `one row keeps the unique value: ${JSON.stringify(rows)}`);
    // The survivor is the (hlc, node) maximum of the three writes; the others are shadowed: their
    // clock stays live (deleted = 0) with the hidden image, identical on every node.
    await c.waitFor('every node holds the same three clocks', () => c.nodes.every((n) => c.clocks(n.id, 'users').length === 3
      && stringify(c.clocks(n.id, 'users')) === stringify(c.clocks('n1', 'users'))));
    const clocks = c.clocks('n1', 'users');
    assert.deepEqual(clocks.map((k) => k.key), [1n, 2n, 3n], 'all three keys have a clock entry');
    // The strongest of the three published inserts, by the test's own (hlc, node) order.
    await c.waitDrained();
    const inserts = publishedChanges(c).filter((ch) => ch.table === 'users');
    assert.equal(inserts.length, 3, 'three inserts were published');
    const strongest = inserts.reduce((a, b) => (b.hlc > a.hlc || (b.hlc === a.hlc && b.node > a.node) ? b : a));
    assert.equal(`${strongest.row!.id}n`, rows[0]!.id, `the (hlc, node) winner (${strongest.node}) keeps the unique value`);
    const best = clocks.find((k) => k.key === strongest.row!.id)!;
    for (const k of clocks) assert.deepEqual([k.deleted, k.shadowed], [0n, k === best ? 0n : 1n], `key ${k.key}`);
    for (const n of c.nodes) {
      const conflicts = c.query<{ loser_row: string; winner_row: string; unique_columns: string }>(n.id, 'SELECT * FROM __burrow_conflicts WHERE tbl = ?', 'users');
      assert.ok(conflicts.length >= 1, `${n.id} recorded the conflict`);
      assert.equal(conflicts[0]!.unique_columns, 'email');
      assert.match(conflicts[0]!.loser_row, /x@example\.com/);
    }
    assert.equal(c.checksum().code, 0, 'checksums equal');
    // The shard keeps flowing: later writes to the same table replicate.
    c.db('n2').prepare('INSERT INTO users VALUES (4, ?, ?)').run('y@example.com', 'four');
    await c.waitConverged("SELECT id FROM users WHERE email = 'y@example.com'");
    const st = await c.status('n2');
    assert.ok(st.conflicts >= 1, 'status counts conflicts');
  });

  test('foreign keys: a child arriving before its parent applies; foreign_key_check is clean once the parent lands', async () => {
    c.execAll(`CREATE TABLE parent(id INTEGER PRIMARY KEY, name TEXT);
      CREATE TABLE child(id INTEGER PRIMARY KEY, parent_id INTEGER NOT NULL REFERENCES parent(id) ON DELETE CASCADE, v TEXT)`);
    // The child is written (by the sqlite3 shell: no FK enforcement by default) well before its parent.
    c.sqlite3('n1', "INSERT INTO child VALUES (10, 1, 'orphan for now')");
    await c.waitFor('child on n2 and n3', () => ['n2', 'n3'].every((id) => c.query(id, 'SELECT 1 FROM child WHERE id = 10').length === 1));
    c.db('n1').prepare('INSERT INTO parent VALUES (1, ?)').run('late parent');
    await c.waitConverged('SELECT p.id, c.id AS cid FROM parent p JOIN child c ON c.parent_id = p.id');
    for (const n of c.nodes) assert.deepEqual(c.query(n.id, 'PRAGMA foreign_key_check'), [], `${n.id}: foreign_key_check clean`);
    // A cascade on a node whose application enforces foreign keys replicates as ordinary deletes.
    const fkConn = c.sqlite3('n2', 'PRAGMA foreign_keys = ON; DELETE FROM parent WHERE id = 1; SELECT count(*) FROM child;');
    assert.equal(fkConn.trim(), '0');
    await c.waitConverged('SELECT (SELECT count(*) FROM parent) AS p, (SELECT count(*) FROM child) AS c');
    for (const n of c.nodes) assert.deepEqual(c.query(n.id, 'SELECT count(*) AS n FROM child'), [{ n: 0n }]);
    for (const n of c.nodes) assert.equal((await c.status(n.id)).deadLetters, 0, `${n.id}: nothing dead-lettered`);
  });

  test('changes made under a schema a receiver has not folded yet wait (status says why), other tables flow, and apply once the schema arrives', async () => {
    c.execAll('CREATE TABLE flowing(id INTEGER PRIMARY KEY, v TEXT)');
    await c.waitFor('every node\'s schema entries ordered', async () => (await Promise.all(c.nodes.map((n) => c.status(n.id))))
      .every((st) => st?.schema?.pending === 0 && st.capture.tables.includes('flowing')), 20_000, 50);
    // The schema stream refuses every entry for a while (as when it has no quorum): n1's DDL waits
    // in its outbox while its data is published.
    const stream = `burrow_${c.clusterName}_schema`;
    const cfg = JSON.parse(new TextDecoder().decode((await nc.request(`$JS.API.STREAM.INFO.${stream}`, new Uint8Array(0), { timeout: 5000 })).data)).config;
    const update = async (maxMsgSize: number) => {
      const r = await nc.request(`$JS.API.STREAM.UPDATE.${stream}`, new TextEncoder().encode(JSON.stringify({ ...cfg, max_msg_size: maxMsgSize })), { timeout: 5000 });
      assert.match(new TextDecoder().decode(r.data), /"config"/);
    };
    await update(16);
    try {
      c.db('n1').exec('CREATE TABLE late(id INTEGER PRIMARY KEY, a TEXT, b TEXT)');
      const ins = c.db('n1').prepare('INSERT INTO late VALUES (?, ?, ?)');
      c.db('n1').transaction(() => {
        for (let i = 1; i <= 50; i++) ins.run(BigInt(i), `a${i}`, `b${i}`);
      })();
      await c.waitFor('n3 reports 50 changes waiting for n1\'s schema entry', async () => {
        const st = await c.status('n3');
        return st?.waiting?.changes === 50 && st.waiting.tables.some((t: { table: string; reason: string }) => t.table === 'late' && /waits for the schema: needs schema entry \d+ of n1/.test(t.reason));
      });
      // Other tables (and the same shards) keep flowing meanwhile.
      c.db('n1').prepare('INSERT INTO flowing VALUES (1, ?)').run('still flowing');
      await c.waitConverged('SELECT * FROM flowing');
      assert.ok(((await c.status('n1'))?.schema?.publish?.retries ?? 0) > 0, 'n1 keeps retrying its schema entry');
    } finally {
      await update(8 * 1024 * 1024);
    }
    const rows = await c.waitConverged('SELECT count(*) AS n, min(a) AS a, max(b) AS b FROM late', 30_000);
    assert.deepEqual(rows, [{ n: '50n', a: 'a1', b: 'b9' }]);
    await c.waitFor('n3 has nothing waiting', async () => (await c.status('n3'))?.waiting?.changes === 0);
    assert.equal(c.checksum().code, 0);
  });

  test('a change that can never apply (a CHECK its writer switched off) is dead-lettered with its reason, visible in status; the rest flows', async () => {
    c.db('n1').exec('CREATE TABLE checked(id INTEGER PRIMARY KEY, v INTEGER CHECK (v > 0), w TEXT)');
    await c.waitConverged("SELECT sql FROM sqlite_schema WHERE name = 'checked'");
    const before = await Promise.all(['n2', 'n3'].map(async (id) => (await c.status(id)).deadLetters as number));
    // An application that switched CHECK constraints off on its connection writes a row they refuse.
    const app = new BetterSqlite3(c.node('n1').db, { timeout: 10_000 });
    try {
      app.pragma('ignore_check_constraints = ON');
      app.prepare('INSERT INTO checked VALUES (1, -5, ?)').run('bad v');
    } finally {
      app.close();
    }
    c.db('n1').prepare('INSERT INTO checked VALUES (3, 7, ?)').run('fine');
    for (const [i, id] of ['n2', 'n3'].entries()) {
      await c.waitFor(`${id} dead-letters the change`, async () => (await c.status(id)).deadLetters === before[i]! + 1);
      await c.waitFor(`${id} applied the good row`, () => c.query(id, 'SELECT id FROM checked').length === 1);
      const st = await c.status(id);
      const reasons = st.deadLettersRecent.filter((d: { table: string }) => d.table === 'checked').map((d: { reason: string }) => d.reason).join(' | ');
      assert.match(reasons, /CHECK constraint failed/);
      assert.deepEqual(c.query(id, 'SELECT id FROM checked'), [{ id: 3n }], `${id} applied the good row`);
    }
  });

  test('malformed and foreign messages on a burrow subject are rejected, dead-lettered and counted; nodes keep running and replicating', async () => {
    const js = jetstream(nc);
    const subject = `burrow.${c.clusterName}.s.0.n2`; // the server checks nothing here: no [security] auth in this cluster
    const pids = c.nodes.map((n) => n.pid);
    const before = await Promise.all(c.nodes.map(async (n) => (await c.status(n.id)).apply.messagesRejected as number));
    const table = { n: 'users', k: ['id'], c: ['id', 'email', 'name'] };
    const change = { t: 0, h: 1n << 40n, d: 0 as const, k: encodeValues([99n]), r: encodeValues([99n, 'evil@example.com', 'intruder']) };
    const bad: [string, Uint8Array][] = [
      ['garbage bytes', new Uint8Array([0xde, 0xad, 0xbe, 0xef, 0x00, 0xff])],
      ['wrong version', pack({ v: 99, o: 'n1', s: 0, tables: [table], changes: [change] })],
      ['missing fields', pack({ v: batchVersion, o: 'n1' })],
      ['non-member origin', encodeBatch({ v: batchVersion, o: 'intruder', s: 0, tables: [table], changes: [change] })],
      ['wrong shard', encodeBatch({ v: batchVersion, o: 'n2', s: 5, tables: [table], changes: [change] })],
    ];
    // Retried through stream leader elections (no responders meanwhile); the msgID makes a retry a duplicate, not a second message.
    for (const [i, [what, data]] of bad.entries()) {
      await c.waitFor(`JetStream stores ${what}`, async () => Boolean(await js.publish(subject, data, { msgID: `hardening-${c.clusterName}-${i}` })), 20_000, 250);
    }
    for (const [i, n] of c.nodes.entries()) {
      await c.waitFor(`${n.id} rejected ${bad.length} messages`, async () => (await c.status(n.id))?.apply.messagesRejected === before[i]! + bad.length);
      const reasons = (c.query<{ reason: string }>(n.id, 'SELECT reason FROM __burrow_dead ORDER BY id DESC LIMIT 5')).map((r) => r.reason).join(' | ');
      assert.match(reasons, /rejected message: malformed/);
      assert.match(reasons, /origin node "intruder" is not a member of this cluster/);
      assert.match(reasons, /batch says shard 5 but arrived on shard 0/);
    }
    for (const n of c.nodes) assert.equal(c.query(n.id, 'SELECT 1 FROM users WHERE id = 99').length, 0, `${n.id}: nothing applied from the bad messages`);
    assert.deepEqual(c.nodes.map((n) => n.pid), pids, 'no node restarted');
    c.db('n3').prepare('INSERT INTO users VALUES (5, ?, ?)').run('z@example.com', 'after the garbage');
    await c.waitConverged('SELECT id FROM users WHERE id = 5');
  });

  test('tables burrow must not break: FTS5/rtree skipped with a warning, WITHOUT ROWID composite keys work, no-PK tables replicate by rowid with a warning', async () => {
    c.execAll(`CREATE VIRTUAL TABLE docs USING fts5(body);
      CREATE VIRTUAL TABLE boxes USING rtree(id, minx, maxx);
      CREATE TABLE pairs(a TEXT, b INTEGER, v TEXT, PRIMARY KEY (a, b)) WITHOUT ROWID;
      CREATE TABLE nokey(v TEXT)`);
    c.db('n1').prepare('INSERT INTO docs(body) VALUES (?)').run('local full-text index');
    c.db('n1').prepare('INSERT INTO boxes VALUES (1, 0, 1)').run();
    c.db('n2').prepare('INSERT INTO pairs VALUES (?, ?, ?)').run('k', 1n, 'one');
    c.db('n3').prepare('INSERT INTO pairs VALUES (?, ?, ?)').run('k', 2n, 'two');
    c.db('n1').prepare('INSERT INTO nokey(v) VALUES (?)').run('by rowid');
    await c.waitConverged('SELECT * FROM pairs ORDER BY a, b');
    await c.waitConverged('SELECT rowid, v FROM nokey');
    const st = await c.status('n2');
    const skipped = st.capture.skipped.map((s: { name: string; reason: string }) => `${s.name}: ${s.reason}`).join('\n');
    assert.match(skipped, /^docs: virtual table/m);
    assert.match(skipped, /^boxes: virtual table/m);
    assert.match(skipped, /^docs_data: shadow table/m);
    assert.ok(st.capture.tables.includes('pairs') && st.capture.tables.includes('nokey'));
    assert.deepEqual(c.query('n2', 'SELECT count(*) AS n FROM docs'), [{ n: 0n }], 'virtual tables stay local');
    // Log lines are JSON (pino): find them by message and fields.
    const log = readFileSync(c.node('n2').logFile, 'utf8').split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as Record<string, string>);
    assert.ok(log.some((l) => l.msg === 'table not captured' && l.table === 'docs' && /^virtual table/.test(l.reason ?? '')), 'docs not captured, with the reason');
    assert.ok(log.some((l) => /^table has no PRIMARY KEY/.test(l.msg ?? '') && l.table === 'nokey'), 'nokey warned about');
  });

  test('application triggers: the documented guard fires them only on the origin (no double effects); unguarded triggers fire again on every receiver', async () => {
    // Audit rows get random keys (as rows written on several nodes must never share generated keys).
    c.execAll(`CREATE TABLE orders(id INTEGER PRIMARY KEY, item TEXT);
      CREATE TABLE audit(id INTEGER PRIMARY KEY, order_id INTEGER, note TEXT);
      CREATE TRIGGER orders_audit AFTER INSERT ON orders
        WHEN (SELECT applying FROM __burrow_state WHERE id = 1) = 0
        BEGIN INSERT INTO audit(id, order_id, note) VALUES (abs(random()), NEW.id, 'created'); END;
      CREATE TABLE orders_naive(id INTEGER PRIMARY KEY, item TEXT);
      CREATE TABLE audit_naive(id INTEGER PRIMARY KEY, order_id INTEGER, note TEXT);
      CREATE TRIGGER orders_naive_audit AFTER INSERT ON orders_naive
        BEGIN INSERT INTO audit_naive(id, order_id, note) VALUES (abs(random()), NEW.id, 'created'); END;`);
    c.db('n1').prepare('INSERT INTO orders VALUES (1, ?)').run('book');
    c.db('n2').prepare('INSERT INTO orders VALUES (2, ?)').run('pen');
    // Guarded: exactly one audit row per order on every node, and the audit table converges.
    const audit = await c.waitConverged('SELECT id, order_id, note FROM audit ORDER BY order_id') as { order_id: string }[];
    assert.deepEqual(audit.map((a) => a.order_id), ['1n', '2n']);
    c.db('n1').prepare('INSERT INTO orders_naive VALUES (1, ?)').run('book');
    // Unguarded: each receiver's trigger fires again on the applied order — a second, local-only
    // audit row next to the replicated one (the documented hazard); the origin has one.
    await c.waitFor('receivers have the replicated audit row and their own', () => ['n2', 'n3'].every((id) =>
      c.query<{ n: bigint }>(id, 'SELECT count(*) AS n FROM audit_naive')[0]!.n === 2n));
    await c.waitDrained();
    const ids = (id: string) => c.query<{ id: bigint }>(id, 'SELECT id FROM audit_naive ORDER BY id').map((r) => r.id);
    const [origin, r2, r3] = [ids('n1'), ids('n2'), ids('n3')];
    assert.equal(origin.length, 1, 'the origin has its own audit row only');
    for (const [n, mine] of [['n2', r2], ['n3', r3]] as const) {
      assert.equal(mine.length, 2, n);
      assert.ok(mine.includes(origin[0]!), `${n} has the replicated audit row`);
    }
    // The receivers' own audit rows were written by the apply (echo suppression on): they never leave.
    const local2 = r2.find((x) => x !== origin[0])!;
    const local3 = r3.find((x) => x !== origin[0])!;
    assert.ok(!r3.includes(local2) && !r2.includes(local3) && local2 !== local3, 'local-only audit rows stayed local');
    // The replicas differ by design here, and `burrow checksum` says so: exit 1, naming the table.
    const sum = c.checksum();
    assert.equal(sum.code, 1, `burrow checksum must report differing replicas: ${JSON.stringify(sum.out)}`);
    assert.ok(JSON.stringify(sum.out?.differing).includes('audit_naive'), `differing: ${JSON.stringify(sum.out?.differing)}`);
    assert.ok(!JSON.stringify(sum.out?.differing).includes('"orders_naive"'), 'the replicated table itself is equal');
  });

  test('busy database: an application holding the write lock for 6 s while another node inserts 1000 rows/s — status says blocked, nothing lost', async () => {
    c.execAll('CREATE TABLE ticks(id INTEGER PRIMARY KEY, at REAL)');
    const py = (db: string, code: string) => spawn('python3', ['-c', code, db], { stdio: ['ignore', 'pipe', 'pipe'] });
    // The lock holder on n2: BEGIN IMMEDIATE, a write, hold for 6 s, commit.
    const holder = py(c.node('n2').db, `import sqlite3, sys, time
con = sqlite3.connect(sys.argv[1], timeout=30, isolation_level=None)
con.execute('BEGIN IMMEDIATE')
con.execute('INSERT INTO ticks(id, at) VALUES (1000000, 0)')
print('locked', flush=True)
time.sleep(6)
con.execute('COMMIT')
print('released', flush=True)`);
    await new Promise<void>((resolve, reject) => {
      holder.stdout.once('data', () => resolve());
      holder.once('exit', (code) => reject(new Error(`lock holder exited ${code}: ${holder.stderr.read()}`)));
    });
    // The writer on n1: 1000 single-row transactions per second for 5 s.
    const writer = py(c.node('n1').db, `import sqlite3, sys, time
con = sqlite3.connect(sys.argv[1], timeout=30, isolation_level=None)
t0 = time.monotonic()
for i in range(5000):
    while time.monotonic() < t0 + i / 1000: time.sleep(0.0005)
    con.execute('INSERT INTO ticks(id, at) VALUES (?, ?)', (i + 1, time.time()))
print('done', flush=True)`);
    let sawBusy = false;
    const statusMs: number[] = [];
    let unanswered = 0;
    const writerDone = new Promise<number>((r) => writer.once('exit', (code) => r(code ?? -1)));
    const holderDone = new Promise<number>((r) => holder.once('exit', (code) => r(code ?? -1)));
    let holderExited = false;
    void holderDone.then(() => { holderExited = true; });
    while (!holderExited) {
      const t0 = Date.now();
      const st = await c.status('n2');
      statusMs.push(Date.now() - t0);
      if (st === null) unanswered++;
      if (st?.database?.trouble?.kind === 'busy') sawBusy = true;
      await new Promise((r) => setTimeout(r, 100));
    }
    assert.equal(await holderDone, 0);
    assert.equal(await writerDone, 0);
    assert.ok(sawBusy, 'n2 status showed database.trouble.kind = busy while the lock was held');
    // Status is served off the write path: every request answered (within the client's 2 s), most at once.
    statusMs.sort((a, b) => a - b);
    assert.equal(unanswered, 0, `n2 left ${unanswered} of ${statusMs.length} status requests unanswered while blocked`);
    // (not stuck behind the 6 s lock: the median well under the 2 s client timeout)
    assert.ok(statusMs[Math.floor(statusMs.length / 2)]! < 1000, `median status time while blocked: ${statusMs[Math.floor(statusMs.length / 2)]} ms`);
    const rows = await c.waitConverged('SELECT count(*) AS n, sum(id) AS s FROM ticks', 60_000);
    assert.deepEqual(rows, [{ n: '5001n', s: `${5000 * 5001 / 2 + 1000000}n` }]);
    await c.waitFor('n2 trouble cleared', async () => (await c.status('n2'))?.database?.trouble === null);
    assert.ok((await c.status('n2')).pid === c.node('n2').pid, 'n2 did not restart');
  });

  test('node and config mistakes: same node id twice, a shard count that differs from the running cluster, nats-server missing — one line, exit 2', async () => {
    const run = (args: string[]) => spawnSync(process.execPath, [binPath, ...args], { encoding: 'utf8', timeout: 90_000 });
    const oneLine = (r: { stderr: string }) => {
      assert.equal(r.stderr.trim().split('\n').filter((l) => l.startsWith('burrow:')).length, 1, r.stderr);
      assert.doesNotMatch(r.stderr, /\n\s+at /);
    };
    // The same node id again (same config, same data folder) while it runs.
    const dup = run(['start', '--config', c.configFile, '--node', 'n1']);
    assert.equal(dup.status, 2, dup.stderr);
    assert.match(dup.stderr, /burrow: node n1 is already running \(pid \d+, lock .*node\.pid\): stop it first/);
    oneLine(dup);
    // A new node pointed at the running cluster's NATS with another shard count.
    const toml = readFileSync(c.configFile, 'utf8').replace(/shards = 16/, 'shards = 32');
    const other = path.join(c.dir, 'shards32.toml');
    writeFileSync(other, `${toml}\n[nats]\nurls = ["${c.node('n1').natsUrl}"]\n\n[[nodes]]\nid = "n9"\ndb = "n9/app.db"\nhttp = "127.0.0.1:${await freePort()}"\n`);
    const shards = run(['start', '--config', other, '--node', 'n9']);
    assert.equal(shards.status, 2, shards.stderr);
    assert.match(shards.stderr, /burrow: .*shards32\.toml: cluster\.shards = 32, but the running cluster "t\d+" has 16 shards \(stream burrow_t\d+_\d+\): .*set cluster\.shards = 16/);
    oneLine(shards);
    // Refused before anything was created: no stream beyond the cluster's 16 (the others would refuse to restart with them).
    const jsm = await jetstreamManager(nc);
    const names: string[] = [];
    for await (const n of jsm.streams.names()) names.push(n);
    assert.deepEqual(names.filter((n) => /_(1[6-9]|2\d|3[01])$/.test(n)), [], `streams: ${names.join(', ')}`);
    // nats-server not installed where the config says.
    const nonats = path.join(c.dir, 'nonats.toml');
    writeFileSync(nonats, `[cluster]\nname = "lonely"\n[nats]\nbinary = "nats-server-not-installed"\n[[nodes]]\nid = "n2"\ndb = "lonely/app.db"\n`
      + `client = "127.0.0.1:${await freePort()}"\nroute = "127.0.0.1:${await freePort()}"\nhttp = "127.0.0.1:${await freePort()}"\n`);
    const missing = run(['start', '--config', nonats, '--node', 'n2']);
    assert.equal(missing.status, 2, missing.stderr);
    assert.match(missing.stderr, /burrow: nats-server binary "nats-server-not-installed" not found on PATH/);
    oneLine(missing);
    // The running cluster did not notice.
    c.db('n1').prepare('INSERT INTO users VALUES (6, ?, ?)').run('after-mistakes@example.com', 'six');
    await c.waitConverged('SELECT id FROM users WHERE id = 6');
  });
});

/**
 * Disk full: n3's database lives on a 6 MB tmpfs the test mounts (root only; skipped with the
 * reason where mounting is not allowed). Its node reports the error, keeps the change log, and
 * resumes when space returns.
 */
describe('hardening: disk full', () => {
  let c: TestCluster | null = null;
  let mnt = '';
  let mountError = '';

  before(async () => {
    mnt = mkdtempSync(path.join(os.tmpdir(), 'burrow-smallfs-'));
    const m = spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=6m', 'tmpfs', mnt], { encoding: 'utf8' });
    if (m.status !== 0) {
      mountError = (m.stderr || m.error?.message || `exit ${m.status}`).trim();
      return;
    }
    c = await TestCluster.create({ nodes: 3, dbFile: { n3: path.join(mnt, 'app.db') } });
    await c.start();
  });

  after(async () => {
    await c?.destroy();
    if (!mountError) spawnSync('umount', ['-l', mnt]);
    rmSync(mnt, { recursive: true, force: true });
  });

  test('the node reports the error in status and logs, keeps its change log, and resumes when space returns', async (t) => {
    if (!c) {
      // Under CI the README-promised case must run: a skip there would hide a regression.
      if (process.env.CI) assert.fail(`CI: cannot mount a small tmpfs for the disk-full case: ${mountError}`);
      t.skip(`cannot mount a small tmpfs here: ${mountError}`);
      return;
    }
    const cl = c;
    cl.execAll('CREATE TABLE blobs(id INTEGER PRIMARY KEY, origin TEXT, data BLOB)');
    await cl.waitFor('n3 captures blobs', async () => (await cl.status('n3'))?.capture?.tables?.includes('blobs'));
    // n3's node is paused (outside any transaction of its own) while its application commits rows
    // (captured into its log), then the disk fills.
    const probe = new BetterSqlite3(cl.node('n3').db, { timeout: 0 });
    try {
      for (let attempt = 1; ; attempt++) {
        process.kill(cl.node('n3').pid!, 'SIGSTOP');
        try {
          probe.exec('BEGIN IMMEDIATE; ROLLBACK');
          break;
        } catch (err) {
          process.kill(cl.node('n3').pid!, 'SIGCONT');
          if (attempt >= 50) throw err;
          await new Promise((r) => setTimeout(r, 20));
        }
      }
    } finally {
      probe.close();
    }
    const filler = path.join(mnt, 'filler');
    try {
      const ins = cl.db('n3').prepare('INSERT INTO blobs VALUES (?, ?, ?)');
      for (let i = 1; i <= 20; i++) ins.run(BigInt(1000 + i), 'n3', Buffer.alloc(100, i));
      cl.db('n3').pragma('wal_checkpoint(TRUNCATE)');
      const fd = openSync(filler, 'w');
      const chunk = Buffer.alloc(64 * 1024, 1);
      try {
        for (;;) writeSync(fd, chunk);
      } catch (err) {
        assert.equal((err as NodeJS.ErrnoException).code, 'ENOSPC');
      }
      try {
        for (;;) writeSync(fd, chunk, 0, 512);
      } catch { /* the last bytes */ }
      closeSync(fd);
    } finally {
      process.kill(cl.node('n3').pid!, 'SIGCONT');
    }
    // Meanwhile n1 writes 50 rows of 16 KB: n3 cannot store them yet.
    const ins1 = cl.db('n1').prepare('INSERT INTO blobs VALUES (?, ?, ?)');
    for (let i = 1; i <= 50; i++) ins1.run(BigInt(i), 'n1', Buffer.alloc(16 * 1024, i));
    await cl.waitFor('n3 status reports the disk error', async () => {
      const st = await cl.status('n3');
      return st?.database?.trouble?.kind === 'io' && /SQLITE_FULL|disk is full/.test(st.database.trouble.lastError);
    }, 30_000);
    assert.match(readFileSync(cl.node('n3').logFile, 'utf8'), /database write failed \(disk full or I\/O error\)/);
    assert.equal(cl.query<{ n: bigint }>('n3', 'SELECT count(*) AS n FROM __burrow_log')[0]!.n, 20n, 'the change log is intact');
    assert.equal(cl.query('n1', "SELECT 1 FROM blobs WHERE origin = 'n3'").length, 0, "n3's rows wait for space");
    const pid = cl.node('n3').pid;
    rmSync(filler);
    const rows = await cl.waitConverged("SELECT origin, count(*) AS n FROM blobs GROUP BY origin ORDER BY origin", 60_000);
    assert.deepEqual(rows, [{ origin: 'n1', n: '50n' }, { origin: 'n3', n: '20n' }]);
    await cl.waitFor('n3 trouble cleared', async () => (await cl.status('n3'))?.database?.trouble === null);
    assert.equal((await cl.status('n3')).pid, pid, 'n3 kept running');
    assert.equal(cl.checksum().code, 0);
  });
});
