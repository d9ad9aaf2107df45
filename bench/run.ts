/**
 * `npm run bench [-- --json FILE] [--seconds N]`: burrow's figures and the limits they are bounded
 * by, measured in one run on this machine, printed as a table and written as JSON.
 *
 *  1. capture overhead   app inserts/s into a plain table vs the same table with burrow's triggers
 *  2. throughput         one writer on n1 (1000-row transactions), then writers on all 3 nodes:
 *                        changes/s from the first commit until the last node applied the last row
 *  3. lag                single-row writes at 1k/s and 5k/s on n1 on a settled cluster, and at 1k/s
 *                        right after a 200k-row burst: COMMIT → applied on n2/n3; nats-server CPU
 *                        per published message in each phase
 *  4. limits             raw better-sqlite3 insert rate; raw JetStream R3 publish rate of messages
 *                        of burrow's batch size with burrow's in-flight window; JetStream's own
 *                        publish → delivery latency read the way nodes read (R1 in-memory consumers)
 *  5. failover           the nats-server leading stream(s) is SIGKILLed (and restarted by its node)
 *                        under 500 writes/s: how long writes take to reach the other nodes
 *  6. join               n4 (in cluster.toml from the start, never started) starts with an empty
 *                        folder: time until ready (a peer takes a snapshot, n4 restores it) and rows/s
 */
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync, mkdirSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import BetterSqlite3 from 'better-sqlite3';
import { connect } from '@nats-io/transport-node';
import { jetstream, jetstreamManager, RetentionPolicy, StorageType, DiscardPolicy, AckPolicy, DeliverPolicy } from '@nats-io/jetstream';
import { TestCluster } from '../test/helpers/cluster.ts';
import { arrivalTriggerSql, lagTablesSql, nowMs, pct, runWriter, sleep } from './harness.ts';
import { Database } from '../src/sqlite/database.ts';
import { ClockStore } from '../src/store/clock-store.ts';
import { Capture } from '../src/capture/capture.ts';
import { silentLogger } from '../src/util/log.ts';
import { streamName } from '../src/shard/shard-router.ts';
import { decodeBatch } from '../src/codec/batch-codec.ts';
import { unsealUnverified } from '../src/security/envelope.ts';
import { decodeValues } from '../src/codec/value-codec.ts';

const { values } = parseArgs({ options: {
  json: { type: 'string' }, seconds: { type: 'string', default: '10' },
  only: { type: 'string', default: 'capture,throughput,lag,limits,failover,join' },
} });
const seconds = Number(values.seconds);
const only = new Set(values.only!.split(','));
const median = (xs: number[]) => pct(xs, 50);
const log = (s: string) => process.stderr.write(`bench: ${s}\n`);

// ---------------------------------------------------------------- 1. capture overhead + SQLite limit
function insertRate(file: string, rowsPerTx: number, ms: number): number {
  const db = new BetterSqlite3(file);
  db.pragma('journal_mode = WAL');
  db.pragma('synchronous = NORMAL');
  const ins = db.prepare('INSERT INTO t(id, v, n) VALUES (?, ?, ?)');
  let id = Number(db.prepare('SELECT coalesce(max(id), 0) FROM t').pluck().get()) + 1;
  const tx = db.transaction(() => {
    for (let i = 0; i < rowsPerTx; i++) ins.run(id++, 'burrow benchmark row payload 0123456789abcdef', i);
  });
  let rows = 0;
  const t0 = nowMs();
  while (nowMs() - t0 < ms) {
    if (rowsPerTx === 1) ins.run(id++, 'burrow benchmark row payload 0123456789abcdef', 1);
    else tx();
    rows += rowsPerTx;
  }
  const rate = rows / ((nowMs() - t0) / 1000);
  db.close();
  return rate;
}

