import { loadConfig, nodeById, type Config, type NodeConfig } from '../src/config/config.ts';
import { BurrowError, errorMessage } from '../src/util/errors.ts';
import { getJson } from './node-client.ts';

/** POST a long operation to a node and follow its ndjson progress lines; the result, or throws. */
async function postStreamed(node: NodeConfig, route: string, show: (p: any) => void): Promise<any> {
  let res: Response;
  try {
    res = await fetch(`http://${node.http.host}:${node.http.port}${route}`, { method: 'POST' });
  } catch (err) {
    const cause = (err as { cause?: { code?: string } }).cause?.code;
    throw new BurrowError(`node ${node.id} is unreachable (${node.http.host}:${node.http.port}: ${cause ?? errorMessage(err)})`, { exitCode: 1 });
  }
  if (!res.ok || !res.body) throw new BurrowError(`node ${node.id}: HTTP ${res.status}: ${await res.text()}`, { exitCode: 1 });
  let buf = '';
  const decoder = new TextDecoder();
  for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
    buf += decoder.decode(chunk, { stream: true });
    for (let i = buf.indexOf('\n'); i >= 0; i = buf.indexOf('\n')) {
      const line = JSON.parse(buf.slice(0, i)) as { progress?: unknown; result?: unknown; error?: string };
      buf = buf.slice(i + 1);
      if (line.progress) show(line.progress);
      if (line.error !== undefined) throw new BurrowError(`node ${node.id}: ${line.error}`, { exitCode: 1 });
      if ('result' in line) return line.result;
    }
  }
  throw new BurrowError(`node ${node.id} closed the connection before the outcome (did it stop?)`, { exitCode: 1 });
}

function mb(n: number): string {
  return `${(n / 1024 / 1024).toFixed(1)} MB`;
}

/** One progress line, rewritten in place on a terminal; nothing otherwise. */
function progressLine(p: any): void {
  if (!process.stderr.isTTY) return;
  const bytes = p.bytes !== undefined ? ` ${mb(p.bytes)}${p.totalBytes ? ` of ${mb(p.totalBytes)}` : ''}` : '';
  const changes = p.changes !== undefined ? ` ${p.changes} changes` : '';
  process.stderr.write(`\r\x1b[K${p.step}${bytes}${changes}`);
}

function endProgress(): void {
  if (process.stderr.isTTY) process.stderr.write('\r\x1b[K');
}

/** The node a command talks to: --node, or the first one that is ready. */
async function pickNode(config: Config, id: string | undefined): Promise<NodeConfig> {
  if (id !== undefined) return nodeById(config, id);
  for (const n of config.nodes) {
    const r = await getJson(n, '/readyz', 2000);
    if (r.ok && r.body.ready) return n;
  }
  throw new BurrowError(`no node of ${config.file} is ready (burrow status shows why)`, { exitCode: 1 });
}

/** `burrow snapshot`: one node writes a snapshot of its replica to the cluster's bucket. */
export async function runSnapshot(configFile: string, nodeId: string | undefined, json: boolean): Promise<number> {
  const config = loadConfig(configFile);
  const node = await pickNode(config, nodeId);
  try {
    const m = await postStreamed(node, '/snapshot', progressLine);
    endProgress();
    if (json) process.stdout.write(JSON.stringify(m, null, 2) + '\n');
    else process.stdout.write(`${m.name}: ${mb(m.bytes)}, ${m.tables.length} tables, ${m.tables.reduce((a: number, t: any) => a + t.rows, 0)} rows, sha256 ${m.sha256.slice(0, 16)}…\n`);
    return 0;
  } finally {
    endProgress();
  }
}

/** `burrow snapshots`: the cluster's snapshots, newest first. */
export async function runSnapshots(configFile: string, json: boolean): Promise<number> {
  const config = loadConfig(configFile);
  const errors: string[] = [];
  for (const n of config.nodes) {
    const r = await getJson(n, '/snapshots', 10_000);
    if (!r.ok) {
      errors.push(`${n.id}: ${r.error}`);
      continue;
    }
    if (json) {
      process.stdout.write(JSON.stringify(r.body, null, 2) + '\n');
      return 0;
    }
    const { snapshots, bad } = r.body as { snapshots: any[]; bad: { name: string; problem: string }[] };
    if (snapshots.length === 0) process.stdout.write('no snapshots yet (burrow snapshot takes one)\n');
    for (const m of snapshots) {
      const positions = (m.positions as number[]).reduce((a, p) => a + p, 0);
      process.stdout.write(`${m.name}  ${new Date(m.atMs).toISOString()}  node ${m.node}  ${mb(m.bytes).padStart(9)}  `
        + `${m.tables.length} tables  positions Σ${positions} over ${m.positions.length} shards\n`);
    }
    for (const b of bad) process.stdout.write(`${b.name}  unusable: ${b.problem}\n`);
    return 0;
  }
  throw new BurrowError(`no node answered (${errors.join('; ')})`, { exitCode: 1 });
}

/** `burrow restore`: a running node merges a snapshot (the newest its streams cover, or NAME). */
export async function runRestore(configFile: string, nodeId: string | undefined, snapshot: string | undefined, json: boolean): Promise<number> {
  if (nodeId === undefined) throw new BurrowError('burrow restore needs --node ID (the node to restore)', { exitCode: 2 });
  const config = loadConfig(configFile);
  const node = nodeById(config, nodeId);
  const route = snapshot ? `/restore?snapshot=${encodeURIComponent(snapshot)}` : '/restore';
  try {
    const m = await postStreamed(node, route, progressLine);
    endProgress();
    if (json) process.stdout.write(JSON.stringify(m, null, 2) + '\n');
    else process.stdout.write(`${node.id} restored from ${m.name} (taken by ${m.node} at ${new Date(m.atMs).toISOString()})\n`);
    return 0;
  } finally {
    endProgress();
  }
}
