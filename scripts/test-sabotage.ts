/**
 * npm run test:sabotage — proves the checkers can fire. Each case breaks burrow on purpose
 * (test-only switches, src/util/sabotage.ts) and runs a check that must then FAIL, for the
 * expected reason: the chaos short mode (its violation kinds), named integration tests (they
 * must fail), and the simulation. Exit 0 only when every case failed as expected.
 *
 *   npm run test:sabotage [-- --only drop-acked,invert-lww]
 */
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { runChaos } from '../chaos/run.ts';
import type { Violation } from '../chaos/checker.ts';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

interface ChaosCase {
  readonly name: string;
  readonly sabotage: string[];
  /** Violation kinds the run must report (each of them). */
  readonly expect: Violation['kind'][];
}

interface TestCase {
  readonly name: string;
  readonly sabotage: string;
  /** Test files and name patterns that must fail under the switch. */
  readonly file: string;
  readonly pattern: string;
}

const chaosCases: ChaosCase[] = [
  { name: 'invert-lww', sabotage: ['invert-lww'], expect: ['wrong-winner'] },
  { name: 'drop-acked', sabotage: ['drop-acked:8'], expect: ['lost-write', 'divergence'] },
  { name: 'corrupt-published', sabotage: ['corrupt-published:8'], expect: ['undecodable-batch'] },
  { name: 'no-echo-suppression', sabotage: ['no-echo-suppression'], expect: ['phantom-change'] },
  { name: 'uncaptured-write', sabotage: ['uncaptured-write'], expect: ['phantom-row', 'divergence'] },
];

const testCases: TestCase[] = [
  { name: 'invert-lww: simulation', sabotage: 'invert-lww', file: 'test/unit/simulation.test.ts', pattern: 'seeds 1\\.\\.' },
  { name: 'invert-lww: stamp-before-apply winners', sabotage: 'invert-lww', file: 'test/integration/stamp-before-apply.test.ts', pattern: 'one winner' },
  { name: 'invert-lww: concurrent conflicting writes', sabotage: 'invert-lww', file: 'test/integration/replication.test.ts', pattern: 'concurrent conflicting writes' },
  { name: 'invert-lww: delete racing an update', sabotage: 'invert-lww', file: 'test/integration/replication.test.ts', pattern: 'delete racing' },
];

function runTest(t: TestCase): { failed: boolean; tail: string } {
  const r = spawnSync(process.execPath, ['--import', 'tsx', '--test', '--test-timeout=300000', `--test-name-pattern=${t.pattern}`, t.file], {
    cwd: repoRoot, env: { ...process.env, BURROW_TEST_SABOTAGE: t.sabotage }, encoding: 'utf8', timeout: 600_000,
  });
  const out = `${r.stdout}${r.stderr}`;
  const ran = /# pass (\d+)/.exec(out) && /# fail (\d+)/.exec(out);
  const fail = Number(/# fail (\d+)/.exec(out)?.[1] ?? 0);
  // Failed for the reason that matters: in the test's own code (an assertion, a wait for
  // convergence that timed out, a simulation failure), not in a hook (a cluster that did not start).
  const assertion = /failureType: 'testCodeFailure'/.test(out) && !/failureType: 'hookFailed'/.test(out);
  return { failed: Boolean(ran) && fail > 0 && r.status !== 0 && assertion, tail: out.split('\n').slice(-25).join('\n') };
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { only: { type: 'string' } } });
  const only = values.only?.split(',').filter(Boolean);
  const pick = (name: string) => !only || only.some((o) => name.startsWith(o));
  const results: { name: string; ok: boolean; detail: string }[] = [];
  for (const k of chaosCases.filter((k) => pick(k.name))) {
    const lines: string[] = [];
    const started = Date.now();
    const r = await runChaos({
      nodes: 3, durationS: 15, seed: 7, sabotage: k.sabotage, convergeTimeoutMs: 5000, quiesceTimeoutMs: 30_000, log: (l) => lines.push(l),
    });
    const kinds = new Set(r.violations.map((v) => v.kind));
    const missing = k.expect.filter((e) => !kinds.has(e));
    const ok = !r.ok && missing.length === 0;
    results.push({ name: `chaos ${k.name}`, ok, detail: `violations: ${[...kinds].join(', ') || 'none'}${missing.length ? `; MISSING ${missing.join(', ')}` : ''} (${Math.round((Date.now() - started) / 1000)} s)` });
    if (!ok) process.stderr.write(`${lines.join('\n')}\n`);
    process.stdout.write(`${ok ? 'ok  ' : 'FAIL'} chaos ${k.name}: ${results.at(-1)!.detail}\n`);
  }
  for (const t of testCases.filter((t) => pick(t.name))) {
    const started = Date.now();
    const r = runTest(t);
    results.push({ name: t.name, ok: r.failed, detail: `${r.failed ? 'failed as it must' : 'DID NOT FAIL'} (${Math.round((Date.now() - started) / 1000)} s)` });
    if (!r.failed) process.stderr.write(`${r.tail}\n`);
    process.stdout.write(`${r.failed ? 'ok  ' : 'FAIL'} ${t.name}: ${results.at(-1)!.detail}\n`);
  }
  const bad = results.filter((r) => !r.ok);
  process.stdout.write(`${JSON.stringify({ cases: results.length, caught: results.length - bad.length, notCaught: bad.map((b) => b.name) })}\n`);
  process.exitCode = bad.length === 0 && results.length > 0 ? 0 : 1;
}

await main();