function captureOverhead(dir: string) {
  const plain = path.join(dir, 'plain.db');
  const captured = path.join(dir, 'captured.db');
  for (const f of [plain, captured]) {
    const d = new BetterSqlite3(f);
    d.pragma('journal_mode = WAL');
    d.exec('CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT NOT NULL, n INTEGER)');
    d.close();
  }
  const db = Database.open(captured, { synchronous: 'NORMAL', busyTimeoutMs: 5000 });
  new Capture(db, new ClockStore(db), silentLogger).refresh();
  db.close();
  const out: Record<string, number[]> = { plain1: [], captured1: [], plain1000: [], captured1000: [] };
  for (let round = 0; round < 3; round++) {
    out.plain1!.push(insertRate(plain, 1, 1000));
    out.captured1!.push(insertRate(captured, 1, 1000));
    out.plain1000!.push(insertRate(plain, 1000, 1000));
    out.captured1000!.push(insertRate(captured, 1000, 1000));
  }
  const m = { plain1: median(out.plain1!), captured1: median(out.captured1!), plain1000: median(out.plain1000!), captured1000: median(out.captured1000!) };
  return {
    singleRowTx: { plainPerS: m.plain1, capturedPerS: m.captured1, ratio: m.captured1 / m.plain1 },
    thousandRowTx: { plainPerS: m.plain1000, capturedPerS: m.captured1000, ratio: m.captured1000 / m.plain1000 },
    rounds: out,
  };
}

// ---------------------------------------------------------------- cluster helpers
async function waitCount(c: TestCluster, table: string, want: number, timeoutMs: number, ids = ['n1', 'n2', 'n3']): Promise<number> {
  const readers = ids.map((id) => new BetterSqlite3(c.node(id).db, { readonly: true }));
  try {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const counts = readers.map((r) => Number(r.prepare(`SELECT count(*) FROM ${table}`).pluck().get()));
      if (counts.every((x) => x >= want)) return nowMs();
      if (Date.now() > deadline) throw new Error(`${table}: counts ${counts.join(',')} never reached ${want}\n${c.logs(10)}`);
      await sleep(10);
    }
  } finally {
    for (const r of readers) r.close();
  }
}

function arrivals(c: TestCluster, id: string, from: number, to: number): { id: number; commit: number; arrival: number }[] {
  const d = new BetterSqlite3(c.node(id).db, { readonly: true });
  try {
    return d.prepare('SELECT l.id, l.at AS "commit", a.at AS arrival FROM bench_arrival a JOIN bench_lag l ON l.id = a.id WHERE a.id BETWEEN ? AND ?')
      .all(from, to) as { id: number; commit: number; arrival: number }[];
  } finally {
    d.close();
  }
}

/**
 * JetStream by itself, read the way burrow's nodes read: 16 R3 file streams with limits
 * retention, and per server and stream an ephemeral consumer (R1, in memory, no acks) pulled
 * with the nodes' options; one publisher at `msgsPerS`; latency = publish → delivered to the
 * consumers of the two other servers.
 */
async function rawDeliveryLatency(c: TestCluster, msgsPerS: number, bytes: number, secs: number) {
  const ncs = await Promise.all(['n1', 'n2', 'n3'].map((id) => connect({ servers: c.node(id).natsUrl, noAsyncTraces: true })));
  const jsm = await jetstreamManager(ncs[0]!);
  const shards = 16;
  const name = (s: number) => `bench_lat_${c.clusterName}_${s}`;
  const delivered: number[] = [];
  const acked: number[] = [];
  const iters: { close(): Promise<void | Error> }[] = [];
  try {
    for (let s = 0; s < shards; s++) {
      await jsm.streams.add({ name: name(s), subjects: [`bench.lat.${s}`], storage: StorageType.File, num_replicas: 3, retention: RetentionPolicy.Limits, discard: DiscardPolicy.Old, max_bytes: 256 * 1024 * 1024 });
    }
    for (let n = 0; n < ncs.length; n++) {
      const js = jetstream(ncs[n]!);
      const jsmN = await jetstreamManager(ncs[n]!);
      for (let s = 0; s < shards; s++) {
        const ci = await jsmN.consumers.add(name(s), { ack_policy: AckPolicy.None, deliver_policy: DeliverPolicy.All, mem_storage: true, num_replicas: 1, inactive_threshold: 30_000_000_000 });
        const consumer = js.consumers.getConsumerFromInfo(ci);
        iters.push(await consumer.consume({ max_messages: 256, expires: 2000, idle_heartbeat: 500, callback: (m) => {
          if (n > 0) delivered.push(nowMs() - new DataView(m.data.buffer, m.data.byteOffset, 8).getFloat64(0));
        } }));
      }
    }
    const js = jetstream(ncs[0]!);
    const t0 = nowMs();
    let sent = 0;
    const pending: Promise<unknown>[] = [];
    while (nowMs() - t0 < secs * 1000) {
      const due = Math.floor(((nowMs() - t0) / 1000) * msgsPerS);
      while (sent < due) {
        const payload = new Uint8Array(Math.max(8, bytes));
        const at = nowMs();
        new DataView(payload.buffer).setFloat64(0, at);
        pending.push(js.publish(`bench.lat.${sent % shards}`, payload).then(() => acked.push(nowMs() - at), () => {}));
        sent++;
      }
      await sleep(1);
    }
    await Promise.all(pending);
    await sleep(1000);
    return { msgsPerS, messageBytes: bytes, publishAck: summarize(acked), delivered: summarize(delivered) };
  } finally {
    for (const it of iters) await it.close().catch(() => {});
    for (let s = 0; s < shards; s++) await jsm.streams.delete(name(s)).catch(() => {});
    for (const nc of ncs) await nc.close();
  }
}

