import http from 'node:http';
import type { HostPort } from '../config/config.ts';
import { errorMessage } from '../util/errors.ts';

/** Progress events of a long operation (snapshot, restore), streamed to the caller. */
export type Progress = (p: object) => void;

/** What the HTTP API needs from the node. */
export interface NodeApi {
  status(): unknown;
  ready(): boolean;
  checksum(): Promise<unknown>;
  snapshot(progress: Progress): Promise<unknown>;
  snapshots(): Promise<unknown>;
  restore(name: string | undefined, progress: Progress): Promise<unknown>;
  /** The schema as this node has it: every object with a fingerprint, and the replicated state. */
  schema(): unknown;
  /** `burrow migrate`: order statements for every node (this node's next schema entry). */
  migrate(sql: string): unknown;
  /** Prometheus exposition (GET /metrics). */
  metrics?(): Promise<{ contentType: string; body: string }>;
  /** GET /shards: per shard position, lag, stream leader and replicas. */
  shards?(): Promise<unknown>;
  /** GET /dead, /conflicts, /waiting (?limit=N). */
  inspect?(kind: 'dead' | 'conflicts' | 'waiting', limit: number): unknown;
  /** POST /dead/retry, /dead/purge with {"ids": [..]} or {"all": true}. */
  retryDead?(ids: readonly number[] | 'all'): unknown;
  purgeDead?(ids: readonly number[] | 'all'): unknown;
  /** Set once the process hit an error it cannot go on from (an uncaught exception): /healthz fails. */
  broken?(): string | null;
}

const loopbackName = (h: string) => h === 'localhost' || h === '[::1]' || /^127\.\d+\.\d+\.\d+$/.test(h);

/**
 * Which Host headers a request may carry: the configured host, and loopback names when it listens
 * on loopback. A browser page led to this port by a DNS name of its own (DNS rebinding) sends that
 * name and is refused. A wildcard listen address accepts any host.
 */
export function hostAllowed(addr: HostPort, header: string | undefined): boolean {
  if (addr.host === '0.0.0.0' || addr.host === '[::]') return true;
  if (header === undefined) return false;
  const m = /^(\[[^\]]+\]|[^:]+)(?::(\d+))?$/.exec(header.trim().toLowerCase());
  if (!m || (m[2] !== undefined && Number(m[2]) !== addr.port)) return false;
  const host = m[1]!;
  return host === addr.host.toLowerCase() || (loopbackName(addr.host) && loopbackName(host));
}

/** Largest migration accepted (one schema entry; the stream's messages are bounded too). */
export const migrationBytesMax = 1024 * 1024;

// SQLite integers arrive as bigints: numbers when exact, strings beyond 2^53.
const bigints = (_k: string, v: unknown) =>
  (typeof v === 'bigint' ? (v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v.toString()) : v);
const toJson = (body: unknown) => JSON.stringify(body, bigints);

/**
 * A long operation as newline-delimited JSON: {"progress": …} lines while it runs, then one
 * {"result": …} or {"error": "…"} line (the status code is sent before the outcome is known).
 */
function streamed(res: http.ServerResponse, run: (progress: Progress) => Promise<unknown>): void {
  res.writeHead(200, { 'content-type': 'application/x-ndjson' });
  let last = 0;
  const progress: Progress = (p) => {
    const now = Date.now();
    if (now - last < 200) return;
    last = now;
    res.write(toJson({ progress: p }) + '\n');
  };
  run(progress).then((r) => res.end(toJson({ result: r }) + '\n'), (err) => res.end(toJson({ error: errorMessage(err) }) + '\n'));
}

const json = (res: http.ServerResponse, code: number, body: unknown) => {
  const text = JSON.stringify(body, bigints, 2);
  res.writeHead(code, { 'content-type': 'application/json' });
  res.end(text + '\n');
};

