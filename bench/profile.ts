/**
 * CPU profile of burrow's nodes under the one-writer throughput load: n1 (the writer's node:
 * capture, stamping, publishing) and n2 (a receiver: consuming, applying) run with
 * `node --cpu-prof`; prints the functions with the most self time per node.
 *
 *   npx tsx bench/profile.ts [--seconds 8] [--top 25]
 */
import { mkdirSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import BetterSqlite3 from 'better-sqlite3';
import { TestCluster } from '../test/helpers/cluster.ts';
import { runWriter } from './harness.ts';

const { values } = parseArgs({ options: { seconds: { type: 'string', default: '8' }, top: { type: 'string', default: '25' } } });
const c = await TestCluster.create({ nodes: 3 });
const profDir = path.join(c.dir, 'profiles');
for (const id of ['n1', 'n2']) c.node(id).execArgv = ['--cpu-prof', `--cpu-prof-dir=${path.join(profDir, id)}`];
for (const n of c.nodes) {
  mkdirSync(path.dirname(n.db), { recursive: true });
  const d = new BetterSqlite3(n.db);
  d.pragma('journal_mode = WAL');
  d.exec('CREATE TABLE bench_tp(id INTEGER PRIMARY KEY, v TEXT NOT NULL, n INTEGER)');
  d.close();
}
try {
  await c.start();
  const { rows } = await runWriter({ db: c.node('n1').db, table: 'bench_tp', mode: 'max', idStart: 1, seconds: Number(values.seconds), rowsPerTx: 1000 });
  await c.waitFor('every node has every row', () => c.nodes.every((n) => Number(c.query<{ n: bigint }>(n.id, 'SELECT count(*) n FROM bench_tp')[0]!.n) >= rows), 300_000, 100);
  for (const id of ['n1', 'n2']) await c.stopNode(id); // a clean exit writes the profile
  for (const id of ['n1', 'n2']) {
    const dir = path.join(profDir, id);
    // The node process's profile is the largest (tsx may also profile its own loader).
    const files = readdirSync(dir).map((f) => path.join(dir, f));
    const file = files.sort((a, b) => readFileSync(b).length - readFileSync(a).length)[0]!;
    console.log(`\n${id}: ${rows} rows; top self time (${file})`);
    for (const [name, ms, pct] of summarize(file, Number(values.top))) console.log(`  ${pct.toFixed(1).padStart(5)}%  ${ms.toFixed(0).padStart(6)} ms  ${name}`);
  }
} finally {
  await c.destroy(true);
}

interface ProfileNode { id: number; callFrame: { functionName: string; url: string; lineNumber: number }; hitCount?: number }
function summarize(file: string, top: number): [string, number, number][] {
  const prof = JSON.parse(readFileSync(file, 'utf8')) as { nodes: ProfileNode[]; samples: number[]; timeDeltas: number[] };
  const byId = new Map(prof.nodes.map((n) => [n.id, n]));
  const self = new Map<string, number>();
  prof.samples.forEach((id, i) => {
    const n = byId.get(id)!;
    const f = n.callFrame;
    const name = `${f.functionName || '(anonymous)'} ${f.url ? `${path.basename(f.url)}:${f.lineNumber + 1}` : ''}`.trim();
    self.set(name, (self.get(name) ?? 0) + (prof.timeDeltas[i] ?? 0) / 1000);
  });
  const total = [...self.values()].reduce((a, b) => a + b, 0);
  return [...self.entries()].sort((a, b) => b[1] - a[1]).slice(0, top).map(([k, v]) => [k, v, (100 * v) / total]);
}
