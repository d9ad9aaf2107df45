import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { test } from 'node:test';
import { simulate } from '../sim/simulate.ts';
import { allFeaturesOn, runSeedsWithEveryFeature, shortSeeds } from '../sim/short-mode.ts';

/**
 * The short mode of the seeded simulation (the long mode is `npm run sim -- --seeds 10000`), first
 * half of its seeds; the second half is in simulation-seeds.test.ts, each feature on its own in
 * simulation-features.test.ts (separate files: the runner gives each its own slot).
 */

const half = shortSeeds / 2;

test(`simulation: seeds 1..${half} with every feature converge to the (hlc, node) winners`, async () => {
  await runSeedsWithEveryFeature(1, half);
});

test('simulation: a seed replays exactly', async () => {
  const a = await simulate({ seed: 4242, features: allFeaturesOn });
  const b = await simulate({ seed: 4242, features: allFeaturesOn });
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
