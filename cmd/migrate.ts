import { readFileSync } from 'node:fs';
import { loadConfig, type NodeConfig } from '../src/config/config.ts';
import { BurrowError, errorMessage } from '../src/util/errors.ts';
import { getJson } from './node-client.ts';

interface SchemaReport { folded: Record<string, number>; conflictsRecent: { origin: string; n: number; problem: string }[] }

/**
 * `burrow migrate FILE.sql`: one node (--node, or the first ready one) orders the statements as
 * its next schema entry; every node runs them exactly as written when it folds that entry, in the
 * cluster's schema order. Waits until every node has (exit 0), or until one failed, one is down or
 * the timeout passed (exit 1, naming the nodes and the reason).
 */
export async function runMigrate(configFile: string, sqlFile: string | undefined, nodeId: string | undefined, timeoutS: number, json: boolean): Promise<number> {
  const config = loadConfig(configFile);
  if (!sqlFile) throw new BurrowError('burrow migrate needs a file of SQL statements: burrow migrate --config FILE FILE.sql', { exitCode: 2 });
  let sql: string;
  try {
    sql = readFileSync(sqlFile, 'utf8');
  } catch (err) {
    throw new BurrowError(`cannot read ${sqlFile}: ${(err as NodeJS.ErrnoException).code ?? errorMessage(err)}`, { exitCode: 2 });
  }
  const via = await pickNode(config.nodes, nodeId);
  const res = await fetch(`http://${via.http.host}:${via.http.port}/migrate`, { method: 'POST', body: sql, signal: AbortSignal.timeout(10_000) })
    .catch((err) => ({ ok: false, status: 0, json: async () => ({ error: (err as { cause?: { code?: string } }).cause?.code ?? errorMessage(err) }) }));
  const body = await res.json() as { origin?: string; n?: number; error?: string };
  if (!res.ok || body.origin === undefined || body.n === undefined) {
    process.stderr.write(`burrow: node ${via.id} did not take the migration: ${body.error ?? `HTTP ${res.status}`}\n`);
    return 1;
  }
  const { origin, n } = body as { origin: string; n: number };
  const say = (s: string) => (json ? undefined : process.stdout.write(s + '\n'));
  say(`migration ordered as ${origin}#${n}; waiting for every node (up to ${timeoutS} s)…`);
  const deadline = Date.now() + timeoutS * 1000;
  for (;;) {
    const states = await Promise.all(config.nodes.map(async (node) => {
      const r = await getJson(node, '/schema', 5000);
      if (!r.ok) return { id: node.id, state: 'down' as const, detail: r.error };
      const rep = r.body as SchemaReport;
      const failed = rep.conflictsRecent.find((c) => c.origin === origin && c.n === n);
      if (failed) return { id: node.id, state: 'failed' as const, detail: failed.problem };
      return { id: node.id, state: (rep.folded[origin] ?? 0) >= n ? 'applied' as const : 'waiting' as const, detail: '' };
    }));
    const failed = states.filter((s) => s.state === 'failed');
    const done = states.every((s) => s.state === 'applied' || s.state === 'failed');
    const down = states.filter((s) => s.state === 'down');
    const pendingUp = states.filter((s) => s.state === 'waiting');
    if (done || (pendingUp.length === 0 && down.length > 0) || Date.now() > deadline) {
      const ok = states.every((s) => s.state === 'applied');
      if (json) process.stdout.write(JSON.stringify({ ok, origin, n, nodes: states }, null, 2) + '\n');
      else {
        for (const s of states) say(`${s.id}: ${s.state}${s.detail ? ` (${s.detail})` : ''}`);
        if (ok) say(`applied on all ${states.length} nodes`);
        else {
          const parts = [
            failed.length ? `failed on ${failed.map((s) => s.id).join(', ')}` : '',
            down.length ? `${down.map((s) => s.id).join(', ')} did not answer (a node that is down applies it when it starts)` : '',
            pendingUp.length ? `${pendingUp.map((s) => s.id).join(', ')} not there after ${timeoutS} s` : '',
          ].filter(Boolean);
          process.stderr.write(`burrow: migration ${origin}#${n} is not applied everywhere: ${parts.join('; ')}\n`);
        }
      }
      return ok ? 0 : 1;
    }
    await new Promise((r) => setTimeout(r, 200));
  }
}

async function pickNode(nodes: readonly NodeConfig[], nodeId: string | undefined): Promise<NodeConfig> {
  if (nodeId !== undefined) {
    const n = nodes.find((x) => x.id === nodeId);
    if (!n) throw new BurrowError(`no node "${nodeId}" in [[nodes]] (known: ${nodes.map((x) => x.id).join(', ')})`, { exitCode: 2 });
    return n;
  }
  for (const n of nodes) {
    const r = await getJson(n, '/readyz', 3000);
    if (r.ok && r.body.ready === true) return n;
  }
  throw new BurrowError('no node is ready to take the migration (burrow status shows why)', { exitCode: 1 });
}
