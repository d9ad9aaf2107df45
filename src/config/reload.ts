import type { Config } from './config.ts';

/**
 * What a running node may take from a re-read cluster.toml (SIGHUP): the member list and the
 * snapshot settings. Everything that names this node's identity, files, addresses or the
 * cluster's layout needs a restart; a new file that changes one of those is refused whole.
 */
export function reloadProblem(running: Config, next: Config, nodeId: string): string | null {
  const self = running.nodes.find((n) => n.id === nodeId)!;
  const mine = next.nodes.find((n) => n.id === nodeId);
  if (!mine) return `node ${nodeId} is not in the new [[nodes]] (stop it instead of removing it from a running node's file)`;
  const same = (a: unknown, b: unknown) => JSON.stringify(a) === JSON.stringify(b);
  const fixed: [string, unknown, unknown][] = [
    ['cluster.name', running.cluster.name, next.cluster.name],
    ['cluster.shards', running.cluster.shards, next.cluster.shards],
    ['cluster.replicas', running.cluster.replicasConfigured, next.cluster.replicasConfigured],
    ['cluster.stream_bytes_max', running.cluster.streamBytesMax, next.cluster.streamBytesMax],
    ['cluster.stream_age_max_s', running.cluster.streamAgeMaxS, next.cluster.streamAgeMaxS],
    ['nats', running.nats, next.nats],
    ['security', running.security, next.security],
    ['sqlite', running.sqlite, next.sqlite],
    ['replication', running.replication, next.replication],
    [`node ${nodeId}`, self, mine],
  ];
  for (const [key, a, b] of fixed) if (!same(a, b)) return `${key} changed: restart the node to use it (membership and [snapshot] reload live)`;
  const keys = missingKeys(next);
  if (keys) return keys;
  for (const n of next.nodes) {
    const old = running.nodes.find((o) => o.id === n.id);
    if (old && !same(old, n)) return `node ${n.id} changed its addresses or paths: remove it, then add it under a new id, or restart every node`;
  }
  return null;
}

/** Members added and removed between two configs. */
export function membershipDiff(running: Config, next: Config): { added: string[]; removed: string[] } {
  const before = new Set(running.nodes.map((n) => n.id));
  const after = new Set(next.nodes.map((n) => n.id));
  return { added: [...after].filter((id) => !before.has(id)), removed: [...before].filter((id) => !after.has(id)) };
}

/** [security] needs every member's public keys in the file: which are missing, or null. */
export function missingKeys(config: Config): string | null {
  const { sign, auth } = config.security;
  const lacking = config.nodes.filter((n) => (sign && n.publicKey === null) || (auth && config.nats.urls === null && n.natsKey === null)).map((n) => n.id);
  if (lacking.length === 0) return null;
  return `${config.file}: [security] ${sign ? 'sign' : 'auth'} is on, but node${lacking.length > 1 ? 's' : ''} ${lacking.join(', ')} `
    + `ha${lacking.length > 1 ? 've' : 's'} no ${sign ? 'public_key' : 'nats_key'} yet: run burrow keygen --config ${config.file} (burrow up does it on first use)`;
}
