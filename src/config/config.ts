import { readFileSync } from 'node:fs';
import path from 'node:path';
import { parse as parseToml } from 'smol-toml';
import { ConfigError } from '../util/errors.ts';

/**
 * cluster.toml → a validated, frozen Config. Every node of the cluster reads the same file.
 * Errors name the file, the key and the problem on one line (ConfigError, exit code 2).
 */

export interface HostPort {
  readonly host: string;
  readonly port: number;
}

export interface NodeConfig {
  readonly id: string;
  /** Absolute path of the SQLite replica applications use. */
  readonly db: string;
  /** Absolute folder for the node's own files: nats-server store, pid file, logs. */
  readonly dataDir: string;
  /** Embedded nats-server client address (null when [nats] urls points to an external cluster). */
  readonly client: HostPort | null;
  /** Embedded nats-server cluster route address (null with external NATS). */
  readonly route: HostPort | null;
  /** HTTP status endpoint. */
  readonly http: HostPort;
  /** The embedded nats-server's monitoring endpoint (nats CLI, exporters), or null (off). */
  readonly natsMonitor: HostPort | null;
  /** Public nkey ("U…") its batches, schema entries and repair messages are signed with (null: none yet). */
  readonly publicKey: string | null;
  /** Public nkey ("U…") it authenticates to NATS with (null: none yet). */
  readonly natsKey: string | null;
}

/** [security]: who may connect and write (README "Security"). */
export interface SecurityConfig {
  /** Every batch, schema entry, heartbeat and repair message is signed and verified. */
  readonly sign: boolean;
  /** Embedded nats-servers: clients authenticate with their node's nkey, routes with the cluster secret. */
  readonly auth: boolean;
  /** File holding the route password every embedded server shares (absolute). */
  readonly secretFile: string;
  /** Listen off loopback without auth (refused otherwise). */
  readonly allowInsecure: boolean;
  /** TLS on client and route connections of the embedded servers (all three set) or none. */
  readonly tls: { readonly cert: string; readonly key: string; readonly ca: string } | null;
  /** External NATS ([nats] urls): user credentials file (.creds or an nkey seed file), absolute. */
  readonly natsCreds: string | null;
}

export type Synchronous = 'OFF' | 'NORMAL' | 'FULL';

export interface Config {
  /** Absolute path of the file this came from. */
  readonly file: string;
  readonly cluster: {
    readonly name: string;
    readonly shards: number;
    /** Replicas per stream as configured. */
    readonly replicasConfigured: number;
    /** Effective replicas per stream: min(configured, node count). */
    readonly replicas: number;
    /** A remote entry whose physical clock is further ahead than this is held, not applied. */
    readonly hlcSkewMsMax: number;
    /** Per-shard stream size bound: past it the oldest messages go (nodes keep their own positions). */
    readonly streamBytesMax: number;
    /** Shard streams drop messages older than this (seconds), read or not. */
    readonly streamAgeMaxS: number;
    /** Tombstones and clocks of deleted rows older than this are collected once a snapshot covers them. */
    readonly historyS: number;
  };
  readonly sqlite: {
    readonly synchronous: Synchronous;
    readonly busyTimeoutMs: number;
  };
  readonly replication: {
    /** Most local changes stamped in one ingest transaction. */
    readonly ingestChangesMax: number;
    /** Most changes in one published message (one shard). */
    readonly batchChangesMax: number;
    /** Most bytes in one published message. */
    readonly batchBytesMax: number;
    /** Largest row a write may create (roughly its stored bytes): larger writes are refused, since no message could carry them. */
    readonly rowBytesMax: number;
    /** Most publishes awaiting their ack, over all shards. */
    readonly publishInFlightMax: number;
    readonly publishTimeoutMs: number;
    /** How often the node checks PRAGMA data_version for local commits. */
    readonly pollIntervalMs: number;
    /** Most messages applied in one SQLite transaction. */
    readonly applyMessagesMax: number;
  };
  readonly snapshot: {
    /** A node takes a snapshot when the newest in the bucket is older than this (seconds); 0 = only on demand. */
    readonly intervalS: number;
    /** Snapshots kept in the bucket (the oldest are deleted). */
    readonly keep: number;
  };
  readonly nats: {
    /** External NATS cluster; null → each node runs its embedded nats-server. */
    readonly urls: readonly string[] | null;
    /** nats-server binary (name on PATH or path). */
    readonly binary: string;
  };
  readonly security: SecurityConfig;
  readonly nodes: readonly NodeConfig[];
}

