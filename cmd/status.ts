import { loadConfig, nodeById } from '../src/config/config.ts';
import { getJson } from './node-client.ts';

export interface StatusOptions {
  readonly json: boolean;
  readonly node?: string;
  /** Per shard: stream leader, positions, lag. */
  readonly shards?: boolean;
  /** Redraw every `watch` seconds until interrupted. */
  readonly watchS?: number;
}

/** `burrow status [--watch S]`: the screen, redrawn in place while watching. */
export async function runStatus(configFile: string, o: StatusOptions): Promise<number> {
  if (!o.watchS) return statusOnce(configFile, o);
  let code = 0;
  for (let i = 0; ; i++) {
    if (process.stdout.isTTY) process.stdout.write('\x1b[H\x1b[2J');
    process.stdout.write(`burrow status — every ${o.watchS} s (Ctrl-C stops) — ${new Date().toISOString()}\n`);
    code = await statusOnce(configFile, o);
    if (i >= 1_000_000) return code;
    await new Promise((r) => setTimeout(r, o.watchS! * 1000));
  }
}

/** Per node: state, lag behind the cluster (messages, ms), pending, held/waiting/dead, nats-server health; with shards: per shard. */
async function statusOnce(configFile: string, o: StatusOptions): Promise<number> {
  const { json } = o;
  const config = loadConfig(configFile);
  const nodes = o.node === undefined ? config.nodes : [nodeById(config, o.node)];
  const results = await Promise.all(nodes.map(async (n) => {
    const r = await getJson(n, '/status');
    return r.ok ? { id: n.id, up: true, ...r.body } : { id: n.id, up: false, error: `down (${n.http.host}:${n.http.port}: ${r.error})` };
  }));
  const shardViews = o.shards ? await Promise.all(nodes.map(async (n) => {
    const r = await getJson(n, '/shards', 10_000);
    return r.ok ? r.body : { node: n.id, error: r.error };
  })) : null;
  if (json) {
    process.stdout.write(JSON.stringify(shardViews ? results.map((r, i) => ({ ...r, shardsView: shardViews[i] })) : results, null, 2) + '\n');
  } else {
    for (const s of results) process.stdout.write(formatStatusLine(s) + '\n');
    for (const v of shardViews ?? []) process.stdout.write(formatShards(v) + '\n');
    const up = results.filter((r) => r.up) as any[];
    const newest = up.map((r) => r.snapshots?.newest).filter(Boolean).sort((a: any, b: any) => b.atMs - a.atMs)[0];
    const members = up[0]?.members as string[] | undefined;
    if (members) process.stdout.write(`members ${members.join(', ')}\n`);
    process.stdout.write(newest ? `newest snapshot ${newest.name} (node ${newest.node}, ${Math.round((Date.now() - newest.atMs) / 1000)} s ago, ${(newest.bytes / 1024 / 1024).toFixed(1)} MB)\n`
      : 'no snapshot seen yet (burrow snapshots lists the bucket)\n');
  }
  return results.every((r) => r.up) ? 0 : 1;
}

export function formatStatusLine(s: any): string {
  if (!s.up) return `${s.id.padEnd(6)} DOWN   ${s.error}`;
  const pending = s.pending.logRows + s.pending.outboxChanges;
  const applied = (s.shards as { appliedSeq: number }[]).reduce((a, p) => a + p.appliedSeq, 0);
  const restoring = s.snapshots?.restore?.state === 'restoring';
  const state = s.ready ? 'ready' : restoring ? 'restoring' : s.phase;
  const extra = [
    s.lag && s.lag.messages > 0 ? `lag ${s.lag.messages} msgs ${s.lag.ms} ms` : '',
    s.nats && s.nats.connected === false ? 'NATS disconnected' : '',
    s.nats?.restarts > 0 ? `nats restarts ${s.nats.restarts}` : '',
    s.deadLetters > 0 ? `dead-letters ${s.deadLetters}` : '',
    s.holds?.length > 0 ? `held from ${s.holds.map((h: any) => h.origin).join(',')}` : '',
    s.waiting?.changes > 0 ? `waiting ${s.waiting.changes}` : '',
    s.schema ? `schema ${s.schema.position}${s.schema.pending > 0 ? ` (+${s.schema.pending} own unordered)` : ''}${s.schema.conflicts > 0 ? ` conflicts ${s.schema.conflicts}` : ''}` : '',
    restoring ? `restore from ${s.snapshots.restore.snapshot ?? '?'}: ${s.snapshots.restore.changes} changes merged` : '',
    !s.ready && s.lastError ? `last error: ${s.lastError.message}` : '',
  ].filter(Boolean).join('  ');
  const lag = s.lag ? `lag ${String(s.lag.messages).padEnd(6)}` : '';
  return `${s.id.padEnd(6)} ${state.padEnd(10)} pid ${String(s.pid).padEnd(7)} pending ${String(pending).padEnd(7)} `
    + `${lag} applied ${String(applied).padEnd(8)} hlc ${s.hlc.time}${extra ? '  ' + extra : ''}`;
}

/** One node's shards: position, lag, stream range, leader and replicas (those not current marked). */
export function formatShards(v: any): string {
  if (v.error) return `${v.node}: shards unavailable (${v.error})`;
  const rows = (v.shards as any[]).map((s) => {
    const st = s.stream;
    const stream = st ? `stream ${st.firstSeq}..${st.lastSeq} leader ${st.leader ?? 'NONE'}`
      + `${st.replicas.some((r: any) => !r.current) ? ` behind: ${st.replicas.filter((r: any) => !r.current).map((r: any) => r.name).join(',')}` : ''}` : `stream ? (${s.error})`;
    return `  shard ${String(s.shard).padStart(2)}  applied ${String(s.appliedSeq).padEnd(8)} lag ${String(s.lagMessages).padEnd(6)} ${stream}`;
  });
  return [`${v.node} shards:`, ...rows].join('\n');
}
