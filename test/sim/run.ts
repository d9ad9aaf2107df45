import { parseArgs } from 'node:util';
import { featureSet, parseFeatures, type Feature } from './features.ts';
import { SimFailure, simulate } from './simulate.ts';

/**
 * The simulation from the command line:
 *   npm run sim -- --seed 42                 one seed (replays exactly)
 *   npm run sim -- --seeds 10000 [--from K]  K, K+1, … (default from 1)
 *   --features a,b | --without a,b           narrow a failing seed to the feature at fault
 *   --actions N   --keep-going   --trace N (actions printed on failure, default 40)
 * Exit 0 when every seed passed, 1 when one failed (its replay command is printed), 2 on bad usage.
 */

function usage(msg: string): never {
  process.stderr.write(`sim: ${msg}\nusage: npm run sim -- (--seed N | --seeds COUNT [--from N]) [--features a,b | --without a,b] [--actions N] [--keep-going]\n`);
  process.exit(2);
}

function intArg(v: string | undefined, name: string, dflt: number): number {
  if (v === undefined) return dflt;
  const n = Number(v);
  if (!Number.isSafeInteger(n) || n < 0) usage(`--${name} must be a non-negative integer, got "${v}"`);
  return n;
}

async function main(): Promise<void> {
  let a;
  try {
    a = parseArgs({
      options: {
        seed: { type: 'string' }, seeds: { type: 'string' }, from: { type: 'string' }, features: { type: 'string' },
        without: { type: 'string' }, actions: { type: 'string' }, trace: { type: 'string' }, 'keep-going': { type: 'boolean' },
      },
    }).values;
  } catch (err) {
    usage((err as Error).message);
  }
  if ((a.seed === undefined) === (a.seeds === undefined)) usage('give --seed N or --seeds COUNT');
  let only: Feature[] | null;
  let without: Feature[];
  try {
    only = a.features !== undefined ? parseFeatures(a.features, '--features') : null;
    without = a.without !== undefined ? parseFeatures(a.without, '--without') : [];
  } catch (err) {
    usage((err as Error).message);
  }
  const features = featureSet(only, without);
  const from = a.seed !== undefined ? intArg(a.seed, 'seed', 1) : intArg(a.from, 'from', 1);
  const count = a.seed !== undefined ? 1 : intArg(a.seeds, 'seeds', 1);
  const actions = intArg(a.actions, 'actions', 150);
  const flags = [a.features !== undefined ? `--features ${a.features}` : '', a.without !== undefined ? `--without ${a.without}` : '', a.actions !== undefined ? `--actions ${actions}` : ''].filter(Boolean).join(' ');
  const started = Date.now();
  const failed: number[] = [];
  const summed = ['writes', 'batches', 'deliveries', 'rows', 'shadowed', 'restarts', 'wipes', 'restores', 'ddlApplied', 'ddlWrites', 'schemaEntries'] as const;
  const totals = Object.fromEntries(summed.map((k) => [k, 0])) as Record<(typeof summed)[number], number>;
  for (let seed = from; seed < from + count; seed++) {
    try {
      const r = await simulate({ seed, features, actions });
      for (const k of summed) totals[k] += r[k];
      if (count === 1) process.stdout.write(`${JSON.stringify(r)}\n`);
    } catch (err) {
      failed.push(seed);
      if (err instanceof SimFailure) {
        process.stderr.write(`\nFAILED ${err.message}\nlast actions:\n${err.trace.slice(-intArg(a.trace, 'trace', 40)).map((t) => `  ${t}`).join('\n')}\n`);
      } else {
        process.stderr.write(`\nFAILED seed ${seed}: ${(err as Error)?.stack ?? String(err)}\n`);
      }
      process.stderr.write(`replay: npm run sim -- --seed ${seed}${flags ? ` ${flags}` : ''}\n`);
      if (!a['keep-going']) break;
    }
    const done = seed - from + 1;
    if (count > 1 && done % 100 === 0) process.stderr.write(`sim: ${done}/${count} seeds, ${failed.length} failed, ${Math.round((Date.now() - started) / 1000)} s\n`);
  }
  const summary = { from, seeds: count, failed, features: [...features], seconds: Math.round((Date.now() - started) / 100) / 10, ...totals };
  process.stdout.write(`${JSON.stringify(summary)}\n`);
  process.exit(failed.length > 0 ? 1 : 0);
}

await main();
