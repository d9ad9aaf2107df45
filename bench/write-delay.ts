/**
 * Replication delay of single writes against a running cluster (e.g. `burrow up`):
 * one row per transaction on the first node, spaced apart, each timed from its COMMIT until it is
 * visible on every other node (polled through read-only connections). Prints a table and JSON.
 *
 *   npx tsx bench/write-delay.ts --config cluster.toml [--writes 200] [--gap-ms 20] [--json out.json]
 */
import { parseArgs } from 'node:util';
import { writeFileSync } from 'node:fs';
import BetterSqlite3 from 'better-sqlite3';
import { loadConfig } from '../src/config/config.ts';

const { values } = parseArgs({
  options: {
    config: { type: 'string', default: 'cluster.toml' },
    writes: { type: 'string', default: '200' },
    'gap-ms': { type: 'string', default: '20' },
    json: { type: 'string' },
  },
});
const config = loadConfig(values.config!);
const [first, ...others] = config.nodes;
if (!first || others.length === 0) throw new Error('need at least two nodes');
const writes = Number(values.writes);
const gapMs = Number(values['gap-ms']);

const w = new BetterSqlite3(first.db, { timeout: 10_000 });
w.pragma('journal_mode = WAL');
w.exec('CREATE TABLE IF NOT EXISTS bench_delay(id INTEGER PRIMARY KEY, at_ms REAL)');
const readers = others.map((n) => {
  const d = new BetterSqlite3(n.db, { timeout: 10_000 });
  d.exec('CREATE TABLE IF NOT EXISTS bench_delay(id INTEGER PRIMARY KEY, at_ms REAL)');
  return { id: n.id, stmt: d.prepare('SELECT 1 FROM bench_delay WHERE id = ?').pluck(), d };
});
await new Promise((r) => setTimeout(r, 200)); // every node notices the table
const base = Number(w.prepare('SELECT coalesce(max(id), 0) FROM bench_delay').pluck().get());
const insert = w.prepare('INSERT INTO bench_delay(id, at_ms) VALUES (?, ?)');
const delays: Record<string, number[]> = Object.fromEntries(readers.map((r) => [r.id, []]));
const all: number[] = [];
for (let i = 1; i <= writes; i++) {
  const id = base + i;
  insert.run(id, performance.now());
  const t0 = performance.now();
  const pending = new Set(readers);
  let worst = 0;
  while (pending.size > 0) {
    for (const r of [...pending]) {
      if (r.stmt.get(id) !== undefined) {
        const ms = performance.now() - t0;
        delays[r.id]!.push(ms);
        worst = Math.max(worst, ms);
        pending.delete(r);
      }
    }
    if (performance.now() - t0 > 10_000) throw new Error(`write ${id} not visible everywhere after 10 s`);
    // 1 ms timer, not a busy loop: a spinning poller would steal a core from the nodes it measures.
    if (pending.size > 0) await new Promise((r) => setTimeout(r, 1));
  }
  all.push(worst);
  if (worst > 100) console.log(`slow write #${i}: ${worst.toFixed(1)} ms`);
  await new Promise((r) => setTimeout(r, gapMs));
}
const pct = (xs: number[], p: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]!;
};
const summary = (xs: number[]) => ({ p50: pct(xs, 50), p90: pct(xs, 90), p99: pct(xs, 99), max: Math.max(...xs) });
const result = {
  writes, gapMs,
  perNode: Object.fromEntries(Object.entries(delays).map(([id, xs]) => [id, summary(xs)])),
  allNodes: summary(all),
};
const f = (x: number) => x.toFixed(2).padStart(8);
console.log(`single-write replication delay, ${writes} writes on ${first.id}, COMMIT → visible (ms)`);
console.log('node          p50      p90      p99      max');
for (const [id, s] of Object.entries(result.perNode)) console.log(`${id.padEnd(8)}${f(s.p50)} ${f(s.p90)} ${f(s.p99)} ${f(s.max)}`);
console.log(`${'all'.padEnd(8)}${f(result.allNodes.p50)} ${f(result.allNodes.p90)} ${f(result.allNodes.p99)} ${f(result.allNodes.max)}`);
if (values.json) writeFileSync(values.json, JSON.stringify(result, null, 2));
w.close();
for (const r of readers) r.d.close();
