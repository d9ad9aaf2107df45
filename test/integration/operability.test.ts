import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import BetterSqlite3 from 'better-sqlite3';
import { TestCluster, repoRoot } from '../helpers/cluster.ts';

/** Issue 14: what an operator scrapes and types, on a real 3-node cluster. */

/** Prometheus text exposition → series name{labels} → value (comments skipped; a malformed line fails the test). */
function parseExposition(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (-?[0-9.e+-]+|NaN|Nan|\+Inf|-Inf)$/.exec(line);
    assert.ok(m, `not exposition format: ${line}`);
    out.set(m[1]! + (m[2] ?? ''), Number(m[3]));
  }
  return out;
}

describe('operability (3-node cluster)', () => {
  let c: TestCluster;

  before(async () => {
    c = await TestCluster.create({ nodes: 3 });
    await c.start();
    c.execAll('CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)');
    await c.waitSchemaSettled();
  });

  after(async () => {
    await c?.destroy();
  });

  const scrape = async (id: string) => {
    const res = await fetch(`${c.node(id).http}/metrics`);
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type') ?? '', /text\/plain/);
    return parseExposition(await res.text());
  };
  const value = (m: Map<string, number>, prefix: string) => [...m.entries()].filter(([k]) => k.startsWith(prefix)).reduce((a, [, v]) => a + v, 0);

  test('GET /metrics: the series are there, counters move with writes, the lag histogram gets samples', async () => {
    const before = await scrape('n2');
    for (const name of ['burrow_up', 'burrow_ready', 'burrow_pending_outbox_changes', 'burrow_published_batches_total', 'burrow_applied_changes_total',
      'burrow_dead_letters', 'burrow_waiting_changes', 'burrow_repaired_batches_total', 'burrow_nats_restarts_total', 'burrow_shard_position{',
      'burrow_shard_lag_messages{', 'burrow_commit_to_applied_seconds_bucket{', 'burrow_apply_transaction_seconds_count', 'burrow_process_nodejs_eventloop_lag_seconds',
      'burrow_info{']) {
      assert.ok([...before.keys()].some((k) => k.startsWith(name)), `${name} missing`);
    }
    assert.ok([...before.keys()].every((k) => !k.startsWith('burrow_') || k.includes('node="n2"')), 'every series names its node');
    const rows = 50;
    const app = c.db('n1');
    for (let i = 0; i < rows; i++) app.prepare('INSERT INTO t VALUES (?, ?)').run(i, `v${i}`);
    await c.waitConverged('SELECT count(*) AS n FROM t');
    await c.waitFor('n2 counts the applied changes', async () => value(await scrape('n2'), 'burrow_applied_changes_total') >= value(before, 'burrow_applied_changes_total') + rows);
    const after = await scrape('n2');
    assert.ok(value(after, 'burrow_commit_to_applied_seconds_count') > value(before, 'burrow_commit_to_applied_seconds_count'), 'lag samples');
    const n1 = await scrape('n1');
    assert.ok(value(n1, 'burrow_published_changes_total') >= rows);
    assert.ok(value(n1, 'burrow_commit_to_published_seconds_count') > 0);
  });

  test('log lines are JSON with level, node and the component that wrote them', () => {
    const lines = readFileSync(c.node('n1').logFile, 'utf8').split('\n').filter((l) => l.startsWith('{'));
    assert.ok(lines.length > 5, `${lines.length} JSON lines`);
    const parsed = lines.map((l) => JSON.parse(l) as { level: string; node: string; component?: string; msg: string; time: string });
    for (const l of parsed) {
      assert.ok(['debug', 'info', 'warn', 'error'].includes(l.level), l.level);
      assert.equal(l.node, 'n1');
      assert.ok(typeof l.msg === 'string' && !Number.isNaN(Date.parse(l.time)));
    }
    const components = new Set(parsed.map((l) => l.component).filter(Boolean));
    assert.ok(components.has('nats') && components.size >= 2, `components: ${[...components].join(', ')}`);
  });

  test('CLI: --version prints package.json\'s version; an option a command does not take is exit 2; status --node asks one node', () => {
    const pkg = JSON.parse(readFileSync(path.join(repoRoot, 'package.json'), 'utf8')) as { version: string };
    const v = c.cli(['--version']);
    assert.equal(v.code, 0);
    assert.equal(v.stdout.trim(), `burrow ${pkg.version}`);
    const bad = c.cli(['checksum', '--node', 'n1']);
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /^burrow: burrow checksum does not take --node \(usage: burrow checksum --config FILE \[--json\]\)$/m);
    const one = c.cli(['status', '--node', 'n2', '--json']);
    assert.equal(one.code, 0, one.stderr);
    assert.deepEqual((JSON.parse(one.stdout) as { id: string }[]).map((s) => s.id), ['n2']);
    const h = c.cli(['help', 'migrate']);
    assert.equal(h.code, 0);
    assert.match(h.stdout, /burrow migrate {2}--config FILE FILE\.sql/);
  });

  test('status on a lagging node (an application holds its write lock): lag > 0 in messages and ms, then 0; --shards shows leaders', async () => {
    const app = new BetterSqlite3(c.node('n3').db, { timeout: 5000 });
    try {
      app.exec('BEGIN IMMEDIATE'); // n3 cannot apply while this is held (it retries)
      const w = c.db('n1');
      for (let i = 1000; i < 1200; i++) w.prepare('INSERT INTO t VALUES (?, ?)').run(i, 'lagging');
      await c.waitFor('n3 reports lag', async () => {
        const st = await c.status('n3');
        return st.lag.messages > 0 && st.lag.ms > 0;
      }, 20_000, 100);
      const line = c.cli(['status', '--node', 'n3']);
      assert.match(line.stdout, /^n3 .* lag [1-9]\d* .* lag \d+ msgs \d+ ms/m, line.stdout);
    } finally {
      app.exec('ROLLBACK');
      app.close();
    }
    await c.waitFor('n3 caught up: lag 0', async () => (await c.status('n3')).lag.messages === 0, 20_000, 100);
    const shards = c.cli(['status', '--node', 'n1', '--shards']);
    assert.equal(shards.code, 0, shards.stderr);
    assert.match(shards.stdout, /^n1 shards:\n {2}shard {2}0 {2}applied \d+ +lag \d+ +stream \d+\.\.\d+ leader \S+/m, shards.stdout);
  });

  test('burrow dead lists a dead letter; after the schema is fixed, --retry applies it; --purge deletes; a down node is exit 1', async () => {
    c.execAll('CREATE TABLE checked(id INTEGER PRIMARY KEY, n INTEGER CHECK (n > 0))');
    await c.waitSchemaSettled();
    const app = c.db('n1');
    app.pragma('ignore_check_constraints = ON');
    app.prepare('INSERT INTO checked VALUES (1, -5)').run();
    app.pragma('ignore_check_constraints = OFF');
    await c.waitFor('n2 dead-letters the change', async () => (await c.status('n2')).deadLetters >= 1);
    const list = c.cli(['dead', '--node', 'n2', '--json']);
    assert.equal(list.code, 0, list.stderr);
    const rows = (JSON.parse(list.stdout) as { rows: { id: number; table: string; reason: string }[] }[])[0]!.rows.filter((r) => r.table === 'checked');
    assert.equal(rows.length, 1);
    assert.match(rows[0]!.reason, /CHECK constraint failed/);
    const text = c.cli(['dead']);
    assert.match(text.stdout, new RegExp(`^n2: \\d+ dead letters\\n  #${rows[0]!.id} .* checked from n1 shard \\d+: apply failed: CHECK constraint failed`, 'm'));
    // Retried while the CHECK still refuses it: dead again (exit 1).
    const again = c.cli(['dead', '--node', 'n2', '--retry', String(rows[0]!.id)]);
    assert.equal(again.code, 1, again.stdout + again.stderr);
    assert.match(again.stdout, /n2: 1 retried, 1 dead again/);
    // The application drops the CHECK (a rebuild, replicated), then retries: the row applies.
    c.db('n1').exec(`BEGIN; CREATE TABLE checked_new(id INTEGER PRIMARY KEY, n INTEGER); INSERT INTO checked_new SELECT * FROM checked;
      DROP TABLE checked; ALTER TABLE checked_new RENAME TO checked; COMMIT;`);
    await c.waitSchemaSettled();
    const retried = c.cli(['dead', '--node', 'n2', '--retry', '--all']);
    assert.equal(retried.code, 0, retried.stdout + retried.stderr);
    await c.waitFor('the row is on n2', () => c.query('n2', 'SELECT n FROM checked WHERE id = 1').length === 1);
    assert.deepEqual(c.query('n2', 'SELECT n FROM checked WHERE id = 1'), [{ n: -5n }]);
    const purged = c.cli(['dead', '--node', 'n3', '--purge', '--all']);
    assert.equal(purged.code, 0, purged.stderr);
    assert.match(purged.stdout, /^n3: \d+ purged$/m);
    assert.equal((await c.status('n3')).deadLetters, 0);
    assert.equal(c.cli(['conflicts']).code, 0);
    assert.equal(c.cli(['waiting', '--json']).code, 0);
    await c.stopNode('n3');
    const down = c.cli(['dead']);
    assert.equal(down.code, 1);
    assert.match(down.stderr, /^burrow: node n3 is unreachable \(/m);
    const bad = c.cli(['dead', '--retry', '--all']);
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /needs --node ID/);
  });
});
