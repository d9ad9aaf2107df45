import assert from 'node:assert/strict';
import { featureSet } from './features.ts';
import { simulate, type SimResult } from './simulate.ts';

/**
 * The short mode of the seeded simulation, as `npm test` runs it: seeds 1..50 with every feature,
 * split over test files (test/unit/simulation*.test.ts) so the runner's two slots share them.
 * A failure names its seed; `npm run sim -- --seed N` replays it exactly.
 */
export const shortSeeds = 50;
export const allFeaturesOn = featureSet(null, []);

/** Runs seeds from..to with every feature and checks the runs did what they claim (or a pass proves nothing). */
export async function runSeedsWithEveryFeature(from: number, to: number): Promise<void> {
  const results: SimResult[] = [];
  for (let seed = from; seed <= to; seed++) results.push(await simulate({ seed, features: allFeaturesOn }));
  const n = to - from + 1;
  const sum = (k: keyof SimResult): number => results.reduce((s, r) => s + r[k], 0);
  assert.ok(sum('writes') > 50 * n, `writes: ${sum('writes')}`);
  assert.ok(sum('writesRefused') > 0, 'some writes were refused (UNIQUE, NULL keys)');
  assert.ok(sum('rows') > 10 * n, `rows at the end: ${sum('rows')}`);
  for (const k of ['shadowed', 'dropped', 'duplicated', 'restarts', 'ddlApplied', 'ddlWrites', 'schemaEntries', 'wipes', 'restores'] as const) assert.ok(sum(k) > 0, `${k}: ${sum(k)}`);
  assert.ok(results.some((r) => r.nodes === 3) && results.some((r) => r.nodes === 5), 'runs with 3 and 5 nodes');
}