const idPattern = /^[A-Za-z0-9_-]{1,32}$/;

type Table = Record<string, unknown>;

class Reader {
  constructor(readonly file: string) {}

  fail(key: string, problem: string): never {
    throw new ConfigError(`${this.file}: ${key}: ${problem}`);
  }

  table(obj: Table, key: string, prefix: string, required: boolean): Table | undefined {
    const v = obj[key];
    if (v === undefined) {
      if (required) this.fail(prefix + key, 'missing (required section)');
      return undefined;
    }
    if (typeof v !== 'object' || v === null || Array.isArray(v)) this.fail(prefix + key, 'must be a table');
    return v as Table;
  }

  onlyKeys(obj: Table, allowed: readonly string[], prefix: string): void {
    for (const k of Object.keys(obj)) {
      if (!allowed.includes(k)) {
        this.fail(prefix + k, `unknown key (allowed here: ${allowed.join(', ')})`);
      }
    }
  }

  string(obj: Table, key: string, prefix: string, dflt?: string): string {
    const v = obj[key];
    if (v === undefined) {
      if (dflt !== undefined) return dflt;
      this.fail(prefix + key, 'missing (required)');
    }
    if (typeof v !== 'string' || v.length === 0) this.fail(prefix + key, `must be a non-empty string, got ${show(v)}`);
    return v;
  }

  int(obj: Table, key: string, prefix: string, dflt: number, min: number, max: number): number {
    const v = obj[key];
    if (v === undefined) return dflt;
    const n = typeof v === 'bigint' ? Number(v) : v;
    if (typeof n !== 'number' || !Number.isInteger(n)) this.fail(prefix + key, `must be an integer, got ${show(v)}`);
    if (n < min || n > max) this.fail(prefix + key, `must be between ${min} and ${max}, got ${n}`);
    return n;
  }

  bool(obj: Table, key: string, prefix: string, dflt: boolean): boolean {
    const v = obj[key];
    if (v === undefined) return dflt;
    if (typeof v !== 'boolean') this.fail(prefix + key, `must be true or false, got ${show(v)}`);
    return v;
  }

  /** A public user nkey: "U" and 55 more base32 characters (what `burrow keygen` writes). */
  nkey(obj: Table, key: string, prefix: string): string {
    const v = this.string(obj, key, prefix);
    if (!/^U[A-Z2-7]{55}$/.test(v)) this.fail(prefix + key, `"${v}" is not a public user nkey (U followed by 55 base32 characters; \`burrow keygen\` makes them)`);
    return v;
  }

  hostPort(obj: Table, key: string, prefix: string): HostPort {
    const raw = this.string(obj, key, prefix);
    const m = /^([A-Za-z0-9.-]+|\[[0-9a-fA-F:]+\]):(\d{1,5})$/.exec(raw);
    if (!m) this.fail(prefix + key, `"${raw}" is not a host:port address (e.g. "127.0.0.1:4222")`);
    const port = Number(m[2]);
    if (port < 1 || port > 65535) this.fail(prefix + key, `"${raw}": port must be 1-65535`);
    return Object.freeze({ host: m[1]!, port });
  }
}

function show(v: unknown): string {
  try {
    return typeof v === 'bigint' ? v.toString() : JSON.stringify(v) ?? String(v);
  } catch {
    return String(v);
  }
}

