/**
 * The cost of [security] sign (issue 13): Ed25519 sealing and verifying per batch (micro), and
 * one writer's changes/s applied on all 3 nodes of a real cluster with signing + auth off and on,
 * alternating (off, on, off, on, …) so the shared machine's noise falls on both alike.
 *
 *   npm run bench:signing [-- --rounds 2 --seconds 8 --json out.json]
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import BetterSqlite3 from 'better-sqlite3';
import { TestCluster } from '../test/helpers/cluster.ts';
import { runWriter, sleep } from './harness.ts';
import { batchVersion, encodeBatch } from '../src/codec/batch-codec.ts';
import { encodeValues } from '../src/codec/value-codec.ts';
import { Opener, Sealer } from '../src/security/envelope.ts';
import { createUser } from '@nats-io/nkeys';

const { values: args } = parseArgs({ options: { rounds: { type: 'string', default: '2' }, seconds: { type: 'string', default: '8' }, json: { type: 'string' } } });
const rounds = Number(args.rounds);
const seconds = Number(args.seconds);
const log = (s: string) => process.stderr.write(s + '\n');
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

function micro(): Record<string, { bytes: number; sealUs: number; openUs: number; changesPerSCore: number }> {
  const kp = createUser();
  const seed = new TextDecoder().decode(kp.getSeed());
  const sealer = new Sealer('bench', 'n1', seed);
  const opener = new Opener('bench', new Map([['n1', kp.getPublicKey()]]));
  const out: ReturnType<typeof micro> = {};
  for (const n of [1, 100, 2000]) {
    const changes = Array.from({ length: n }, (_, i) => ({ t: 0, h: BigInt(i + 1) << 16n, d: 0 as const, k: encodeValues([BigInt(i)]), r: encodeValues([BigInt(i), `value ${i} `.padEnd(40, 'x'), BigInt(i)]) }));
    const payload = encodeBatch({ v: batchVersion, o: 'n1', s: 0, n: 1, tables: [{ n: 't', k: ['id'], c: ['id', 'v', 'n'] }], changes });
    const iters = Math.max(200, Math.round(200_000 / n));
    let sealed = sealer.seal('batch', payload);
    let t = performance.now();
    for (let i = 0; i < iters; i++) sealed = sealer.seal('batch', payload);
    const sealUs = ((performance.now() - t) * 1000) / iters;
    t = performance.now();
    for (let i = 0; i < iters; i++) if (!opener.open('batch', sealed).ok) throw new Error('does not verify');
    const openUs = ((performance.now() - t) * 1000) / iters;
    out[`${n} changes`] = { bytes: payload.length, sealUs, openUs, changesPerSCore: n / ((sealUs + openUs) / 1e6) };
    log(`  ${n} changes (${payload.length} B): seal ${sealUs.toFixed(1)} µs, verify ${openUs.toFixed(1)} µs`);
  }
  return out;
}

async function oneWriter(secure: boolean): Promise<number> {
  const c = await TestCluster.create({ nodes: 3, ...(secure ? { security: {} } : {}) });
  try {
    for (const n of c.nodes) {
      mkdirSync(path.dirname(n.db), { recursive: true });
      const d = new BetterSqlite3(n.db);
      d.pragma('journal_mode = WAL');
      d.exec('CREATE TABLE bench_tp1(id INTEGER PRIMARY KEY, v TEXT NOT NULL, n INTEGER)');
      d.close();
    }
    await c.start();
    await sleep(2000);
    const w = await runWriter({ db: c.node('n1').db, table: 'bench_tp1', mode: 'max', idStart: 1, seconds, rowsPerTx: 1000 });
    const readers = c.nodes.map((n) => new BetterSqlite3(n.db, { readonly: true }));
    try {
      const deadline = Date.now() + 300_000;
      for (;;) {
        const counts = readers.map((r) => Number(r.prepare('SELECT count(*) FROM bench_tp1').pluck().get()));
        if (counts.every((x) => x >= w.rows)) break;
        if (Date.now() > deadline) throw new Error(`counts ${counts.join(',')} never reached ${w.rows}\n${c.logs(10)}`);
        await sleep(10);
      }
    } finally {
      for (const r of readers) r.close();
    }
    const st = await c.status('n2');
    if (secure && !(st.security.verified > 0)) throw new Error('signing was not on');
    return w.rows / ((Date.now() - w.firstCommitMs) / 1000);
  } finally {
    await c.destroy();
  }
}

log('sealing and verifying one batch (this process, one core):');
const m = micro();
const off: number[] = [];
const on: number[] = [];
for (let r = 1; r <= rounds; r++) {
  log(`round ${r}/${rounds}: one writer on n1 for ${seconds} s, signing off…`);
  off.push(await oneWriter(false));
  log(`  ${Math.round(off.at(-1)!)} changes/s applied on all 3 nodes; signing + auth on…`);
  on.push(await oneWriter(true));
  log(`  ${Math.round(on.at(-1)!)} changes/s applied on all 3 nodes`);
}
const result = { micro: m, oneWriter: { off, on, medianOff: median(off), medianOn: median(on), ratio: median(on) / median(off) } };
log(`one writer, applied on all 3 nodes: median ${Math.round(result.oneWriter.medianOff)} changes/s without signing, ${Math.round(result.oneWriter.medianOn)} with (ratio ${result.oneWriter.ratio.toFixed(2)})`);
process.stdout.write(JSON.stringify(result, null, 2) + '\n');
if (args.json) writeFileSync(args.json, JSON.stringify(result, null, 2));
