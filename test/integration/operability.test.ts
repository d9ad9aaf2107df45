import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
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
});