/** CPU time (user + system, ms) each node's nats-server has used so far (/proc/<pid>/stat, 100 ticks/s). */
function natsCpuMs(c: TestCluster, ids: readonly string[]): number[] {
  return ids.map((id) => {
    const pid = c.natsPid(id);
    try {
      const f = readFileSync(`/proc/${pid}/stat`, 'utf8');
      const fields = f.slice(f.lastIndexOf(')') + 2).split(' ');
      return (Number(fields[11]) + Number(fields[12])) * 10;
    } catch {
      return NaN;
    }
  });
}

function lagsMs(c: TestCluster, id: string, from: number, to: number): number[] {
  const d = new BetterSqlite3(c.node(id).db, { readonly: true });
  try {
    return (d.prepare('SELECT a.at - l.at FROM bench_arrival a JOIN bench_lag l ON l.id = a.id WHERE a.id BETWEEN ? AND ?').pluck().all(from, to) as number[]);
  } finally {
    d.close();
  }
}

const summarize = (xs: number[]) => ({ samples: xs.length, p50: pct(xs, 50), p90: pct(xs, 90), p99: pct(xs, 99), max: Math.max(...xs) });

// ---------------------------------------------------------------- main
const dir = mkdtempSync(path.join(os.tmpdir(), 'burrow-bench-'));
const result: Record<string, unknown> = {
  machine: { cpus: os.cpus().length, cpuModel: os.cpus()[0]?.model, memGiB: Math.round(os.totalmem() / 2 ** 30), node: process.version },
  startedAt: new Date().toISOString(),
};
if (only.has('capture')) {
  log('capture overhead (3 rounds × 1 s per configuration)…');
  result.capture = captureOverhead(dir);
}