export function loadConfig(file: string): Config {
  const abs = path.resolve(file);
  let text: string;
  try {
    text = readFileSync(abs, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new ConfigError(`${file}: cannot read config file (${code ?? String(err)})`);
  }
  return parseConfig(text, abs);
}

export function parseConfig(text: string, file: string): Config {
  const r = new Reader(file);
  let doc: Table;
  try {
    doc = parseToml(text) as Table;
  } catch (err) {
    const msg = (err as Error).message.split('\n')[0];
    throw new ConfigError(`${file}: not valid TOML: ${msg}`);
  }
  const baseDir = path.dirname(file);
  r.onlyKeys(doc, ['cluster', 'sqlite', 'replication', 'snapshot', 'nats', 'security', 'nodes'], '');

  const c = r.table(doc, 'cluster', '', true)!;
  r.onlyKeys(c, ['name', 'shards', 'replicas', 'hlc_skew_ms_max', 'stream_bytes_max', 'stream_age_max_s', 'history_s'], 'cluster.');
  const name = r.string(c, 'name', 'cluster.');
  if (!idPattern.test(name)) r.fail('cluster.name', `"${name}" must be 1-32 characters of A-Z a-z 0-9 _ -`);
  const shards = r.int(c, 'shards', 'cluster.', 16, 1, 1024);
  const replicasConfigured = r.int(c, 'replicas', 'cluster.', 3, 1, 5);
  const hlcSkewMsMax = r.int(c, 'hlc_skew_ms_max', 'cluster.', 60_000, 10, 86_400_000);
  const streamBytesMax = r.int(c, 'stream_bytes_max', 'cluster.', 1024 * 1024 * 1024, 1024 * 1024, Number.MAX_SAFE_INTEGER);
  // Shard streams keep messages this long (and up to stream_bytes_max), whoever has read them.
  const streamAgeMaxS = r.int(c, 'stream_age_max_s', 'cluster.', 86_400, 10, 365 * 86_400);
  // Tombstones older than this (and covered by a snapshot) are collected. Twice the stream age at
  // least: a change published now is read within stream_age_max_s, so it never meets a replica
  // that has already forgotten the delete it loses to.
  const historyS = r.int(c, 'history_s', 'cluster.', Math.max(7 * 86_400, 2 * streamAgeMaxS), 1, 730 * 86_400);
  if (historyS < 2 * streamAgeMaxS) {
    r.fail('cluster.history_s', `${historyS} is less than twice cluster.stream_age_max_s (${streamAgeMaxS}): a late change could resurrect a row whose tombstone was already collected`);
  }

  const s = r.table(doc, 'sqlite', '', false) ?? {};
  r.onlyKeys(s, ['synchronous', 'busy_timeout_ms'], 'sqlite.');
  const sync = r.string(s, 'synchronous', 'sqlite.', 'NORMAL').toUpperCase();
  if (sync !== 'OFF' && sync !== 'NORMAL' && sync !== 'FULL') {
    r.fail('sqlite.synchronous', `must be "NORMAL" or "FULL" (or "OFF"), got "${sync}"`);
  }
  // The node's SQLite calls are synchronous: a busy wait blocks its event loop, so it is short and the node retries.
  const busyTimeoutMs = r.int(s, 'busy_timeout_ms', 'sqlite.', 200, 0, 5000);

  const rp = r.table(doc, 'replication', '', false) ?? {};
  const rpKeys = ['ingest_changes_max', 'batch_changes_max', 'batch_bytes_max', 'row_bytes_max', 'publish_in_flight_max',
    'publish_timeout_ms', 'poll_interval_ms', 'apply_messages_max'];
  r.onlyKeys(rp, rpKeys, 'replication.');
  const replication = Object.freeze({
    ingestChangesMax: r.int(rp, 'ingest_changes_max', 'replication.', 20_000, 1, 1_000_000),
    batchChangesMax: r.int(rp, 'batch_changes_max', 'replication.', 2000, 1, 100_000),
    batchBytesMax: r.int(rp, 'batch_bytes_max', 'replication.', 512 * 1024, 1024, 8 * 1024 * 1024),
    // The embedded nats-server takes messages up to 8 MB: a row must fit with the batch envelope.
    rowBytesMax: r.int(rp, 'row_bytes_max', 'replication.', 4 * 1024 * 1024, 1024, 7 * 1024 * 1024),
    publishInFlightMax: r.int(rp, 'publish_in_flight_max', 'replication.', 64, 1, 4096),
    publishTimeoutMs: r.int(rp, 'publish_timeout_ms', 'replication.', 2000, 100, 120_000),
    pollIntervalMs: r.int(rp, 'poll_interval_ms', 'replication.', 2, 1, 60_000),
    applyMessagesMax: r.int(rp, 'apply_messages_max', 'replication.', 256, 1, 100_000),
  });

  const sn = r.table(doc, 'snapshot', '', false) ?? {};
  r.onlyKeys(sn, ['interval_s', 'keep'], 'snapshot.');
  const snapshot = Object.freeze({
    intervalS: r.int(sn, 'interval_s', 'snapshot.', 3600, 0, 30 * 86_400),
    keep: r.int(sn, 'keep', 'snapshot.', 3, 1, 100),
  });
  if (snapshot.intervalS > streamAgeMaxS) {
    r.fail('snapshot.interval_s', `${snapshot.intervalS} is longer than cluster.stream_age_max_s (${streamAgeMaxS}): a node that falls behind could find no snapshot the streams still cover`);
  }

  const n = r.table(doc, 'nats', '', false) ?? {};
  r.onlyKeys(n, ['urls', 'binary'], 'nats.');
  let urls: string[] | null = null;
  if (n.urls !== undefined) {
    if (!Array.isArray(n.urls) || n.urls.length === 0 || n.urls.some((u) => typeof u !== 'string' || u === '')) {
      r.fail('nats.urls', 'must be a non-empty list of NATS URLs, e.g. ["nats://10.0.0.1:4222"]');
    }
    urls = (n.urls as string[]).slice();
    for (const [i, u] of urls.entries()) {
      if (!/^(nats|tls):\/\/[^\s/]+:\d{1,5}$/.test(u) && !/^[^\s/:]+:\d{1,5}$/.test(u)) {
        r.fail(`nats.urls[${i}]`, `"${u}" is not a NATS URL (e.g. "nats://10.0.0.1:4222")`);
      }
    }
  }
  const binary = r.string(n, 'binary', 'nats.', 'nats-server');

  const rawNodes = doc.nodes;
  if (rawNodes === undefined) r.fail('nodes', 'missing: add at least one [[nodes]] table');
  if (!Array.isArray(rawNodes) || rawNodes.length === 0) r.fail('nodes', 'must be one or more [[nodes]] tables');
  const nodes: NodeConfig[] = [];
  const ids = new Map<string, number>();
  const addrs = new Map<string, string>();
  const paths = new Map<string, string>();
  for (const [i, raw] of (rawNodes as unknown[]).entries()) {
    const p = `nodes[${i}].`;
    if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) r.fail(`nodes[${i}]`, 'must be a table');
    const t = raw as Table;
    r.onlyKeys(t, ['id', 'db', 'data', 'client', 'route', 'http', 'nats_monitor', 'public_key', 'nats_key'], p);
    const id = r.string(t, 'id', p);
    if (!idPattern.test(id)) r.fail(p + 'id', `"${id}" must be 1-32 characters of A-Z a-z 0-9 _ -`);
    if (ids.has(id)) r.fail(p + 'id', `duplicate node id "${id}" (also nodes[${ids.get(id)}].id)`);
    ids.set(id, i);
    const db = path.resolve(baseDir, r.string(t, 'db', p));
    const dataDir = path.resolve(baseDir, r.string(t, 'data', p, path.relative(baseDir, path.dirname(db)) || '.'));
    let client: HostPort | null = null;
    let route: HostPort | null = null;
    if (urls === null || t.client !== undefined) client = r.hostPort(t, 'client', p);
    if (urls === null || t.route !== undefined) route = r.hostPort(t, 'route', p);
    const http = r.hostPort(t, 'http', p);
    const natsMonitor = t.nats_monitor === undefined ? null : r.hostPort(t, 'nats_monitor', p);
    for (const [key, hp] of [['client', client], ['route', route], ['http', http], ['nats_monitor', natsMonitor]] as const) {
      if (hp === null) continue;
      const addr = `${hp.host}:${hp.port}`;
      // A wildcard host (0.0.0.0, ::) clashes with every host on the same port.
      const wildcard = (h: string) => h === '0.0.0.0' || h === '[::]';
      const other = addrs.get(addr)
        ?? [...addrs.entries()].find(([a]) => a.endsWith(`:${hp.port}`) && (wildcard(hp.host) || wildcard(a.slice(0, a.lastIndexOf(':')))))?.[1];
      if (other !== undefined) r.fail(p + key, `address ${addr} is already used by ${other}`);
      addrs.set(addr, `${p}${key}`);
    }
    for (const [key, v] of [['db', db], ['data', dataDir]] as const) {
      const other = paths.get(`${key}:${v}`);
      if (other !== undefined) r.fail(p + key, `path ${v} is already used by ${other}`);
      paths.set(`${key}:${v}`, `${p}${key}`);
    }
    const publicKey = t.public_key === undefined ? null : r.nkey(t, 'public_key', p);
    const natsKey = t.nats_key === undefined ? null : r.nkey(t, 'nats_key', p);
    nodes.push(Object.freeze({ id, db, dataDir, client, route, http, natsMonitor, publicKey, natsKey }));
  }
  const security = readSecurity(r, doc, baseDir, urls !== null, nodes);

  return Object.freeze({
    file,
    cluster: Object.freeze({
      name, shards, replicasConfigured, replicas: Math.min(replicasConfigured, nodes.length),
      hlcSkewMsMax, streamBytesMax, streamAgeMaxS, historyS,
    }),
    sqlite: Object.freeze({ synchronous: sync as Synchronous, busyTimeoutMs }),
    replication,
    snapshot,
    nats: Object.freeze({ urls: urls ? Object.freeze(urls) : null, binary }),
    security,
    nodes: Object.freeze(nodes),
  });
}

