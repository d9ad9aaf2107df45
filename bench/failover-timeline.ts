/**
 * Failover, shard by shard: a 3-node cluster, 500 single-row writes/s on n1; after 5 s the
 * nats-server leading the most streams (not n1's) is SIGKILLed. For each stream that carried n1's
 * writes after the kill: the longest publish stall (COMMIT → seen on the wire), the longest
 * delivery stall (wire → applied on the surviving node), and when JetStream re-elected the
 * stream's leader and the survivor's consumer leader (polled every 200 ms; "?" = not seen within
 * 20 s). A detoured batch is counted on the stream that carried it.
 *
 *   npx tsx bench/failover-timeline.ts        (LOGS=1 also prints the node logs)
 */
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import BetterSqlite3 from 'better-sqlite3';
import { connect } from '@nats-io/transport-node';
import { jetstreamManager } from '@nats-io/jetstream';
import { TestCluster } from '../test/helpers/cluster.ts';
import { arrivalTriggerSql, lagTablesSql, nowMs, runWriter, sleep } from './harness.ts';
import { decodeBatch } from '../src/codec/batch-codec.ts';
import { unsealUnverified } from '../src/security/envelope.ts';
import { decodeValues } from '../src/codec/value-codec.ts';
import { streamName } from '../src/shard/shard-router.ts';

const c = await TestCluster.create({ nodes: 3 });
for (const n of c.nodes) {
  mkdirSync(path.dirname(n.db), { recursive: true });
  const d = new BetterSqlite3(n.db);
  d.pragma('journal_mode = WAL');
  d.exec(lagTablesSql);
  d.exec(arrivalTriggerSql); // on every node: it is replicated anyway, and fires only on receivers
  d.close();
}
try {
  await c.start(90_000);
  await sleep(8000);
  const nc = await connect({ servers: [c.node('n1').natsUrl] });
  const jsm = await jetstreamManager(nc, { timeout: 1000 });
  const wire = new Map<number, number>();
  const shardOf = new Map<number, number>();
  const sub = nc.subscribe(`burrow.${c.clusterName}.s.>`);
  void (async () => { for await (const m of sub) { const t = nowMs(); const b = decodeBatch(unsealUnverified(m.data)); for (const ch of b.changes) { const k = Number(decodeValues(ch.k)[0]); if (!wire.has(k)) wire.set(k, t); shardOf.set(k, b.o === 'n1' ? Number(m.subject.split('.').at(-1)) : -1); } } })();
  const leaders = new Map<string, number>();
  const streamLeader: string[] = [];
  for (let s = 0; s < 16; s++) { const l = (await jsm.streams.info(streamName(c.clusterName, s))).cluster?.leader ?? ''; streamLeader[s] = l; leaders.set(l, (leaders.get(l) ?? 0) + 1); }
  const victim = [...leaders.entries()].filter(([id]) => id !== 'n1').sort((a, b) => b[1] - a[1])[0]![0];
  const survivor = victim === 'n2' ? 'n3' : 'n2';
  // Nodes read with in-memory ordered consumers (no consumer leaders to elect): only stream leaders move.
  console.log(`victim ${victim}; streams led: ${streamLeader.map((l, s) => l === victim ? s : -1).filter((s) => s >= 0)}; survivor ${survivor}`);
  const writer = runWriter({ db: c.node('n1').db, mode: 'rate', idStart: 1, seconds: 20, ratePerSec: 500 });
  await sleep(5000);
  const killedAt = nowMs();
  process.kill(c.natsPid(victim)!, 'SIGKILL');
  // watch leader elections
  const newStreamLeaderAt: number[] = [];
  const watch = (async () => {
    while (nowMs() - killedAt < 20000) {
      await Promise.all(Array.from({ length: 16 }, async (_, s) => {
        if (streamLeader[s] === victim && newStreamLeaderAt[s] === undefined) {
          try { const l = (await jsm.streams.info(streamName(c.clusterName, s))).cluster?.leader; if (l && l !== victim) newStreamLeaderAt[s] = nowMs() - killedAt; } catch {}
        }
      }));
      await sleep(200);
    }
  })();
  const { rows } = await writer;
  await watch;
  await c.waitFor('all', () => Number(c.query<{ n: bigint }>(survivor, 'SELECT count(*) n FROM bench_arrival')[0]!.n) >= rows, 120_000, 50);
  const d = new BetterSqlite3(c.node(survivor).db, { readonly: true });
  const rs = d.prepare('SELECT l.id, l.at c, a.at a FROM bench_arrival a JOIN bench_lag l ON l.id = a.id').all() as { id: number; c: number; a: number }[];
  const per = new Map<number, { pub: number; del: number; tot: number }>();
  for (const r of rs) {
    if (r.c < killedAt - 100) continue;
    const s = shardOf.get(r.id) ?? -2; const w = wire.get(r.id) ?? NaN;
    const e = per.get(s) ?? { pub: 0, del: 0, tot: 0 };
    e.pub = Math.max(e.pub, w - r.c); e.del = Math.max(e.del, r.a - w); e.tot = Math.max(e.tot, r.a - r.c);
    per.set(s, e);
  }
  for (const [s, e] of [...per.entries()].sort((a, b) => a[0] - b[0])) {
    console.log(`stream ${String(s).padStart(2)}: publish stall ${e.pub.toFixed(0).padStart(6)}  delivery stall ${e.del.toFixed(0).padStart(6)}  total ${e.tot.toFixed(0).padStart(6)}  stream leader ${streamLeader[s] === victim ? 're-elected at ' + (newStreamLeaderAt[s]?.toFixed(0) ?? '?') : 'kept'}`);
  }
  if (process.env.LOGS) console.log(c.logs(40));
  await nc.close();
} finally {
  await c.destroy();
}
