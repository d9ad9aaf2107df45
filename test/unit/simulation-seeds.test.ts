import { test } from 'node:test';
import { runSeedsWithEveryFeature, shortSeeds } from '../sim/short-mode.ts';

/** The short mode's second half of seeds (simulation.test.ts has the first): a file of its own runs beside the others. */

const half = shortSeeds / 2;

test(`simulation: seeds ${half + 1}..${shortSeeds} with every feature converge to the (hlc, node) winners`, async () => {
  await runSeedsWithEveryFeature(half + 1, shortSeeds);
});
