/** Pieces the benchmark tools share: the writer process, the lag tables, percentiles. */
import { spawn } from 'node:child_process';
import path from 'node:path';
import { repoRoot } from '../test/helpers/cluster.ts';

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
export const nowMs = () => performance.timeOrigin + performance.now();

/** The p-th percentile (nearest rank) of `xs`; NaN when empty. */
export function pct(xs: readonly number[], p: number): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]!;
}

/** Run bench/writer.ts (an application writing into a node's SQLite file) with `job`; its result line. */
export function runWriter(job: Record<string, unknown>): Promise<{ rows: number; firstCommitMs: number; lastCommitMs: number }> {
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, ['--import', 'tsx', path.join(repoRoot, 'bench', 'writer.ts'), JSON.stringify(job)], { stdio: ['ignore', 'pipe', 'inherit'], cwd: repoRoot });
    let out = '';
    p.stdout.on('data', (d) => (out += d));
    p.on('exit', (code) => (code === 0 ? resolve(JSON.parse(out)) : reject(new Error(`writer exited ${code}`))));
  });
}

/** The lag tables: rows carry their commit time; bench_arrival gets their arrival time on receivers. */
export const lagTablesSql = `CREATE TABLE bench_lag(id INTEGER PRIMARY KEY, at REAL NOT NULL, pad TEXT);
  CREATE TABLE bench_arrival(id INTEGER PRIMARY KEY, at REAL NOT NULL);`;

/**
 * Stamp each lag row's arrival inside burrow's apply transaction: the trigger is replicated like
 * any schema object, so it fires only while burrow applies (`__burrow_state.applying`, the flag
 * its capture triggers read) — on receivers, never for the writer's own inserts — and burrow does
 * not capture writes made while it applies, so the arrival rows stay local.
 */
export const arrivalTriggerSql = `CREATE TRIGGER bench_arrival_stamp AFTER INSERT ON bench_lag WHEN (SELECT applying FROM __burrow_state) = 1 BEGIN
  INSERT INTO bench_arrival(id, at) VALUES (NEW.id, (julianday('now') - 2440587.5) * 86400000.0); END`;