const c = await TestCluster.create({ nodes: 4 });
const ids3 = ['n1', 'n2', 'n3'];
try {
  for (const n of c.nodes.filter((x) => ids3.includes(x.id))) {
    mkdirSync(path.dirname(n.db), { recursive: true });
    const d = new BetterSqlite3(n.db);
    d.pragma('journal_mode = WAL');
    d.exec(`CREATE TABLE bench_tp1(id INTEGER PRIMARY KEY, v TEXT NOT NULL, n INTEGER);
      CREATE TABLE bench_tp3(id INTEGER PRIMARY KEY, v TEXT NOT NULL, n INTEGER);`);
    d.exec(lagTablesSql);
    d.exec(arrivalTriggerSql); // on every node: it is replicated anyway, and fires only on receivers
    d.close();
  }
  const t0 = Date.now();
  for (const id of ids3) c.startNode(id);
  await c.waitReady(90_000, ids3);
  result.clusterReadyMs = Date.now() - t0;
  const nc = await connect({ servers: ids3.map((id) => c.node(id).natsUrl) });
  let msgBytes = 0;
  let msgCount = 0;
  // During the lag phases: when each lag row was first seen on the wire (published to JetStream).
  const lagWire: { seen: Map<number, number> | null } = { seen: null };
  const sub = nc.subscribe(`burrow.${c.clusterName}.s.>`);
  void (async () => {
    for await (const m of sub) {
      msgBytes += m.data.length;
      msgCount++;
      const wireSeen = lagWire.seen;
      if (wireSeen) {
        const t = nowMs();
        const b = decodeBatch(unsealUnverified(m.data));
        if (b.tables.some((t) => t.n === 'bench_lag')) {
          for (const ch of b.changes) {
            const id = Number(decodeValues(ch.k)[0]);
            if (!wireSeen.has(id)) wireSeen.set(id, t);
          }
        }
      }
    }
  })();

  let oneWriter: Record<string, number> & { avgChangesPerMessage: number; avgMessageBytes: number; appliedAllPerS: number } = { appliedAllPerS: NaN, avgChangesPerMessage: 1, avgMessageBytes: 1024, rows: 0 };
  if (only.has('throughput')) {
  // 2. throughput, one writer
  log(`throughput: one writer on n1 for ${seconds} s…`);
  msgBytes = 0;
  msgCount = 0;
  const w1 = await runWriter({ db: c.node('n1').db, table: 'bench_tp1', mode: 'max', idStart: 1, seconds, rowsPerTx: 1000 });
  const done1 = await waitCount(c, 'bench_tp1', w1.rows, 300_000);
  oneWriter = {
    rows: w1.rows, writerPerS: w1.rows / ((w1.lastCommitMs - w1.firstCommitMs) / 1000),
    appliedAllPerS: w1.rows / ((done1 - w1.firstCommitMs) / 1000), drainAfterLastCommitMs: done1 - w1.lastCommitMs,
    messages: msgCount, avgChangesPerMessage: w1.rows / Math.max(1, msgCount), avgMessageBytes: msgBytes / Math.max(1, msgCount),
  };
  log(`  ${Math.round(oneWriter.appliedAllPerS)} changes/s applied on all 3 nodes`);

  // 2b. throughput, writers on all three nodes
  log(`throughput: writers on n1, n2, n3 for ${seconds} s…`);
  const ws = await Promise.all(ids3.map((id, i) => runWriter({ db: c.node(id).db, table: 'bench_tp3', mode: 'max', idStart: (i + 1) * 1_000_000_000, seconds, rowsPerTx: 1000 })));
  const total3 = ws.reduce((a, w) => a + w.rows, 0);
  const first3 = Math.min(...ws.map((w) => w.firstCommitMs));
  const done3 = await waitCount(c, 'bench_tp3', total3, 300_000);
  const threeWriters = { rows: total3, appliedAllPerS: total3 / ((done3 - first3) / 1000), drainAfterLastCommitMs: done3 - Math.max(...ws.map((w) => w.lastCommitMs)) };
  log(`  ${Math.round(threeWriters.appliedAllPerS)} changes/s applied on all 3 nodes`);
  result.throughput = { oneWriter, threeWriters };

  }
  let nextId = 1;
  if (only.has('lag')) {
  // 3. lag at fixed rates
  const lag: Record<string, unknown> = {};
  /** Settled: every node has published and applied everything (streams keep their messages: limits retention), then 5 s more. */
  const settle = async () => {
    await c.waitFor('every node drained', async () => (await Promise.all(ids3.map((id) => c.status(id))))
      .every((st) => st && st.pending.outboxBatches === 0 && st.pending.logRows === 0 && st.pending.inboundQueued === 0), 120_000, 100);
    await sleep(5000);
  };
  const phase = async (key: string, rate: number, label: string) => {
    log(`lag: ${rate} single-row writes/s on n1 for ${seconds} s (${label})…`);
    const from = nextId;
    const pubBefore = (await c.status('n1'))?.publish ?? {};
    lagWire.seen = new Map();
    const bytesBefore = msgBytes;
    const cpuBefore = natsCpuMs(c, ids3);
    const w = await runWriter({ db: c.node('n1').db, mode: 'rate', idStart: from, seconds, ratePerSec: rate });
    const cpuAfter = natsCpuMs(c, ids3);
    const pubAfter = (await c.status('n1'))?.publish ?? {};
    nextId = from + w.rows;
    await waitCount(c, 'bench_lag', nextId - 1, 120_000);
    const seen = lagWire.seen;
    lagWire.seen = null;
    const per = Object.fromEntries(['n2', 'n3'].map((id) => [id, summarize(lagsMs(c, id, from, nextId - 1))]));
    const all = ['n2', 'n3'].flatMap((id) => lagsMs(c, id, from, nextId - 1));
    // Where the time goes: COMMIT → published (capture, stamping, publishing on n1) and
    // published → applied (JetStream store and delivery, apply on n2/n3).
    const split = ['n2', 'n3'].flatMap((id) => arrivals(c, id, from, nextId - 1))
      .filter((a) => seen.has(a.id)).map((a) => ({ pub: seen.get(a.id)! - a.commit, del: a.arrival - seen.get(a.id)! }));
    const messages = pubAfter.published - pubBefore.published;
    const phaseS = (w.lastCommitMs - w.firstCommitMs) / 1000;
    const cpuMs = ids3.map((_, i) => cpuAfter[i]! - cpuBefore[i]!);
    lag[key] = {
      label, offeredPerS: rate, achievedPerS: w.rows / phaseS, ...summarize(all), perNode: per,
      commitToPublished: summarize(split.map((x) => x.pub)), publishedToApplied: summarize(split.map((x) => x.del)),
      messagesPerS: messages / seconds, avgMessageBytes: (msgBytes - bytesBefore) / Math.max(1, messages),
      natsServer: { cpuPercentEach: cpuMs.map((ms) => (ms / 10) / phaseS), cpuUsPerMessageAll: (cpuMs.reduce((a, b) => a + b, 0) * 1000) / Math.max(1, messages) },
      n1Publish: { messages: pubAfter.published - pubBefore.published, retries: pubAfter.retries - pubBefore.retries,
        duplicates: pubAfter.duplicates - pubBefore.duplicates, lastError: pubAfter.lastError },
    };
    log(`  p50 ${pct(all, 50).toFixed(2)} ms, p99 ${pct(all, 99).toFixed(2)} ms, max ${Math.max(...all).toFixed(2)} ms; n1 published ${messages} messages, `
      + `${pubAfter.retries - pubBefore.retries} publish retries; nats-servers ${cpuMs.map((ms) => `${((ms / 10) / phaseS).toFixed(1)} %`).join(' / ')}`);
  };
  await settle();
  await phase('1000PerS', 1000, 'settled');
  await settle();
  await phase('5000PerS', 5000, 'settled');
  await settle();
  // The burst is replicated first (its own figure); the lag phase starts the moment the last node
  // holds it: what the burst leaves behind (JetStream storing and trimming, WAL checkpoints, GC).
  log('lag: a burst of 200,000 rows (1000-row transactions) on n1, then 1k/s as soon as every node has it…');
  const before = Number(c.query<{ n: bigint }>('n1', 'SELECT count(*) AS n FROM bench_tp1')[0]!.n);
  const burst = await runWriter({ db: c.node('n1').db, table: 'bench_tp1', mode: 'max', idStart: 500_000_000, seconds: 120, rowsPerTx: 1000, rowsMax: 200_000 });
  const burstDone = await waitCount(c, 'bench_tp1', before + burst.rows, 300_000);
  lag.burst = { rows: burst.rows, writerMs: burst.lastCommitMs - burst.firstCommitMs, appliedEverywhereMs: burstDone - burst.firstCommitMs,
    appliedPerS: burst.rows / ((burstDone - burst.firstCommitMs) / 1000) };
  log(`  burst of ${burst.rows} rows applied on all 3 nodes ${Math.round(burstDone - burst.firstCommitMs)} ms after its first commit`);
  await phase('1000PerSAfterBurst', 1000, 'right after a 200k-row burst');
  result.lag = lag;

  }
  const jsm = await jetstreamManager(nc);
  if (only.has('limits')) {
  // 4. JetStream limit: same-size messages, same in-flight window, R3 file stream
  log('limit: raw JetStream R3 publish of burrow-sized messages, 64 in flight…');
  const js = jetstream(nc);
  const rawStream = `bench_raw_${c.clusterName}`;
  await jsm.streams.add({ name: rawStream, subjects: ['bench.raw'], storage: StorageType.File, num_replicas: 3, retention: RetentionPolicy.Limits, discard: DiscardPolicy.Old, max_bytes: 2 * 1024 ** 3 });
  const payload = new Uint8Array(Math.max(64, Math.round(oneWriter.avgMessageBytes)));
  const inFlight = 64;
  let published = 0;
  const rawEnd = Date.now() + 5000;
  const rawT0 = nowMs();
  await Promise.all(Array.from({ length: inFlight }, async () => {
    while (Date.now() < rawEnd) {
      await js.publish('bench.raw', payload);
      published++;
    }
  }));
  const rawPerS = published / ((nowMs() - rawT0) / 1000);
  await jsm.streams.delete(rawStream);
  // The floor under the lag: JetStream alone at the message rate of burrow's 1k/s lag phase.
  const lag1k = (result.lag as Record<string, any> | undefined)?.['1000PerS'];
  let rawLag: Awaited<ReturnType<typeof rawDeliveryLatency>> | null = null;
  if (lag1k) {
    log(`limit: raw JetStream publish → delivery at ${Math.round(lag1k.messagesPerS)} msg/s (16 R3 streams × 3 R1 in-memory consumers)…`);
    rawLag = await rawDeliveryLatency(c, lag1k.messagesPerS, Math.round(lag1k.avgMessageBytes), seconds);
  }
  const sqlite = (result.capture ?? captureOverhead(dir)) as ReturnType<typeof captureOverhead>;
  result.limits = {
    jetstreamMsgsPerS: rawPerS, messageBytes: payload.length, inFlight,
    jetstreamChangesPerS: rawPerS * oneWriter.avgChangesPerMessage,
    sqliteInsertsPerS1000RowTx: sqlite.thousandRowTx.plainPerS,
    burrowVsJetstream: oneWriter.appliedAllPerS / (rawPerS * oneWriter.avgChangesPerMessage),
    burrowVsSqlite: oneWriter.appliedAllPerS / sqlite.thousandRowTx.plainPerS,
    jetstreamDeliveryAtLagRate: rawLag,
  };

  }
  if (only.has('failover')) {
  // 5. failover stall
  log('failover: SIGKILL the nats-server leading the most streams (not n1\'s) under 500 writes/s…');
  const leaders = new Map<string, number>();
  for (let s = 0; s < 16; s++) {
    const info = await jsm.streams.info(streamName(c.clusterName, s));
    const l = info.cluster?.leader ?? '';
    leaders.set(l, (leaders.get(l) ?? 0) + 1);
  }
  const victim = [...leaders.entries()].filter(([id]) => id !== 'n1').sort((a, b) => b[1] - a[1])[0]?.[0] ?? 'n2';
  const from = nextId;
  const writer = runWriter({ db: c.node('n1').db, mode: 'rate', idStart: from, seconds: 20, ratePerSec: 500 });
  await sleep(5000);
  const natsPid = c.natsPid(victim)!;
  const killedAt = nowMs();
  process.kill(natsPid, 'SIGKILL');
  const w = await writer;
  nextId = from + w.rows;
  await waitCount(c, 'bench_lag', nextId - 1, 120_000);
  const survivor = victim === 'n2' ? 'n3' : 'n2';
  const d = new BetterSqlite3(c.node(survivor).db, { readonly: true });
  const rows = d.prepare('SELECT l.at, a.at - l.at FROM bench_arrival a JOIN bench_lag l ON l.id = a.id WHERE a.id BETWEEN ? AND ?').raw(true).all(from, nextId - 1) as [number, number][];
  d.close();
  const after = rows.filter(([at]) => at >= killedAt - 100);
  const stallMs = Math.max(...after.map(([, l]) => l));
  const victimLags = lagsMs(c, victim, from, nextId - 1);
  result.failover = {
    victim, streamsLed: leaders.get(victim), writes: w.rows, allArrivedEverywhere: true,
    survivorMaxLagMs: stallMs, survivorLagsOver1s: after.filter(([, l]) => l > 1000).length,
    victimMaxLagMs: Math.max(...victimLags), before: summarize(rows.filter(([at]) => at < killedAt - 100).map(([, l]) => l)),
  };
  log(`  writes stalled up to ${Math.round(stallMs)} ms on ${survivor}; ${w.rows} writes all arrived`);
  }
  if (only.has('join')) {
  // 6. join: n4 starts with an empty folder; a peer takes a snapshot, n4 restores it and reads on
  const rowsNow = ['bench_tp1', 'bench_tp3', 'bench_lag'].reduce((a, t) => a + Number(c.query<{ n: bigint }>('n1', `SELECT count(*) AS n FROM ${t}`)[0]!.n), 0);
  const bytesNow = statSync(c.node('n1').db).size;
  log(`join: n4 starts empty while the cluster holds ${rowsNow.toLocaleString('en-US')} rows (${(bytesNow / 1024 / 1024).toFixed(0)} MB on n1)…`);
  const j0 = Date.now();
  c.startNode('n4');
  await c.waitReady(600_000, ['n4']);
  const readyMs = Date.now() - j0;
  const st = await c.status('n4');
  const restore = st?.snapshots?.restore ?? {};
  const restoreMs = restore.endedAtMs && restore.startedAtMs ? restore.endedAtMs - restore.startedAtMs : NaN;
  result.join = {
    rows: rowsNow, replicaBytes: bytesNow, readyMs, restoreMs, rowsPerS: rowsNow / (readyMs / 1000), mbPerS: bytesNow / 1024 / 1024 / (readyMs / 1000),
    snapshot: restore.snapshot ?? null, reason: restore.reason ?? null,
  };
  log(`  n4 ready after ${readyMs} ms (restore ${restoreMs} ms): ${Math.round(rowsNow / (readyMs / 1000))} rows/s`);
  }
  await nc.close();
} finally {
  // BURROW_BENCH_KEEP=1 keeps the cluster's folder (node logs, databases) to look into a figure.
  const keep = process.env.BURROW_BENCH_KEEP === '1';
  await c.destroy(keep);
  if (keep) log(`cluster folder kept: ${c.dir}`);
  rmSync(dir, { recursive: true, force: true });
}

