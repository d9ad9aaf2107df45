import http from 'node:http';
import type { HostPort } from '../config/config.ts';
import { errorMessage } from '../util/errors.ts';

/** What the HTTP API needs from the node. */
export interface NodeApi {
  status(): unknown;
  ready(): boolean;
  checksum(): Promise<unknown>;
}

const json = (res: http.ServerResponse, code: number, body: unknown) => {
  // SQLite integers arrive as bigints: numbers when exact, strings beyond 2^53.
  const text = JSON.stringify(body, (_k, v) => (typeof v === 'bigint' ? (v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v.toString()) : v), 2);
  res.writeHead(code, { 'content-type': 'application/json' });
  res.end(text + '\n');
};

/** GET /status, /healthz (alive), /readyz (ready), /checksum. */
export async function startHttp(addr: HostPort, api: NodeApi): Promise<http.Server> {
  const server = http.createServer((req, res) => {
    const url = (req.url ?? '/').split('?')[0];
    if (req.method !== 'GET') return json(res, 405, { error: 'only GET' });
    try {
      switch (url) {
        case '/status':
          return json(res, 200, api.status());
        case '/healthz':
          return json(res, 200, { ok: true });
        case '/readyz':
          return json(res, api.ready() ? 200 : 503, { ready: api.ready() });
        case '/checksum':
          api.checksum().then((c) => json(res, 200, c), (err) => json(res, 500, { error: errorMessage(err) }));
          return;
        default:
          return json(res, 404, { error: `no route ${url}`, routes: ['/status', '/healthz', '/readyz', '/checksum'] });
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
