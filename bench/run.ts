/**
 * `npm run bench [-- --json FILE] [--seconds N]`: burrow's figures and the limits they are bounded
 * by, measured in one run on this machine, printed as a table and written as JSON.
 *
 *  1. capture overhead   app inserts/s into a plain table vs the same table with burrow's triggers
 *  2. throughput         one writer on n1 (1000-row transactions), then writers on all 3 nodes:
 *                        changes/s from the first commit until the last node applied the last row
 *  3. lag                single-row writes at 1k/s and 5k/s on n1: COMMIT → applied on n2/n3
 *  4. limits             raw better-sqlite3 insert rate; raw JetStream R3 publish rate of messages
 *                        of burrow's batch size with burrow's in-flight window
 *  5. failover           the nats-server leading stream(s) is SIGKILLed (and restarted by its node)
 *                        under 500 writes/s: how long writes take to reach the other nodes
 */
import { mkdtempSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
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
import { decodeValues } from '../src/codec/value-codec.ts';

const { values } = parseArgs({ options: {
  json: { type: 'string' }, seconds: { type: 'string', default: '10' },
  only: { type: 'string', default: 'capture,throughput,lag,limits,failover' },
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
async function waitCount(c: TestCluster, table: string, want: number, timeoutMs: number): Promise<number> {
  const readers = c.nodes.map((n) => new BetterSqlite3(n.db, { readonly: true }));
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
 * JetStream by itself, shaped like burrow: 16 R3 file streams with interest retention, a durable
 * pull consumer per server (explicit acks, the same pull options as a node), one publisher at
 * `msgsPerS`; latency = publish → delivered to the consumers on the two other servers.
 */
async function rawDeliveryLatency(c: TestCluster, msgsPerS: number, bytes: number, secs: number) {
  const ncs = await Promise.all(c.nodes.map((n) => connect({ servers: n.natsUrl, noAsyncTraces: true })));
  const jsm = await jetstreamManager(ncs[0]!);
  const shards = 16;
  const name = (s: number) => `bench_lat_${c.clusterName}_${s}`;
  const delivered: number[] = [];
  const acked: number[] = [];
  const iters: { close(): Promise<void | Error> }[] = [];
  try {
    for (let s = 0; s < shards; s++) {
      await jsm.streams.add({ name: name(s), subjects: [`bench.lat.${s}`], storage: StorageType.File, num_replicas: 3, retention: RetentionPolicy.Interest, discard: DiscardPolicy.New });
      for (let n = 0; n < ncs.length; n++) {
        await jsm.consumers.add(name(s), { durable_name: `c${n}`, ack_policy: AckPolicy.Explicit, deliver_policy: DeliverPolicy.All, ack_wait: 5_000_000_000, max_ack_pending: 1024, max_waiting: 512 });
      }
    }
    await sleep(2000); // consumer leaders settle
    for (let n = 0; n < ncs.length; n++) {
      const js = jetstream(ncs[n]!);
      for (let s = 0; s < shards; s++) {
        const consumer = await js.consumers.get(name(s), `c${n}`);
        iters.push(await consumer.consume({ max_messages: 256, expires: 2000, idle_heartbeat: 500, callback: (m) => {
          if (n > 0) delivered.push(nowMs() - new DataView(m.data.buffer, m.data.byteOffset, 8).getFloat64(0));
          m.ack();
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

const c = await TestCluster.create({ nodes: 3 });
try {
  for (const n of c.nodes) {
    mkdirSync(path.dirname(n.db), { recursive: true });
    const d = new BetterSqlite3(n.db);
    d.pragma('journal_mode = WAL');
    d.exec(`CREATE TABLE bench_tp1(id INTEGER PRIMARY KEY, v TEXT NOT NULL, n INTEGER);
      CREATE TABLE bench_tp3(id INTEGER PRIMARY KEY, v TEXT NOT NULL, n INTEGER);`);
    d.exec(lagTablesSql);
    if (n.id !== 'n1') d.exec(arrivalTriggerSql);
    d.close();
  }
  const t0 = Date.now();
  await c.start(90_000);
  result.clusterReadyMs = Date.now() - t0;
  const nc = await connect({ servers: c.nodes.map((n) => n.natsUrl) });
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
        const b = decodeBatch(m.data);
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
  const ws = await Promise.all(c.nodes.map((n, i) => runWriter({ db: n.db, table: 'bench_tp3', mode: 'max', idStart: (i + 1) * 1_000_000_000, seconds, rowsPerTx: 1000 })));
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
  // Lag is measured on a settled cluster: the throughput phase leaves JetStream deleting
  // ~2M acknowledged messages and compacting; wait until every stream is empty, then 5 s more.
  const jsmSettle = await jetstreamManager(nc);
  const settleStart = Date.now();
  for (;;) {
    let msgs = 0;
    for (let s = 0; s < 16; s++) msgs += (await jsmSettle.streams.info(`burrow_${c.clusterName}_${s}`)).state.messages;
    if (msgs === 0 || Date.now() - settleStart > 60_000) break;
    await sleep(250);
  }
  await sleep(5000);
  for (const rate of [1000, 5000]) {
    log(`lag: ${rate} single-row writes/s on n1 for ${seconds} s…`);
    const from = nextId;
    const pubBefore = (await c.status('n1'))?.publish ?? {};
    lagWire.seen = new Map();
    const bytesBefore = msgBytes;
    const w = await runWriter({ db: c.node('n1').db, mode: 'rate', idStart: from, seconds, ratePerSec: rate });
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
    lag[`${rate}PerS`] = {
      offeredPerS: rate, achievedPerS: w.rows / ((w.lastCommitMs - w.firstCommitMs) / 1000), ...summarize(all), perNode: per,
      commitToPublished: summarize(split.map((x) => x.pub)), publishedToApplied: summarize(split.map((x) => x.del)),
      messagesPerS: messages / seconds, avgMessageBytes: (msgBytes - bytesBefore) / Math.max(1, messages),
      n1Publish: { messages: pubAfter.published - pubBefore.published, retries: pubAfter.retries - pubBefore.retries,
        duplicates: pubAfter.duplicates - pubBefore.duplicates, lastError: pubAfter.lastError },
    };
    log(`  p50 ${pct(all, 50).toFixed(2)} ms, p99 ${pct(all, 99).toFixed(2)} ms; n1 published ${pubAfter.published - pubBefore.published} messages, ${pubAfter.retries - pubBefore.retries} publish retries`);
  }
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
    log(`limit: raw JetStream publish → delivery at ${Math.round(lag1k.messagesPerS)} msg/s (16 R3 streams × 3 durable consumers)…`);
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
  await nc.close();
} finally {
  await c.destroy();
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
  ...Object.values(r.lag).flatMap((l: any) => [
    `  ${String(l.offeredPerS).padStart(5)} single-row writes/s                          ${f2(l.p50).padStart(8)} ${f2(l.p90).padStart(8)} ${f2(l.p99).padStart(8)} ${f2(l.max).padStart(8)}`,
    `        COMMIT → published (n1: capture, stamp, publish)  ${f2(l.commitToPublished.p50).padStart(8)} ${f2(l.commitToPublished.p90).padStart(8)} ${f2(l.commitToPublished.p99).padStart(8)} ${f2(l.commitToPublished.max).padStart(8)}`,
    `        published → applied (JetStream, n2/n3 apply)     ${f2(l.publishedToApplied.p50).padStart(8)} ${f2(l.publishedToApplied.p90).padStart(8)} ${f2(l.publishedToApplied.p99).padStart(8)} ${f2(l.publishedToApplied.max).padStart(8)}`,
    `        (${f0(l.messagesPerS)} messages/s of ${f0(l.avgMessageBytes)} B)`,
  ]),
]);
section(r.limits, () => [
  'limits measured in this run',
  `  raw JetStream R3 publish, ${r.limits.messageBytes} B msgs, ${r.limits.inFlight} in flight  ${f0(r.limits.jetstreamMsgsPerS).padStart(12)} msg/s = ${f0(r.limits.jetstreamChangesPerS)} changes/s at burrow's batch size`,
  `  raw better-sqlite3 inserts (1000-row tx)               ${f0(r.limits.sqliteInsertsPerS1000RowTx).padStart(12)} rows/s`,
  `  burrow one-writer throughput / JetStream ceiling        ${f2(r.limits.burrowVsJetstream).padStart(12)}`,
  `  burrow one-writer throughput / SQLite ceiling           ${f2(r.limits.burrowVsSqlite).padStart(12)}`,
  ...(r.limits.jetstreamDeliveryAtLagRate ? [
    `  raw JetStream at the 1k/s lag phase's rate (${f0(r.limits.jetstreamDeliveryAtLagRate.msgsPerS)} msg/s, 16 R3 streams × 3 durable consumers), ms:`,
    `    publish → delivered p50 / p90 / p99 / max          ${[r.limits.jetstreamDeliveryAtLagRate.delivered.p50, r.limits.jetstreamDeliveryAtLagRate.delivered.p90, r.limits.jetstreamDeliveryAtLagRate.delivered.p99, r.limits.jetstreamDeliveryAtLagRate.delivered.max].map(f2).join(' / ')}`,
    `    burrow's 1k/s lag / this floor, p50 and p99         ${f2(r.lag['1000PerS'].p50 / r.limits.jetstreamDeliveryAtLagRate.delivered.p50)} and ${f2(r.lag['1000PerS'].p99 / r.limits.jetstreamDeliveryAtLagRate.delivered.p99)}`,
  ] : []),
]);
section(r.failover, () => [
  `failover: SIGKILL ${r.failover.victim}'s nats-server (leader of ${r.failover.streamsLed} streams) under 500 writes/s, restarted by its node`,
  `  writes reached the surviving follower within           ${f0(r.failover.survivorMaxLagMs).padStart(12)} ms (max), ${r.failover.survivorLagsOver1s} writes over 1 s`,
  `  ...and the restarted node within                       ${f0(r.failover.victimMaxLagMs).padStart(12)} ms (max); all ${f0(r.failover.writes)} writes arrived everywhere`,
]);
lines.push(`cluster ready after ${r.clusterReadyMs} ms`);
process.stdout.write(lines.join('\n') + '\n');
if (values.json) writeFileSync(values.json, JSON.stringify(result, null, 2));
