import { existsSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { loadConfig, nodeById, parseConfig, type Config, type NodeConfig } from '../src/config/config.ts';
import { ensureSecret, ensureSeed, keyFiles } from '../src/security/keys.ts';
import { BurrowError } from '../src/util/errors.ts';

export interface KeygenResult {
  readonly node: string;
  readonly publicKey: string;
  readonly natsKey: string;
  readonly created: readonly string[];
}

/**
 * `burrow keygen`: each node's signing and NATS keys in its data folder (kept when present),
 * their public keys written into the config file (public_key, nats_key in its [[nodes]] entry),
 * and with [security] auth the cluster secret. One machine per node: run it with --node there and
 * copy the two lines it prints (and the secret file) to every node's cluster.toml.
 */
export function keygen(configFile: string, nodeId?: string): { results: KeygenResult[]; secretCreated: string | null; configUpdated: boolean } {
  const config = loadConfig(configFile);
  const nodes = nodeId ? [nodeById(config, nodeId)] : config.nodes;
  const results = nodes.map((n) => keysOf(n));
  let secretCreated: string | null = null;
  if (config.security.auth && ensureSecret(config.security.secretFile).created) secretCreated = config.security.secretFile;
  const configUpdated = writeKeys(config, results);
  return { results, secretCreated, configUpdated };
}

function keysOf(n: NodeConfig): KeygenResult {
  const files = keyFiles(n.dataDir);
  const sign = ensureSeed(files.sign);
  const nats = ensureSeed(files.nats);
  return { node: n.id, publicKey: sign.publicKey, natsKey: nats.publicKey, created: [...(sign.created ? [files.sign] : []), ...(nats.created ? [files.nats] : [])] };
}

/** Keys into the [[nodes]] entries of the file, comments and layout kept; false when already there. */
function writeKeys(config: Config, results: readonly KeygenResult[]): boolean {
  const text = readFileSync(config.file, 'utf8');
  let next = text;
  for (const r of results) next = setNodeKeys(next, r.node, { public_key: r.publicKey, nats_key: r.natsKey });
  if (next === text) return false;
  const check = parseConfig(next, config.file);
  for (const r of results) {
    const n = check.nodes.find((x) => x.id === r.node);
    if (n?.publicKey !== r.publicKey || n.natsKey !== r.natsKey) {
      throw new BurrowError(`could not write the keys of node ${r.node} into ${config.file} (its [[nodes]] entry is not in the usual form): add public_key = "${r.publicKey}" and nats_key = "${r.natsKey}" to it by hand`);
    }
  }
  const tmp = `${config.file}.keygen-${process.pid}`;
  writeFileSync(tmp, next);
  renameSync(tmp, config.file);
  return true;
}

/** Sets `key = "value"` lines in the [[nodes]] table whose id is `id` (replaced, or added after its id line). */
export function setNodeKeys(text: string, id: string, values: Readonly<Record<string, string>>): string {
  const lines = text.split('\n');
  let start = -1;
  for (let i = 0; i < lines.length; i++) {
    if (!/^\s*\[\[\s*nodes\s*\]\]/.test(lines[i]!)) continue;
    let end = i + 1;
    while (end < lines.length && !/^\s*\[/.test(lines[end]!)) end++;
    const idLine = lines.slice(i + 1, end).findIndex((l) => new RegExp(`^\\s*id\\s*=\\s*["']${id}["']`).test(l));
    if (idLine < 0) {
      i = end - 1;
      continue;
    }
    start = i + 1 + idLine;
    let added = 0;
    for (const [k, v] of Object.entries(values)) {
      const line = `${k} = "${v}"`;
      const at = lines.slice(i + 1, end).findIndex((l) => new RegExp(`^\\s*${k}\\s*=`).test(l));
      if (at >= 0) {
        lines[i + 1 + at] = line;
      } else {
        lines.splice(start + 1 + added, 0, line);
        added++;
        end++;
      }
    }
    break;
  }
  return start < 0 ? text : lines.join('\n');
}

export function runKeygen(configFile: string, nodeId: string | undefined, json: boolean): number {
  const r = keygen(configFile, nodeId);
  const config = loadConfig(configFile);
  if (json) {
    process.stdout.write(JSON.stringify({ ...r, sign: config.security.sign, auth: config.security.auth }, null, 2) + '\n');
    return 0;
  }
  for (const k of r.results) {
    const made = k.created.length > 0 ? `new keys in ${k.created.map((f) => path.relative(process.cwd(), f)).join(', ')}` : 'keys kept';
    process.stdout.write(`${k.node}: ${made}\n  public_key = "${k.publicKey}"\n  nats_key = "${k.natsKey}"\n`);
  }
  if (r.secretCreated) process.stdout.write(`cluster secret (route password) in ${path.relative(process.cwd(), r.secretCreated)}: copy it to every machine\n`);
  process.stdout.write(r.configUpdated ? `public keys written into ${config.file}\n` : `${config.file} already has these keys\n`);
  if (!config.security.sign && !config.security.auth) process.stdout.write('note: [security] sign and auth are off in this file: the keys are not used until you turn them on\n');
  if (nodeId && config.nodes.length > 1) process.stdout.write(`copy the two lines above into node ${nodeId}'s entry in every node's ${path.basename(config.file)}\n`);
  return 0;
}

/** `burrow up` on first use: keys for every node when [security] needs them and any is missing. */
export function keysNeeded(config: Config): boolean {
  const { sign, auth } = config.security;
  if (!sign && !auth) return false;
  if (auth && config.nats.urls === null && !existsSync(config.security.secretFile)) return true;
  return config.nodes.some((n) => {
    const f = keyFiles(n.dataDir);
    return n.publicKey === null || n.natsKey === null || !existsSync(f.sign) || !existsSync(f.nats);
  });
}
