import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { test } from 'node:test';
import { allFeatures, featureSet } from '../sim/features.ts';
import { simulate, type SimResult } from '../sim/simulate.ts';

/**
 * The short mode of the seeded simulation (the long mode is `npm run sim -- --seeds 10000`).
 * A failure names its seed; `npm run sim -- --seed N` replays it exactly.
 */

const all = featureSet(null, []);
const shortSeeds = 50;

test(`simulation: seeds 1..${shortSeeds} with every feature converge to the (hlc, node) winners`, async () => {
  const results: SimResult[] = [];
  for (let seed = 1; seed <= shortSeeds; seed++) results.push(await simulate({ seed, features: all }));
  // The runs must have done what they claim, or a passing run proves nothing.
  const sum = (k: keyof SimResult): number => results.reduce((s, r) => s + r[k], 0);
  assert.ok(sum('writes') > 50 * shortSeeds, `writes: ${sum('writes')}`);
  assert.ok(sum('writesRefused') > 0, 'some writes were refused (UNIQUE, NULL keys)');
  assert.ok(sum('rows') > 10 * shortSeeds, `rows at the end: ${sum('rows')}`);
  for (const k of ['shadowed', 'dropped', 'duplicated', 'restarts', 'ddlApplied', 'ddlWrites', 'schemaEntries', 'wipes', 'restores'] as const) assert.ok(sum(k) > 0, `${k}: ${sum(k)}`);
  assert.ok(results.some((r) => r.nodes === 3) && results.some((r) => r.nodes === 5), 'runs with 3 and 5 nodes');
});

test('simulation: each feature on its own converges (seeds 1..2; `npm run sim -- --features F --seeds N` for more)', async () => {
  for (const f of allFeatures) {
    for (let seed = 1; seed <= 2; seed++) await simulate({ seed, features: new Set([f]) });
  }
});

test('simulation: a seed replays exactly', async () => {
  const a = await simulate({ seed: 4242, features: all });
  const b = await simulate({ seed: 4242, features: all });
  assert.deepEqual(a, b);
});

test('simulation: a broken apply (older write wins) fails the run and prints the replay command', () => {
  const r = spawnSync(process.execPath, ['--import', 'tsx', 'test/sim/run.ts', '--seeds', '3'], {
    env: { ...process.env, BURROW_TEST_INVERT_LWW: '1' }, encoding: 'utf8', timeout: 60_000,
  });
  assert.equal(r.status, 1, r.stderr);
  assert.match(r.stderr, /FAILED seed 1: (replicas differ|replicas agree but table \w+ is not the \(hlc, node\) winners)/);
  assert.match(r.stderr, /replay: npm run sim -- --seed 1/);
});

test('simulation CLI: an unknown feature is a usage error naming it', () => {
  const r = spawnSync(process.execPath, ['--import', 'tsx', 'test/sim/run.ts', '--seed', '1', '--without', 'nocase,bogus'], { encoding: 'utf8', timeout: 60_000 });
  assert.equal(r.status, 2);
  assert.match(r.stderr, /--without: unknown feature "bogus"/);
});
