import type { NodeConfig } from '../src/config/config.ts';
import { errorMessage } from '../src/util/errors.ts';

/** GET a node's HTTP endpoint as JSON; `null` + error when it does not answer. */
export async function getJson(node: NodeConfig, route: string, timeoutMs = 3000): Promise<{ ok: true; body: any } | { ok: false; error: string }> {
  try {
    const res = await fetch(`http://${node.http.host}:${node.http.port}${route}`, { signal: AbortSignal.timeout(timeoutMs) });
    const body = await res.json();
    if (!res.ok && route !== '/readyz') return { ok: false, error: `HTTP ${res.status}: ${JSON.stringify(body)}` };
    return { ok: true, body };
  } catch (err) {
    const cause = (err as { cause?: { code?: string } }).cause?.code;
    return { ok: false, error: cause ?? errorMessage(err) };
  }
}
