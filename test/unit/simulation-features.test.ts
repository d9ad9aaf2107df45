import { test } from 'node:test';
import { allFeatures } from '../sim/features.ts';
import { simulate } from '../sim/simulate.ts';

/** Each feature of the simulation on its own (a file of its own: it runs beside the seeds of simulation.test.ts). */

test('simulation: each feature on its own converges (seeds 1..2; `npm run sim -- --features F --seeds N` for more)', async () => {
  for (const f of allFeatures) {
    for (let seed = 1; seed <= 2; seed++) await simulate({ seed, features: new Set([f]) });
  }
});
