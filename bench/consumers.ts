/**
 * What JetStream's consumer settings cost at burrow's low-rate message pattern: 3 nats-servers
 * (R3 cluster on loopback), 16 R3 interest streams, 3 durable pull consumers per stream (one per
 * server's client, like burrow's nodes), one publisher at a fixed rate. Prints the servers' CPU
 * and the publish-ack and delivery latencies per consumer variant:
 *
 *   base    R3 consumers, explicit acks  (what burrow uses)
 *   ackall  R3 consumers, AckAll, one ack per consumer every ACKMS (default 20) ms
 *   r1      R1 consumers (file), explicit acks
 *   mem     R1 consumers in memory, explicit acks
 *   none    R1 consumers in memory, no acks
 *
 *   npx tsx bench/consumers.ts [variant …] [--rate 700] [--seconds 10]
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { jetstream, jetstreamManager, RetentionPolicy, StorageType, DiscardPolicy, AckPolicy, DeliverPolicy, type JsMsg, type JetStreamManager } from '@nats-io/jetstream';
import { freePort } from '../test/helpers/cluster.ts';
import { nowMs, pct, sleep } from './harness.ts';

const { values, positionals } = parseArgs({ allowPositionals: true, options: { rate: { type: 'string', default: '700' }, seconds: { type: 'string', default: '10' } } });
const rate = Number(values.rate);
const secs = Number(values.seconds);
const variants = positionals.length ? positionals : ['base', 'ackall', 'r1', 'mem', 'none'];
const ackMs = Number(process.env.ACKMS ?? 20);
const cpuMs = (pid: number) => {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return (Number(f[11]) + Number(f[12])) * 10; // utime + stime, 100 ticks/s
};

async function run(variant: string): Promise<string> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'burrow-consumers-'));
  const ports = await Promise.all([0, 1, 2].map(async () => ({ client: await freePort(), route: await freePort() })));
  const pids: number[] = [];
  const ncs: NatsConnection[] = [];
  try {
    for (let i = 0; i < 3; i++) {
      writeFileSync(path.join(dir, `s${i}.conf`), [
        `server_name: s${i}`, `listen: "127.0.0.1:${ports[i]!.client}"`,
        `jetstream { store_dir: ${JSON.stringify(path.join(dir, `s${i}`))} }`,
        `cluster { name: bench, listen: "127.0.0.1:${ports[i]!.route}", routes: [${ports.filter((_, j) => j !== i).map((p) => `"nats-route://127.0.0.1:${p.route}"`).join(', ')}] }`,
      ].join('\n'));
      pids.push(spawn('nats-server', ['-c', path.join(dir, `s${i}.conf`)], { stdio: 'ignore' }).pid!);
    }
    for (let i = 0; i < 3; i++) {
      for (let t = 0; ; t++) {
        try {
          ncs.push(await connect({ servers: `127.0.0.1:${ports[i]!.client}`, noAsyncTraces: true }));
          break;
        } catch (err) {
          if (t > 50) throw err;
          await sleep(200);
        }
      }
    }
    let jsm: JetStreamManager | null = null;
    for (let t = 0; !jsm; t++) jsm = await jetstreamManager(ncs[0]!).catch(async (err) => { if (t > 50) throw err; await sleep(300); return null; });
    const r1 = variant === 'r1' || variant === 'mem' || variant === 'none';
    for (let s = 0; s < 16; s++) {
      for (let t = 0; ; t++) {
        try {
          await jsm.streams.add({ name: `S${s}`, subjects: [`s.${s}`], storage: StorageType.File, num_replicas: 3, retention: RetentionPolicy.Interest, discard: DiscardPolicy.New });
          for (let n = 0; n < 3; n++) {
            await jsm.consumers.add(`S${s}`, {
              durable_name: `c${n}`, deliver_policy: DeliverPolicy.All, ack_wait: 5e9, max_ack_pending: 1024, max_waiting: 512,
              ack_policy: variant === 'none' ? AckPolicy.None : variant === 'ackall' ? AckPolicy.All : AckPolicy.Explicit,
              ...(r1 ? { num_replicas: 1 } : {}), ...(variant === 'mem' || variant === 'none' ? { mem_storage: true } : {}),
            });
          }
          break;
        } catch (err) {
          if (t > 30) throw err;
          await sleep(300);
        }
      }
    }
    await sleep(2000);
    const delivered: number[] = [];
    const timers: NodeJS.Timeout[] = [];
    for (let n = 0; n < 3; n++) {
      const js = jetstream(ncs[n]!);
      for (let s = 0; s < 16; s++) {
        let last: JsMsg | null = null;
        const c = await js.consumers.get(`S${s}`, `c${n}`);
        await c.consume({ max_messages: 256, expires: 2000, idle_heartbeat: 500, callback: (m) => {
          if (n > 0) delivered.push(nowMs() - new DataView(m.data.buffer, m.data.byteOffset, 8).getFloat64(0));
          if (variant === 'ackall') last = m;
          else if (variant !== 'none') m.ack();
        } });
        if (variant === 'ackall') timers.push(setInterval(() => { last?.ack(); last = null; }, ackMs));
      }
    }
    const js = jetstream(ncs[0]!);
    const cpu0 = pids.map(cpuMs);
    const t0 = nowMs();
    let sent = 0;
    const acked: number[] = [];
    while (nowMs() - t0 < secs * 1000) {
      const due = Math.floor(((nowMs() - t0) / 1000) * rate);
      for (; sent < due; sent++) {
        const payload = new Uint8Array(256);
        const at = nowMs();
        new DataView(payload.buffer).setFloat64(0, at);
        js.publish(`s.${sent % 16}`, payload).then(() => acked.push(nowMs() - at), () => {});
      }
      await sleep(1);
    }
    const elapsed = nowMs() - t0;
    const cpu1 = pids.map(cpuMs);
    await sleep(1000);
    for (const t of timers) clearInterval(t);
    const cpu = cpu1.map((x, i) => `${Math.round((100 * (x - cpu0[i]!)) / elapsed)}%`).join(' ');
    return `${variant.padEnd(7)} ${rate} msg/s: nats-server CPU ${cpu} | publish ack p50 ${pct(acked, 50).toFixed(1)} p99 ${pct(acked, 99).toFixed(1)} ms | delivered p50 ${pct(delivered, 50).toFixed(1)} p99 ${pct(delivered, 99).toFixed(1)} ms (${delivered.length} deliveries)`;
  } finally {
    for (const nc of ncs) await nc.close().catch(() => {});
    for (const p of pids) {
      try { process.kill(p, 'SIGKILL'); } catch { /* gone */ }
    }
    rmSync(dir, { recursive: true, force: true });
  }
}

for (const v of variants) console.log(await run(v));