// ---------------------------------------------------------------- report
const r = result as any;
const f0 = (x: number) => Math.round(x).toLocaleString('en-US');
const f2 = (x: number) => x.toFixed(2);
const lines: string[] = [];
const section = (present: unknown, make: () => string[]) => {
  if (present) lines.push(...make(), '');
};
lines.push(`burrow benchmark — ${r.machine.cpus} cores (${r.machine.cpuModel}), node ${r.machine.node}, ${r.startedAt}`, '');
section(r.capture, () => [
  'capture overhead (app inserts, WAL, synchronous=NORMAL)        plain/s    captured/s   captured/plain',
  `  1 row per transaction                                  ${f0(r.capture.singleRowTx.plainPerS).padStart(12)} ${f0(r.capture.singleRowTx.capturedPerS).padStart(12)}   ${f2(r.capture.singleRowTx.ratio)}`,
  `  1000 rows per transaction                              ${f0(r.capture.thousandRowTx.plainPerS).padStart(12)} ${f0(r.capture.thousandRowTx.capturedPerS).padStart(12)}   ${f2(r.capture.thousandRowTx.ratio)}`,
]);
section(r.throughput, () => [
  'replication throughput (changes/s from first commit to applied on all 3 nodes)',
  `  one writer on n1 (1000-row tx)                         ${f0(r.throughput.oneWriter.appliedAllPerS).padStart(12)}   (${f0(r.throughput.oneWriter.rows)} rows, ${f2(r.throughput.oneWriter.avgChangesPerMessage)} changes/msg, ${f0(r.throughput.oneWriter.avgMessageBytes)} B/msg)`,
  `  writers on n1, n2, n3                                  ${f0(r.throughput.threeWriters.appliedAllPerS).padStart(12)}   (${f0(r.throughput.threeWriters.rows)} rows)`,
]);
section(r.lag, () => [
  'replication lag, COMMIT on n1 → applied on n2/n3 (ms)       p50      p90      p99      max',
  ...Object.values(r.lag).filter((l: any) => l.label !== undefined).flatMap((l: any) => [
    `  ${String(l.offeredPerS).padStart(5)} single-row writes/s, ${l.label.padEnd(29)}${f2(l.p50).padStart(8)} ${f2(l.p90).padStart(8)} ${f2(l.p99).padStart(8)} ${f2(l.max).padStart(8)}`,
    `        COMMIT → published (n1: capture, stamp, publish)  ${f2(l.commitToPublished.p50).padStart(8)} ${f2(l.commitToPublished.p90).padStart(8)} ${f2(l.commitToPublished.p99).padStart(8)} ${f2(l.commitToPublished.max).padStart(8)}`,
    `        published → applied (JetStream, n2/n3 apply)     ${f2(l.publishedToApplied.p50).padStart(8)} ${f2(l.publishedToApplied.p90).padStart(8)} ${f2(l.publishedToApplied.p99).padStart(8)} ${f2(l.publishedToApplied.max).padStart(8)}`,
    `        (${f0(l.messagesPerS)} messages/s of ${f0(l.avgMessageBytes)} B; nats-servers ${l.natsServer.cpuPercentEach.map((x: number) => `${x.toFixed(1)} %`).join(' / ')} CPU, ${f0(l.natsServer.cpuUsPerMessageAll)} µs CPU per message over the 3)`,
  ]),
]);
section(r.lag?.burst, () => [
  `burst: ${f0(r.lag.burst.rows)} rows in 1000-row transactions, written in ${f0(r.lag.burst.writerMs)} ms, on all 3 nodes after ${f0(r.lag.burst.appliedEverywhereMs)} ms (${f0(r.lag.burst.appliedPerS)} changes/s)`,
]);
section(r.limits, () => [
  'limits measured in this run',
  `  raw JetStream R3 publish, ${r.limits.messageBytes} B msgs, ${r.limits.inFlight} in flight  ${f0(r.limits.jetstreamMsgsPerS).padStart(12)} msg/s = ${f0(r.limits.jetstreamChangesPerS)} changes/s at burrow's batch size`,
  `  raw better-sqlite3 inserts (1000-row tx)               ${f0(r.limits.sqliteInsertsPerS1000RowTx).padStart(12)} rows/s`,
  `  burrow one-writer throughput / JetStream ceiling        ${f2(r.limits.burrowVsJetstream).padStart(12)}`,
  `  burrow one-writer throughput / SQLite ceiling           ${f2(r.limits.burrowVsSqlite).padStart(12)}`,
  ...(r.limits.jetstreamDeliveryAtLagRate ? [
    `  raw JetStream at the 1k/s lag phase's rate (${f0(r.limits.jetstreamDeliveryAtLagRate.msgsPerS)} msg/s, 16 R3 streams × 3 R1 in-memory consumers), ms:`,
    `    publish → delivered p50 / p90 / p99 / max          ${[r.limits.jetstreamDeliveryAtLagRate.delivered.p50, r.limits.jetstreamDeliveryAtLagRate.delivered.p90, r.limits.jetstreamDeliveryAtLagRate.delivered.p99, r.limits.jetstreamDeliveryAtLagRate.delivered.max].map(f2).join(' / ')}`,
    `    burrow's 1k/s lag / this floor, p50 and p99         ${f2(r.lag['1000PerS'].p50 / r.limits.jetstreamDeliveryAtLagRate.delivered.p50)} and ${f2(r.lag['1000PerS'].p99 / r.limits.jetstreamDeliveryAtLagRate.delivered.p99)}`,
  ] : []),
]);
section(r.failover, () => [
  `failover: SIGKILL ${r.failover.victim}'s nats-server (leader of ${r.failover.streamsLed} streams) under 500 writes/s, restarted by its node`,
  `  writes reached the surviving follower within           ${f0(r.failover.survivorMaxLagMs).padStart(12)} ms (max), ${r.failover.survivorLagsOver1s} writes over 1 s`,
  `  ...and the restarted node within                       ${f0(r.failover.victimMaxLagMs).padStart(12)} ms (max); all ${f0(r.failover.writes)} writes arrived everywhere`,
]);
section(r.join, () => [
  `join: n4 started with an empty folder while the cluster held ${f0(r.join.rows)} rows (${f0(r.join.replicaBytes / 1024 / 1024)} MB)`,
  `  ready after                                            ${f0(r.join.readyMs).padStart(12)} ms (restore ${f0(r.join.restoreMs)} ms) = ${f0(r.join.rowsPerS)} rows/s, ${f2(r.join.mbPerS)} MB/s`,
]);
lines.push(`cluster ready after ${r.clusterReadyMs} ms`);
process.stdout.write(lines.join('\n') + '\n');
if (values.json) writeFileSync(values.json, JSON.stringify(result, null, 2));