/** GET /status, /healthz (alive), /readyz (ready), /checksum, /snapshots, /schema; POST /snapshot, /restore[?snapshot=NAME]. */
export async function startHttp(addr: HostPort, api: NodeApi): Promise<http.Server> {
  let checksumRunning = false;
  const server = http.createServer((req, res) => {
    const [url, query] = (req.url ?? '/').split('?') as [string, string | undefined];
    if (!hostAllowed(addr, req.headers.host)) {
      req.resume();
      return json(res, 421, { error: `Host ${req.headers.host ?? '(none)'} is not this node's address (${addr.host}:${addr.port})` });
    }
    if (req.method === 'POST' && url === '/migrate') {
      const chunks: Buffer[] = [];
      let size = 0;
      req.on('data', (c: Buffer) => {
        size += c.length;
        if (size <= migrationBytesMax) chunks.push(c);
      });
      req.on('end', () => {
        if (size > migrationBytesMax) return json(res, 413, { error: `the migration is ${size} bytes; at most ${migrationBytesMax} are accepted` });
        try {
          return json(res, 200, api.migrate(Buffer.concat(chunks).toString('utf8')));
        } catch (err) {
          return json(res, 400, { error: errorMessage(err) });
        }
      });
      return;
    }
    if (req.method === 'POST' && (url === '/dead/retry' || url === '/dead/purge')) {
      let body = '';
      req.on('data', (c: Buffer) => {
        if (body.length < 1_000_000) body += c.toString('utf8');
      });
      req.on('end', () => {
        try {
          const b = JSON.parse(body || '{}') as { ids?: unknown; all?: unknown };
          const ids = b.all === true ? 'all' as const : Array.isArray(b.ids) && b.ids.every((x) => Number.isSafeInteger(x)) ? b.ids as number[] : null;
          if (ids === null) return json(res, 400, { error: 'body must be {"ids": [numbers]} or {"all": true}' });
          const fn = url === '/dead/retry' ? api.retryDead : api.purgeDead;
          if (!fn) return json(res, 404, { error: 'not here' });
          return json(res, 200, fn(ids));
        } catch (err) {
          return json(res, err instanceof SyntaxError ? 400 : 503, { error: errorMessage(err) });
        }
      });
      return;
    }
    if (req.method === 'POST') {
      req.resume();
      if (url === '/snapshot') return streamed(res, (p) => api.snapshot(p));
      if (url === '/restore') return streamed(res, (p) => api.restore(new URLSearchParams(query ?? '').get('snapshot') ?? undefined, p));
      return json(res, 404, { error: `no POST route ${url}`, routes: ['/snapshot', '/restore', '/migrate'] });
    }
    if (req.method !== 'GET') return json(res, 405, { error: 'only GET and POST' });
    try {
      switch (url) {
        case '/status':
          return json(res, 200, api.status());
        case '/healthz': {
          const broken = api.broken?.() ?? null;
          return broken === null ? json(res, 200, { ok: true }) : json(res, 500, { ok: false, error: broken });
        }
        case '/readyz':
          return json(res, api.ready() ? 200 : 503, { ready: api.ready() });
        case '/schema':
          return json(res, 200, api.schema());
        case '/snapshots':
          api.snapshots().then((c) => json(res, 200, c), (err) => json(res, 503, { error: errorMessage(err) }));
          return;
        case '/dead':
        case '/conflicts':
        case '/waiting': {
          if (!api.inspect) return json(res, 404, { error: 'not here' });
          const limit = Math.min(10_000, Math.max(1, Number(new URLSearchParams(query ?? '').get('limit') ?? 100) || 100));
          return json(res, 200, api.inspect(url.slice(1) as 'dead' | 'conflicts' | 'waiting', limit));
        }
        case '/shards':
          if (!api.shards) return json(res, 404, { error: 'not here' });
          api.shards().then((v) => json(res, 200, v), (err) => json(res, 503, { error: errorMessage(err) }));
          return;
        case '/metrics':
          if (!api.metrics) return json(res, 404, { error: 'no metrics here' });
          api.metrics().then((m) => {
            res.writeHead(200, { 'content-type': m.contentType });
            res.end(m.body);
          }, (err) => json(res, 500, { error: errorMessage(err) }));
          return;
        case '/checksum':
          // One at a time: each reads every table.
          if (checksumRunning) return json(res, 429, { error: 'a checksum is already running on this node; try again when it is done' });
          checksumRunning = true;
          api.checksum().then((c) => json(res, 200, c), (err) => json(res, 500, { error: errorMessage(err) })).finally(() => {
            checksumRunning = false;
          });
          return;
        default:
          return json(res, 404, { error: `no route ${url}`, routes: ['/status', '/healthz', '/readyz', '/metrics', '/checksum', '/snapshots', '/schema', '/dead', '/conflicts', '/waiting'] });
      }
    } catch (err) {
      return json(res, 500, { error: errorMessage(err) });
    }
  });
  server.keepAliveTimeout = 1000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(addr.port, addr.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  return server;
}
