import { loadConfig, nodeById, type NodeConfig } from '../src/config/config.ts';
import { BurrowError, errorMessage } from '../src/util/errors.ts';
import { getJson } from './node-client.ts';

export type InspectKind = 'dead' | 'conflicts' | 'waiting';

export interface InspectOptions {
  readonly kind: InspectKind;
  readonly node?: string;
  readonly json: boolean;
  readonly retry: boolean;
  readonly purge: boolean;
  readonly all: boolean;
  readonly ids: readonly string[];
  readonly limit: number;
}

async function postJson(node: NodeConfig, route: string, body: unknown): Promise<any> {
  let res: Response;
  try {
    res = await fetch(`http://${node.http.host}:${node.http.port}${route}`, { method: 'POST', body: JSON.stringify(body), signal: AbortSignal.timeout(60_000) });
  } catch (err) {
    throw new BurrowError(`node ${node.id} is unreachable (${node.http.host}:${node.http.port}: ${(err as { cause?: { code?: string } }).cause?.code ?? errorMessage(err)})`);
  }
  const out = await res.json() as any;
  if (!res.ok) throw new BurrowError(`node ${node.id}: ${out.error ?? `HTTP ${res.status}`}`);
  return out;
}

/**
 * `burrow dead|conflicts|waiting`: each node's rows (or one node's with --node); `dead --retry`
 * applies dead letters again and `dead --purge` deletes them, on one node (--node), by id or --all.
 * Exit 1 with one line when a node does not answer.
 */
export async function runInspect(configFile: string, o: InspectOptions): Promise<number> {
  const config = loadConfig(configFile);
  if (o.retry || o.purge) {
    if (o.kind !== 'dead') throw new BurrowError(`--retry and --purge are for burrow dead`, { exitCode: 2 });
    if (o.retry && o.purge) throw new BurrowError('--retry or --purge, not both', { exitCode: 2 });
    if (!o.node) throw new BurrowError(`burrow dead --${o.retry ? 'retry' : 'purge'} needs --node ID (dead letters are one node's)`, { exitCode: 2 });
    const ids = o.ids.map(Number);
    if (!o.all && (ids.length === 0 || ids.some((x) => !Number.isSafeInteger(x) || x <= 0))) {
      throw new BurrowError(`burrow dead --${o.retry ? 'retry' : 'purge'} needs dead-letter ids (from burrow dead) or --all`, { exitCode: 2 });
    }
    const node = nodeById(config, o.node);
    const r = await postJson(node, o.retry ? '/dead/retry' : '/dead/purge', o.all ? { all: true } : { ids });
    if (o.json) process.stdout.write(JSON.stringify(r, null, 2) + '\n');
    else if (o.retry) process.stdout.write(`${node.id}: ${r.retried} retried, ${r.deadAgain} dead again${r.notRetryable ? `, ${r.notRetryable} without message bytes (kept)` : ''}\n`);
    else process.stdout.write(`${node.id}: ${r.purged} purged\n`);
    return o.retry && r.deadAgain > 0 ? 1 : 0;
  }
  const nodes = o.node ? [nodeById(config, o.node)] : config.nodes;
  const results = await Promise.all(nodes.map(async (n) => ({ n, r: await getJson(n, `/${o.kind}?limit=${o.limit}`) })));
  if (o.json) {
    process.stdout.write(JSON.stringify(results.map(({ n, r }) => (r.ok ? r.body : { node: n.id, error: r.error })), null, 2) + '\n');
  } else {
    for (const { n, r } of results) {
      if (!r.ok) {
        process.stdout.write(`${n.id}: unreachable (${r.error})\n`);
        continue;
      }
      process.stdout.write(`${n.id}: ${r.body.total} ${o.kind === 'dead' ? 'dead letters' : o.kind === 'conflicts' ? 'conflicts' : 'changes waiting'}${r.body.total > r.body.rows.length ? ` (newest ${r.body.rows.length} shown)` : ''}\n`);
      for (const row of r.body.rows) process.stdout.write(`  ${line(o.kind, row)}\n`);
    }
  }
  const down = results.filter(({ r }) => !r.ok);
  if (down.length > 0) {
    process.stderr.write(`burrow: ${down.map(({ n, r }) => `node ${n.id} is unreachable (${r.ok ? '' : r.error})`).join('; ')}\n`);
    return 1;
  }
  return 0;
}

function line(kind: InspectKind, r: any): string {
  const at = new Date(r.atMs).toISOString();
  if (kind === 'dead') return `#${r.id} ${at} ${r.table ?? '-'} from ${r.origin ?? '-'} shard ${r.shard ?? '-'}: ${r.reason}`;
  if (kind === 'conflicts') return `#${r.id} ${at} ${r.table} (${r.uniqueColumns}): kept ${r.winnerNode} ${r.winnerRow}, shadowed ${r.loserNode} ${r.loserRow}`;
  return `#${r.id} ${at} ${r.table} from ${r.origin}: ${r.reason} (tried ${r.attempts}×)`;
}
