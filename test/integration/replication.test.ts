import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { TestCluster, stringify } from '../helpers/cluster.ts';
import { keyOf, publishedChanges, winners } from '../helpers/published.ts';
import { streamName } from '../../src/shard/shard-router.ts';

/**
 * The core cluster against real processes: three `burrow start` nodes, each with its embedded
 * nats-server in one JetStream cluster, real SQLite files, and outside writers (better-sqlite3
 * from the test process, the sqlite3 shell, python3's sqlite3).
 */
describe('3-node cluster', () => {
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

  test('insert, update and delete on each node appear on the other two', async () => {
    c.execAll('CREATE TABLE items(id INTEGER PRIMARY KEY, name TEXT NOT NULL, qty INTEGER)');
    for (const [i, n] of c.nodes.entries()) {
      c.db(n.id).prepare('INSERT INTO items(id, name, qty) VALUES (?, ?, ?)').run(BigInt(i + 1), `from ${n.id}`, 10n);
    }
    assert.deepEqual(await c.waitConverged('SELECT id, name, qty FROM items ORDER BY id'), [
      { id: '1n', name: 'from n1', qty: '10n' }, { id: '2n', name: 'from n2', qty: '10n' }, { id: '3n', name: 'from n3', qty: '10n' },
    ]);
    c.db('n2').prepare('UPDATE items SET qty = qty + 5 WHERE id = 1').run();
    c.db('n3').prepare('UPDATE items SET name = ? WHERE id = 2').run('renamed on n3');
    c.db('n1').prepare('DELETE FROM items WHERE id = 3').run();
    assert.deepEqual(await c.waitConverged('SELECT id, name, qty FROM items ORDER BY id'), [
      { id: '1n', name: 'from n1', qty: '15n' }, { id: '2n', name: 'renamed on n3', qty: '10n' },
    ]);
  });

  test('writes from the sqlite3 shell and from python3 are captured and replicated', async () => {
    c.execAll('CREATE TABLE notes(id TEXT PRIMARY KEY, body TEXT, n INTEGER)');
    c.sqlite3('n1', "INSERT INTO notes VALUES ('shell-1', 'written by the sqlite3 shell', 1); UPDATE notes SET n = 2 WHERE id = 'shell-1';");
    const py = `
import sqlite3, sys
con = sqlite3.connect(sys.argv[1], timeout=10)
con.execute("INSERT INTO notes VALUES ('py-1', 'written by python3', 7)")
con.execute("INSERT INTO notes VALUES ('py-2', 'also python3', 8)")
con.commit()
con.execute("DELETE FROM notes WHERE id = 'py-2'")
con.commit()
con.close()
`;
    execFileSync('python3', ['-c', py, c.node('n2').db]);
    const rows = await c.waitConverged('SELECT id, body, n FROM notes ORDER BY id');
    assert.deepEqual(rows, [
      { id: 'py-1', body: 'written by python3', n: '7n' },
      { id: 'shell-1', body: 'written by the sqlite3 shell', n: '2n' },
    ]);
    // And the shell can read what another node wrote.
    assert.match(c.sqlite3('n3', "SELECT body FROM notes WHERE id = 'py-1'"), /written by python3/);
  });

  test('exact values: int64 beyond 2^53, -0.0, extreme REALs, Unicode, BLOBs with NUL, NULL', async () => {
    c.execAll('CREATE TABLE vals(id INTEGER PRIMARY KEY, i INTEGER, r REAL, t TEXT, b BLOB, anything)');
    const ins = c.db('n1').prepare('INSERT INTO vals VALUES (?, ?, ?, ?, ?, ?)');
    ins.run(1n, 9007199254740993n, -0.0, '🦫 burrow — ünïcödé 日本語 \u0000 inside', Buffer.from([0, 1, 0, 255, 0]), null);
    ins.run(2n, -9223372036854775808n, 1.7976931348623157e308, '', Buffer.alloc(0), 9223372036854775807n);
    ins.run(3n, 0n, 5e-324, 'e\u0301 combining', Buffer.from('00ff00', 'hex'), -0.0);
    ins.run(4n, null, 0.1 + 0.2, null, null, Buffer.from([0, 0, 0]));
    c.sqlite3('n2', "INSERT INTO vals VALUES (5, 123456789012345678, 1e-310, 'from shell', x'00DEADBEEF00', 2.5)");
    const sql = 'SELECT id, quote(i) qi, typeof(i) ti, quote(r) qr, typeof(r) tr, hex(t) ht, typeof(t) tt, hex(b) hb, typeof(b) tb, '
      + 'quote(anything) qa, typeof(anything) ta FROM vals ORDER BY id';
    const rows = await c.waitConverged(sql) as Record<string, string>[];
    assert.equal(rows.length, 5);
    assert.equal(rows[0]!.qi, '9007199254740993');
    assert.equal(rows[0]!.hb, '000100FF00');
    assert.equal(rows[1]!.qi, '-9223372036854775808');
    assert.equal(rows[1]!.qa, '9223372036854775807');
    assert.equal(rows[3]!.qa, "X'000000'");
    assert.equal(rows[3]!.tt, 'null');
    // The REALs' exact bits, read back through a typed connection on every node.
    for (const n of c.nodes) {
      const r = c.query<{ r: number; anything: unknown }>(n.id, 'SELECT r, anything FROM vals ORDER BY id');
      assert.equal(r[1]!.r, 1.7976931348623157e308, n.id);
      assert.equal(r[2]!.r, 5e-324, n.id);
      assert.equal(r[3]!.r, 0.1 + 0.2, n.id);
      assert.ok(Object.is(r[2]!.anything, -0), `${n.id}: -0.0 in an untyped column keeps its sign`);
      const t = c.query<{ t: string }>(n.id, 'SELECT t FROM vals WHERE id = 1')[0]!.t;
      assert.equal(t, '🦫 burrow — ünïcödé 日本語 \u0000 inside', n.id);
    }
    const sum = c.checksum();
    assert.equal(sum.code, 0, JSON.stringify(sum.out));
  });

  test('a primary-key-changing UPDATE leaves no old row on any node', async () => {
    c.execAll('CREATE TABLE accounts(email TEXT PRIMARY KEY, owner TEXT)');
    c.db('n1').prepare("INSERT INTO accounts VALUES ('old@example.com', 'ada')").run();
    await c.waitConverged('SELECT * FROM accounts');
    c.db('n2').prepare("UPDATE accounts SET email = 'new@example.com' WHERE email = 'old@example.com'").run();
    assert.deepEqual(await c.waitConverged('SELECT * FROM accounts ORDER BY email'), [{ email: 'new@example.com', owner: 'ada' }]);
    // Composite key moved by the sqlite3 shell.
    c.execAll('CREATE TABLE pairs(a INTEGER, b TEXT, v TEXT, PRIMARY KEY (a, b)) WITHOUT ROWID');
    c.sqlite3('n3', "INSERT INTO pairs VALUES (1, 'x', 'one'), (2, 'y', 'two'); UPDATE pairs SET b = 'z' WHERE a = 1;");
    assert.deepEqual(await c.waitConverged('SELECT * FROM pairs ORDER BY a, b'), [
      { a: '1n', b: 'z', v: 'one' }, { a: '2n', b: 'y', v: 'two' },
    ]);
  });

  test('concurrent conflicting writes on all three nodes converge to the (hlc, node) winner', async () => {
    c.execAll('CREATE TABLE hot(k INTEGER PRIMARY KEY, v TEXT NOT NULL, w INTEGER)');
    const keys = 20;
    const rounds = 15;
    // Three writers (one per node) update the same keys at the same time, some deleting.
    await Promise.all(c.nodes.map(async (n, ni) => {
      const db = c.db(n.id);
      const up = db.prepare('INSERT INTO hot(k, v, w) VALUES (?, ?, ?) ON CONFLICT(k) DO UPDATE SET v = excluded.v, w = excluded.w');
      const del = db.prepare('DELETE FROM hot WHERE k = ?');
      for (let r = 0; r < rounds; r++) {
        db.transaction(() => {
          for (let k = 0; k < keys; k++) {
            if ((k + r + ni) % 7 === 0) del.run(BigInt(k));
            else up.run(BigInt(k), `${n.id}:r${r}`, BigInt(r));
          }
        })();
        await new Promise((res) => setTimeout(res, 1 + ((r * 7 + ni) % 5)));
      }
    }));
    await c.waitDrained();
    const rows = await c.waitConverged('SELECT k, v, w FROM hot ORDER BY k') as { k: string; v: string; w: string }[];
    const sum = c.checksum();
    assert.equal(sum.code, 0, `checksums differ: ${JSON.stringify(sum.out?.differing)}`);
    // Every node holds the same per-row clock, and the row data came from that clock's writer.
    const clocks = c.nodes.map((n) => stringify(c.clocks(n.id, 'hot')));
    assert.equal(clocks[1], clocks[0]);
    assert.equal(clocks[2], clocks[0]);
    // The winner per key is the highest (hlc, node) of every change published for it (every
    // node's sent log, drained), by the test's own comparator.
    const published = publishedChanges(c).filter((ch) => ch.table === 'hot');
    const won = winners(published, 'hot');
    assert.equal(won.size, keys);
    const byKey = new Map(rows.map((r) => [r.k, r]));
    for (let k = 0n; k < BigInt(keys); k++) {
      const w = won.get(keyOf(k))!;
      const row = byKey.get(`${k}n`);
      if (w.deleted) assert.equal(row, undefined, `key ${k}: the winning change is a delete by ${w.node}`);
      else {
        assert.ok(row, `key ${k}: the winning upsert by ${w.node} must be present`);
        assert.equal(row.v.split(':')[0], w.node, `key ${k}: value from the winner`);
        assert.equal(stringify([row.k, row.v, row.w]), stringify([w.row!.k, w.row!.v, w.row!.w]), `key ${k}: exact winning row image`);
      }
    }
    assert.equal(new Set(published.map((s) => s.node)).size, 3, 'all three nodes published changes to the same keys');
  });

  test('a delete racing an update does not resurrect the row anywhere', async () => {
    c.execAll('CREATE TABLE race(id INTEGER PRIMARY KEY, v TEXT)');
    c.db('n1').prepare("INSERT INTO race VALUES (1, 'original'), (2, 'original')").run();
    await c.waitConverged('SELECT * FROM race ORDER BY id');
    // Freeze n3's node process: its writes are captured by triggers but stamped only later.
    const pid3 = c.node('n3').pid!;
    process.kill(pid3, 'SIGSTOP');
    try {
      c.db('n3').prepare("UPDATE race SET v = 'update from n3' WHERE id = 1").run();
      c.db('n1').prepare('DELETE FROM race WHERE id = 1').run();
      c.db('n2').prepare("UPDATE race SET v = 'update from n2' WHERE id = 2").run();
      await c.waitConverged('SELECT * FROM race ORDER BY id', 20_000, ['n1', 'n2']);
    } finally {
      process.kill(pid3, 'SIGCONT');
    }
    // n3 stamps its update after it has seen the delete's position in time, or before: either way
    // every node must hold the (hlc, node) winner of what was published, computed by the test.
    await c.waitConverged('SELECT * FROM race ORDER BY id');
    await c.waitDrained();
    const won = winners(publishedChanges(c), 'race');
    for (const id of [1n, 2n]) {
      const w = won.get(keyOf(id));
      assert.ok(w, `row ${id} has published changes`);
      const want = w.deleted ? [] : [{ id, v: w.row!.v }];
      for (const n of c.nodes) assert.deepEqual(c.query(n.id, 'SELECT id, v FROM race WHERE id = ?', id), want, `${n.id}: row ${id} is the winner (hlc ${w.hlc}, ${w.node}${w.deleted ? ', a delete' : ''})`);
    }
    assert.equal(won.get(keyOf(2n))!.row!.v, 'update from n2', 'row 2: the only later write wins');
    assert.equal(c.checksum().code, 0);
  });

  test('a node stopped and restarted catches up on what it missed', async () => {
    c.execAll('CREATE TABLE journal(id INTEGER PRIMARY KEY, entry TEXT)');
    c.db('n1').prepare("INSERT INTO journal VALUES (1, 'before the stop')").run();
    await c.waitConverged('SELECT * FROM journal');
    await c.stopNode('n3');
    const ins = c.db('n1').prepare('INSERT INTO journal VALUES (?, ?)');
    c.db('n1').transaction(() => {
      for (let i = 2; i <= 500; i++) ins.run(BigInt(i), `while n3 was down #${i}`);
    })();
    // n2 changes rows it has received (a DELETE of a row not yet there is no change at all).
    await c.waitConverged('SELECT count(*) n FROM journal', 20_000, ['n1', 'n2']);
    c.db('n2').prepare("UPDATE journal SET entry = 'updated while n3 was down' WHERE id = 1").run();
    c.db('n2').prepare('DELETE FROM journal WHERE id = 2').run();
    // n3's own application keeps writing while its node is down: the triggers keep the changes.
    c.db('n3').prepare("INSERT INTO journal VALUES (1000, 'written on n3 while its node was down')").run();
    await c.waitConverged('SELECT count(*) n FROM journal', 20_000, ['n1', 'n2']);
    const oldPid = c.node('n3').pid;
    c.startNode('n3');
    assert.notEqual(c.node('n3').pid, oldPid);
    await c.waitReady(60_000, ['n3']);
    // Every row, exactly: n1's 499 inserts, n2's update and delete, n3's own write while down.
    const want = [{ id: '1n', entry: 'updated while n3 was down' }];
    for (let i = 3; i <= 500; i++) want.push({ id: `${i}n`, entry: `while n3 was down #${i}` });
    want.push({ id: '1000n', entry: 'written on n3 while its node was down' });
    assert.deepEqual(await c.waitConverged('SELECT id, entry FROM journal ORDER BY id', 30_000), want);
  });

  test('a node killed with SIGKILL restarts, adopts its nats-server and catches up', async () => {
    c.execAll('CREATE TABLE after_kill(id INTEGER PRIMARY KEY, v TEXT)');
    const natsPid = c.natsPid('n2');
    await c.killNode('n2');
    c.db('n1').prepare("INSERT INTO after_kill VALUES (1, 'while n2 was dead')").run();
    c.db('n2').prepare("INSERT INTO after_kill VALUES (2, 'n2 app wrote while its node was dead')").run();
    const oldPid = c.node('n2').pid;
    c.startNode('n2');
    assert.notEqual(c.node('n2').pid, oldPid);
    await c.waitReady(60_000, ['n2']);
    assert.equal(c.natsPid('n2'), natsPid, 'the nats-server left running was adopted, not replaced');
    const s = await c.status('n2');
    assert.equal(s.nats.adopted, true);
    assert.deepEqual(await c.waitConverged('SELECT * FROM after_kill ORDER BY id'), [
      { id: '1n', v: 'while n2 was dead' }, { id: '2n', v: 'n2 app wrote while its node was dead' },
    ]);
  });

  test('a node whose nats-server is SIGKILLed starts a new one and keeps replicating', async () => {
    c.execAll('CREATE TABLE after_nats_kill(id INTEGER PRIMARY KEY, v TEXT)');
    const natsPid = c.natsPid('n1')!;
    process.kill(natsPid, 'SIGKILL');
    c.db('n1').prepare("INSERT INTO after_nats_kill VALUES (1, 'written on n1 while its nats-server was dead')").run();
    c.db('n2').prepare("INSERT INTO after_nats_kill VALUES (2, 'written on n2')").run();
    await c.waitFor('n1 runs a new nats-server', async () => {
      const s = await c.status('n1');
      return s?.nats.restarts === 1 && s.nats.pid !== natsPid;
    }, 20_000);
    assert.notEqual(c.natsPid('n1'), natsPid);
    assert.deepEqual(await c.waitConverged('SELECT * FROM after_nats_kill ORDER BY id', 30_000), [
      { id: '1n', v: 'written on n1 while its nats-server was dead' }, { id: '2n', v: 'written on n2' },
    ]);
  });

  test('tables created and altered while running are captured without a restart', async () => {
    c.execAll("CREATE TABLE late(id INTEGER PRIMARY KEY, a TEXT); INSERT INTO late VALUES (100, 'same on all')");
    // Created and written in one go on n1: rows written before the triggers existed are picked up.
    c.db('n1').exec("CREATE TABLE IF NOT EXISTS fresh(id INTEGER PRIMARY KEY, a TEXT); INSERT INTO fresh VALUES (1, 'immediately')");
    c.db('n2').exec('CREATE TABLE IF NOT EXISTS fresh(id INTEGER PRIMARY KEY, a TEXT)');
    c.db('n3').exec('CREATE TABLE IF NOT EXISTS fresh(id INTEGER PRIMARY KEY, a TEXT)');
    await c.waitConverged('SELECT * FROM fresh');
    assert.deepEqual(c.query('n3', 'SELECT * FROM fresh'), [{ id: 1n, a: 'immediately' }]);
    c.db('n1').prepare("INSERT INTO late VALUES (1, 'x')").run();
    await c.waitConverged('SELECT * FROM late ORDER BY id');
    c.execAll('ALTER TABLE late ADD COLUMN b INTEGER');
    c.db('n2').prepare("INSERT INTO late VALUES (2, 'y', 42)").run();
    c.db('n3').prepare('UPDATE late SET b = 7 WHERE id = 1').run();
    assert.deepEqual(await c.waitConverged('SELECT id, a, b FROM late ORDER BY id'), [
      { id: '1n', a: 'x', b: '7n' }, { id: '2n', a: 'y', b: '42n' }, { id: '100n', a: 'same on all', b: null },
    ]);
  });

  test('stream leader elections: the node reads from each new leader at once (JetStream advisory), writes keep flowing', async () => {
    c.execAll('CREATE TABLE leaders(id INTEGER PRIMARY KEY, v TEXT)');
    await c.waitConverged('SELECT count(*) n FROM leaders');
    const before = (await c.status('n2')).apply.inbound.leaderRestarts as number;
    // n1's nats-server was SIGKILLed and replaced by the test before: its Raft groups may still be
    // catching up, and a stream without a leader answers no API request. Wait for every leader first.
    const api = async (subject: string): Promise<Record<string, any> | undefined> => {
      try {
        const r = await nc.request(subject, new Uint8Array(0), { timeout: 2000 });
        return JSON.parse(new TextDecoder().decode(r.data)) as Record<string, any>;
      } catch {
        return undefined; // no leader to answer yet: the caller polls
      }
    };
    const streamApi = (verb: string, s: number) => `$JS.API.STREAM.${verb}.${streamName(c.clusterName, s)}`;
    await c.waitFor('every stream has a leader', async () => {
      for (let s = 0; s < 16; s++) if (!(await api(streamApi('INFO', s)))?.cluster?.leader) return false;
      return true;
    }, 30_000, 200);
    let steppedDown = 0;
    for (let s = 0; s < 16; s++) {
      for (let attempt = 0; attempt < 3; attempt++) {
        const r = await api(streamApi('LEADER.STEPDOWN', s));
        if (r === undefined) continue;
        if (r.success) steppedDown++;
        break;
      }
    }
    assert.ok(steppedDown >= 12, `stepped down ${steppedDown} of 16 stream leaders`);
    await c.waitFor('n2 read again after the elections', async () => (await c.status('n2')).apply.inbound.leaderRestarts - before >= steppedDown, 30_000);
    const t0 = Date.now();
    const ins = c.db('n1').prepare('INSERT INTO leaders(id, v) VALUES (?, ?)');
    for (let i = 1; i <= 200; i++) ins.run(BigInt(i), `row ${i}`);
    await c.waitFor('every row on n2', () => c.query<{ n: bigint }>('n2', 'SELECT count(*) n FROM leaders')[0]!.n === 200n, 20_000, 10);
    process.stderr.write(`# 200 rows on n2 ${Date.now() - t0} ms after the stream elections\n`);
  });

  test('an idle node watches its WAL instead of polling fast, and a commit by the sqlite3 shell wakes it', async () => {
    c.execAll('CREATE TABLE wake(id INTEGER PRIMARY KEY, v TEXT)');
    await c.waitConverged('SELECT count(*) n FROM wake');
    // The three CREATE entries are folded everywhere (the node's own commits write the WAL too).
    await c.waitSchemaSettled();
    // A second without commits by other connections: the node goes idle (slow fallback poll + inotify on the WAL).
    // Idle means slow polling: the 2 ms interval would poll ~500 times a second, idle polls every 50 ms.
    // The node's own housekeeping (positions saved every 10 s) writes the WAL too and wakes it for a
    // second: a window it woke in is measured again (at most 3 windows).
    let s1: any = null;
    let perSecond = Infinity;
    for (let attempt = 1; attempt <= 3; attempt++) {
      await c.waitFor('n1 idle', async () => (await c.status('n1'))?.capture.idle === true, 15_000, 50);
      const s0 = (await c.status('n1')).capture;
      const t1 = Date.now();
      await new Promise((r) => setTimeout(r, 1000));
      s1 = (await c.status('n1')).capture;
      perSecond = ((s1.polls - s0.polls) * 1000) / (Date.now() - t1);
      if (s1.idle && s1.idleWakeups === s0.idleWakeups) break;
    }
    assert.ok(s1.idle, 'n1 stayed idle while measured');
    assert.ok(perSecond < 100, `idle n1 polled ${perSecond.toFixed(0)} times a second`);
    const before = s1.idleWakeups as number;
    const t0 = Date.now();
    c.sqlite3('n1', "INSERT INTO wake VALUES (1, 'written while n1 was idle')");
    await c.waitFor('the row on n2 and n3', () => ['n2', 'n3'].every((id) => c.query(id, 'SELECT * FROM wake').length === 1), 10_000, 2);
    process.stderr.write(`# idle n1: a sqlite3 shell commit reached n2 and n3 in ${Date.now() - t0} ms (sqlite3 process start included)\n`);
    const after = await c.status('n1');
    assert.ok(after.capture.idleWakeups > before, `the WAL watch woke the node (idleWakeups ${before} → ${after.capture.idleWakeups})`);
    assert.deepEqual(c.query('n3', 'SELECT * FROM wake'), [{ id: 1n, v: 'written while n1 was idle' }]);
  });

  test('burrow status reports every node; a down node makes it exit 1', async () => {
    const out = execFileSync(process.execPath, ['bin/burrow.js', 'status', '--config', c.configFile, '--json'], { encoding: 'utf8', cwd: process.cwd() });
    const s = JSON.parse(out) as any[];
    assert.equal(s.length, 3);
    for (const n of s) {
      assert.equal(n.up, true);
      assert.equal(n.ready, true);
      assert.equal(n.shards.length, 16);
      assert.match(n.hlc.time, /^\d{4}-\d\d-\d\dT/);
      assert.equal(typeof n.pending.logRows, 'number');
    }
    await c.stopNode('n3');
    let code = 0;
    let stdout = '';
    try {
      execFileSync(process.execPath, ['bin/burrow.js', 'status', '--config', c.configFile], { encoding: 'utf8' });
    } catch (err) {
      code = (err as { status: number }).status;
      stdout = (err as { stdout: string }).stdout;
    }
    assert.equal(code, 1);
    assert.match(stdout, /n3\s+DOWN/);
    c.startNode('n3');
    await c.waitReady(60_000, ['n3']);
  });
});
