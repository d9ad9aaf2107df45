import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, writeFileSync, readFileSync, rmSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import BetterSqlite3 from 'better-sqlite3';
import { freePort, repoRoot } from '../helpers/cluster.ts';
import { pidAlive } from '../../src/nats/nats-supervisor.ts';

const bin = path.join(repoRoot, 'bin', 'burrow.js');
const run = (args: string[]) => spawnSync(process.execPath, [bin, ...args], { encoding: 'utf8', timeout: 30_000 });

describe('burrow CLI', () => {
  test('--help prints usage and exits 0', () => {
    const r = run(['--help']);
    assert.equal(r.status, 0);
    assert.match(r.stdout, /burrow start\s+--config FILE --node ID/);
    assert.match(r.stdout, /burrow checksum/);
  });

  test('config mistakes: one line naming file and key, exit code 2, no stack trace', () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'burrow-cli-'));
    try {
      const cases: [string, RegExp][] = [
        ['[cluster]\nname = "x"\nshards = 0\n[[nodes]]\nid = "a"\ndb = "a.db"\nclient = "127.0.0.1:1"\nroute = "127.0.0.1:2"\nhttp = "127.0.0.1:3"\n',
          /bad\.toml: cluster\.shards: must be between 1 and 1024, got 0/],
        ['[cluster]\nname = "x"\ncolour = "blue"\n', /bad\.toml: cluster\.colour: unknown key/],
        ['[cluster]\nname = "x"\n[[nodes]]\nid = "a"\ndb = "a.db"\nclient = "127.0.0.1"\nroute = "127.0.0.1:2"\nhttp = "127.0.0.1:3"\n',
          /bad\.toml: nodes\[0\]\.client: "127\.0\.0\.1" is not a host:port address/],
        ['[cluster\nname = "x"\n', /bad\.toml: not valid TOML/],
      ];
      for (const [text, re] of cases) {
        const f = path.join(dir, 'bad.toml');
        writeFileSync(f, text);
        for (const cmd of [['status', '--config', f], ['start', '--config', f, '--node', 'a']]) {
          const r = run(cmd);
          assert.equal(r.status, 2, `${cmd[0]}: ${r.stderr}`);
          assert.match(r.stderr, re);
          assert.equal(r.stderr.trim().split('\n').length, 1, `one line: ${r.stderr}`);
          assert.doesNotMatch(r.stderr, /\n\s+at /);
        }
      }
      const missing = run(['status', '--config', path.join(dir, 'nope.toml')]);
      assert.equal(missing.status, 2);
      assert.match(missing.stderr, /nope\.toml: cannot read config file \(ENOENT\)/);
      const good = path.join(dir, 'good.toml');
      writeFileSync(good, '[cluster]\nname = "x"\n[[nodes]]\nid = "a"\ndb = "a.db"\nclient = "127.0.0.1:1"\nroute = "127.0.0.1:2"\nhttp = "127.0.0.1:3"\n');
      const unknownNode = run(['start', '--config', good, '--node', 'zz']);
      assert.equal(unknownNode.status, 2);
      assert.match(unknownNode.stderr, /no node "zz" in \[\[nodes\]\] \(known: a\)/);
      const badCmd = run(['frobnicate']);
      assert.equal(badCmd.status, 2);
      assert.match(badCmd.stderr, /unknown command "frobnicate"/);
      // keygen: keys in the data folder, public keys into the file (comments kept), the same on a second run.
      const secured = path.join(dir, 'secured.toml');
      writeFileSync(secured, '# mine\n[cluster]\nname = "x"\n[security]\nsign = true\nauth = true\n[[nodes]]\nid = "a"   # first\ndb = "a/app.db"\nclient = "127.0.0.1:1"\nroute = "127.0.0.1:2"\nhttp = "127.0.0.1:3"\n');
      const noKeys = run(['start', '--config', secured, '--node', 'a']);
      assert.equal(noKeys.status, 2);
      assert.match(noKeys.stderr, /\[security\] sign is on, but node a has no public_key yet: run burrow keygen --config/);
      const kg = run(['keygen', '--config', secured]);
      assert.equal(kg.status, 0, kg.stderr);
      assert.match(kg.stdout, /^a: new keys in .*node\.nkey, .*nats\.nkey$/m);
      const text = readFileSync(secured, 'utf8');
      assert.match(text, /^# mine\n/);
      assert.match(text, /id = "a" {3}# first\npublic_key = "U[A-Z2-7]{55}"\nnats_key = "U[A-Z2-7]{55}"\n/);
      assert.equal(statSync(path.join(dir, 'a', 'node.nkey')).mode & 0o777, 0o600);
      assert.ok(existsSync(path.join(dir, 'data', 'cluster.secret')), 'the route secret (auth)');
      const again = run(['keygen', '--config', secured]);
      assert.match(again.stdout, /^a: keys kept$/m);
      assert.equal(readFileSync(secured, 'utf8'), text, 'nothing changes on a second run');
      const noSql = run(['migrate', '--config', good]);
      assert.equal(noSql.status, 2);
      assert.match(noSql.stderr, /burrow migrate needs a file of SQL statements/);
      const badTimeout = run(['migrate', '--config', good, 'm.sql', '--timeout', 'soon']);
      assert.equal(badTimeout.status, 2);
      assert.match(badTimeout.stderr, /--timeout must be a number of seconds above 0, got soon/);
      const schemaDown = run(['schema', '--config', good]);
      assert.equal(schemaDown.status, 1);
      assert.match(schemaDown.stdout, /a: down \(ECONNREFUSED\)/);
      const noNode = run(['restore', '--config', good]);
      assert.equal(noNode.status, 2);
      assert.match(noNode.stderr, /burrow restore needs --node ID/);
      const down = run(['snapshot', '--config', good, '--node', 'a']);
      assert.equal(down.status, 1);
      assert.match(down.stderr, /^burrow: node a is unreachable \(127\.0\.0\.1:3: ECONNREFUSED\)$/m);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('burrow up: 3 nodes ready, a sqlite3 write on n1 is read on n2 and n3, Ctrl-C stops everything', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'burrow-up-'));
    let toml = `[cluster]\nname = "up${process.pid}"\nshards = 16\nreplicas = 3\n\n`;
    for (const id of ['n1', 'n2', 'n3']) {
      toml += `[[nodes]]\nid = "${id}"\ndb = "data/${id}/app.db"\nclient = "127.0.0.1:${await freePort()}"\n`
        + `route = "127.0.0.1:${await freePort()}"\nhttp = "127.0.0.1:${await freePort()}"\n\n`;
    }
    const config = path.join(dir, 'cluster.toml');
    writeFileSync(config, toml);
    const up = spawn(process.execPath, [bin, 'up', '--config', config], { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    up.stdout.on('data', (d) => (out += d));
    up.stderr.on('data', (d) => (out += d));
    const exited = new Promise<number | null>((r) => up.on('exit', (code) => r(code)));
    const waitOut = async (re: RegExp, ms: number) => {
      const deadline = Date.now() + ms;
      while (!re.test(out)) {
        if (Date.now() > deadline) {
          const logs = ['n1', 'n2', 'n3'].map((id) => {
            try {
              return `--- ${id}\n${readFileSync(path.join(dir, 'data', id, 'burrow.log'), 'utf8').slice(-3000)}`;
            } catch {
              return `--- ${id}: no log`;
            }
          }).join('\n');
          throw new Error(`burrow up never printed ${re}:\n${out}\n${logs}`);
        }
        await new Promise((r) => setTimeout(r, 50));
      }
    };
    try {
      await waitOut(/all 3 nodes ready in [\d.]+ s/, 60_000);
      const dbs = ['n1', 'n2', 'n3'].map((id) => path.join(dir, 'data', id, 'app.db'));
      // No wait needed: a row written before n1 installs its triggers is picked up by the backfill of
      // a newly captured table, and receivers refresh their schema before applying.
      for (const db of dbs) spawnSync('sqlite3', [db, 'CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)']);
      const wrote = Date.now();
      assert.equal(spawnSync('sqlite3', [dbs[0]!, "INSERT INTO t VALUES (1, 'hello from the sqlite3 shell')"]).status, 0);
      // Typically visible within tens of ms (printed below); the bound only says "without any manual step".
      for (const db of dbs.slice(1)) {
        const d = new BetterSqlite3(db, { readonly: true });
        try {
          while (d.prepare('SELECT v FROM t WHERE id = 1').get() === undefined) {
            assert.ok(Date.now() - wrote < 30_000, `row not visible on ${db} within 30 s`);
            await new Promise((r) => setTimeout(r, 5));
          }
        } finally {
          d.close();
        }
      }
      process.stderr.write(`burrow up: sqlite3 write on n1 visible on n2 and n3 after ${Date.now() - wrote} ms\n`);
      const pids = ['n1', 'n2', 'n3'].flatMap((id) => [
        Number(readFileSync(path.join(dir, 'data', id, 'node.pid'), 'utf8')),
        Number(readFileSync(path.join(dir, 'data', id, 'nats.pid'), 'utf8')),
      ]);
      assert.ok(pids.every((p) => p > 0 && pidAlive(p)));
      up.kill('SIGINT');
      assert.equal(await exited, 0, out);
      assert.match(out, /n1: stopped \(exit code 0\)/);
      for (const p of pids) assert.equal(pidAlive(p), false, `pid ${p} still running after burrow up stopped`);
    } finally {
      if (up.exitCode === null) {
        // Stop it the way a user does (its nodes are in their own process groups).
        up.kill('SIGINT');
        await Promise.race([exited, new Promise((r) => setTimeout(r, 30_000))]);
      }
      if (up.exitCode === null) up.kill('SIGKILL');
      for (const id of ['n1', 'n2', 'n3']) {
        for (const f of ['node.pid', 'nats.pid']) {
          try {
            const pid = Number(readFileSync(path.join(dir, 'data', id, f), 'utf8'));
            if (pid > 0 && pidAlive(pid)) process.kill(pid, 'SIGKILL');
          } catch { /* not there */ }
        }
      }
      rmSync(dir, { recursive: true, force: true });
    }
  });

  // npm passes SIGTERM to the `sh -c` it runs a bin in, and that shell exits without passing it on;
  // SIGHUP kills npm alone: `npx burrow up` signalled left burrow up and its nodes running.
  for (const sig of ['SIGTERM', 'SIGHUP'] as const) test(`npx burrow up: ${sig} to the npx process stops burrow up and every node`, async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'burrow-npx-'));
    const config = path.join(dir, 'cluster.toml');
    writeFileSync(config, `[cluster]\nname = "npx${process.pid}"\nshards = 4\nreplicas = 1\n\n[[nodes]]\nid = "n1"\ndb = "data/n1/app.db"\n`
      + `client = "127.0.0.1:${await freePort()}"\nroute = "127.0.0.1:${await freePort()}"\nhttp = "127.0.0.1:${await freePort()}"\n`);
    const npx = spawn('npx', ['burrow', 'up', '--config', config], { cwd: repoRoot, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    npx.stdout.on('data', (d) => (out += d));
    npx.stderr.on('data', (d) => (out += d));
    const pidFiles = ['node.pid', 'nats.pid'].map((f) => path.join(dir, 'data', 'n1', f));
    const pids = () => pidFiles.flatMap((f) => (existsSync(f) ? [Number(readFileSync(f, 'utf8'))] : []));
    try {
      const deadline = Date.now() + 60_000;
      while (!/all 1 nodes ready/.test(out)) {
        assert.ok(Date.now() < deadline, `burrow up never got ready:\n${out}`);
        await new Promise((r) => setTimeout(r, 100));
      }
      const running = pids();
      assert.equal(running.length, 2);
      npx.kill(sig);
      const stopBy = Date.now() + 30_000;
      while (running.some((p) => pidAlive(p))) {
        assert.ok(Date.now() < stopBy, `still running 30 s after ${sig} to npx: ${running.filter((p) => pidAlive(p)).join(', ')}\n${out}`);
        await new Promise((r) => setTimeout(r, 100));
      }
    } finally {
      for (const p of pids()) if (p > 0 && pidAlive(p)) process.kill(p, 'SIGKILL');
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
