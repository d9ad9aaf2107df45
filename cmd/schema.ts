import { loadConfig } from '../src/config/config.ts';
import { getJson } from './node-client.ts';

interface SchemaObjectReport { type: string; name: string; table: string; fingerprint: string }
interface NodeSchema { id: string; up: boolean; error?: string; position: number; pending: number; conflicts: number; objects: SchemaObjectReport[] }

/**
 * `burrow schema`: every node's schema objects with a fingerprint (SHA-256 of the SQL SQLite
 * stored), the schema stream position each has folded, entries of its own not ordered yet and
 * schema conflicts. Exit 0 when every node has the same objects, 1 on drift (naming the tables)
 * or when a node does not answer.
 */
export async function runSchema(configFile: string, json: boolean): Promise<number> {
  const config = loadConfig(configFile);
  const nodes: NodeSchema[] = await Promise.all(config.nodes.map(async (n) => {
    const r = await getJson(n, '/schema', 30_000);
    if (!r.ok) return { id: n.id, up: false, error: r.error, position: 0, pending: 0, conflicts: 0, objects: [] };
    const b = r.body as Omit<NodeSchema, 'id' | 'up'>;
    return { id: n.id, up: true, position: b.position, pending: b.pending, conflicts: b.conflicts, objects: b.objects };
  }));
  const up = nodes.filter((n) => n.up);
  const keys = [...new Set(up.flatMap((n) => n.objects.map((o) => `${o.type} ${o.name}`)))].sort();
  const fp = (n: NodeSchema, k: string) => n.objects.find((o) => `${o.type} ${o.name}` === k)?.fingerprint ?? null;
  const drift = keys.filter((k) => !up.every((n) => fp(n, k) === fp(up[0]!, k)));
  const tableOf = (k: string) => up.flatMap((n) => n.objects).find((o) => `${o.type} ${o.name}` === k)?.table ?? k;
  const driftTables = [...new Set(drift.map(tableOf))].sort();
  const down = nodes.filter((n) => !n.up);
  const ok = drift.length === 0 && down.length === 0;
  if (json) {
    process.stdout.write(JSON.stringify({ agree: ok, drift: driftTables, driftObjects: drift, down: down.map((d) => d.id), nodes }, null, 2) + '\n');
    return ok ? 0 : 1;
  }
  const header = ['object', ...nodes.map((n) => n.id)];
  const rows = keys.map((k) => [k, ...nodes.map((n) => (n.up ? fp(n, k) ?? '-' : '?'))]);
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: string[]) => cells.map((c, i) => c.padEnd(widths[i]!)).join('  ');
  process.stdout.write(line(header) + '\n');
  for (const r of rows) process.stdout.write(line(r) + (drift.includes(r[0]!) ? '  DIFFERS' : '') + '\n');
  for (const n of nodes) {
    if (n.up) process.stdout.write(`${n.id}: schema stream position ${n.position}, ${n.pending} own change(s) not ordered yet, ${n.conflicts} conflict(s)\n`);
    else process.stdout.write(`${n.id}: down (${n.error})\n`);
  }
  process.stdout.write(ok ? `all ${nodes.length} nodes have the same schema (${keys.length} objects)\n`
    : `schema differs${driftTables.length ? ` in: ${driftTables.join(', ')}` : ''}${down.length ? `; down: ${down.map((d) => d.id).join(', ')}` : ''}\n`);
  return ok ? 0 : 1;
}
