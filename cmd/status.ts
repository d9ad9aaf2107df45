import { loadConfig, nodeById } from '../src/config/config.ts';
import { getJson } from './node-client.ts';

/** `burrow status`: per node id, ready, pending changes, per-shard applied position, HLC. */
export async function runStatus(configFile: string, json: boolean, only?: string): Promise<number> {
  const config = loadConfig(configFile);
  const nodes = only === undefined ? config.nodes : [nodeById(config, only)];
  const results = await Promise.all(nodes.map(async (n) => {
    const r = await getJson(n, '/status');
    return r.ok ? { id: n.id, up: true, ...r.body } : { id: n.id, up: false, error: `down (${n.http.host}:${n.http.port}: ${r.error})` };
  }));
  if (json) {
    process.stdout.write(JSON.stringify(results, null, 2) + '\n');
  } else {
    for (const s of results) process.stdout.write(formatStatusLine(s) + '\n');
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
    s.deadLetters > 0 ? `dead-letters ${s.deadLetters}` : '',
    s.holds?.length > 0 ? `held from ${s.holds.map((h: any) => h.origin).join(',')}` : '',
    s.waiting?.changes > 0 ? `waiting ${s.waiting.changes}` : '',
    s.schema ? `schema ${s.schema.position}${s.schema.pending > 0 ? ` (+${s.schema.pending} own unordered)` : ''}${s.schema.conflicts > 0 ? ` conflicts ${s.schema.conflicts}` : ''}` : '',
    restoring ? `restore from ${s.snapshots.restore.snapshot ?? '?'}: ${s.snapshots.restore.changes} changes merged` : '',
    !s.ready && s.lastError ? `last error: ${s.lastError.message}` : '',
  ].filter(Boolean).join('  ');
  return `${s.id.padEnd(6)} ${state.padEnd(10)} pid ${String(s.pid).padEnd(7)} pending ${String(pending).padEnd(7)} `
    + `applied ${String(applied).padEnd(8)} hlc ${s.hlc.time}${extra ? '  ' + extra : ''}`;
}