const loopback = (host: string) => host === 'localhost' || host === '[::1]' || /^127\.\d+\.\d+\.\d+$/.test(host);

function readSecurity(r: Reader, doc: Table, baseDir: string, external: boolean, nodes: readonly NodeConfig[]): SecurityConfig {
  const t = r.table(doc, 'security', '', false) ?? {};
  r.onlyKeys(t, ['sign', 'auth', 'secret_file', 'allow_insecure', 'tls_cert', 'tls_key', 'tls_ca', 'nats_creds'], 'security.');
  const file = (key: string) => (t[key] === undefined ? null : path.resolve(baseDir, r.string(t, key, 'security.')));
  const sign = r.bool(t, 'sign', 'security.', false);
  const auth = r.bool(t, 'auth', 'security.', false);
  const allowInsecure = r.bool(t, 'allow_insecure', 'security.', false);
  const [cert, key, ca] = [file('tls_cert'), file('tls_key'), file('tls_ca')];
  const set = [cert, key, ca].filter((x) => x !== null).length;
  if (set !== 0 && set !== 3) r.fail('security.tls_cert', 'tls_cert, tls_key and tls_ca go together (set all three, or none)');
  const security: SecurityConfig = Object.freeze({
    sign, auth, allowInsecure,
    secretFile: file('secret_file') ?? path.resolve(baseDir, 'data', 'cluster.secret'),
    tls: set === 3 ? Object.freeze({ cert: cert!, key: key!, ca: ca! }) : null,
    natsCreds: file('nats_creds'),
  });
  if (!external && !auth && !allowInsecure) {
    for (const [i, n] of nodes.entries()) {
      for (const [k, hp] of [['client', n.client], ['route', n.route]] as const) {
        if (hp && !loopback(hp.host)) {
          r.fail(`nodes[${i}].${k}`, `listens on ${hp.host}, off loopback, without authentication: set [security] auth = true (README "Security"), or allow_insecure = true to accept that anyone who reaches the port can write every replica`);
        }
      }
    }
  }
  return security;
}

export function nodeById(config: Config, id: string): NodeConfig {
  const node = config.nodes.find((n) => n.id === id);
  if (!node) {
    throw new ConfigError(`${config.file}: no node "${id}" in [[nodes]] (known: ${config.nodes.map((n) => n.id).join(', ')})`);
  }
  return node;
}
