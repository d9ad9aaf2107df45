import { loadConfig } from '../src/config/config.ts';
import { getJson } from './node-client.ts';

interface TableSum { table: string; rows: number; digest: string }

/** `burrow checksum`: per node, per captured table, row count and digest; exit 0 iff all agree. */
export async function runChecksum(configFile: string, json: boolean): Promise<number> {
  const config = loadConfig(configFile);
  const results = await Promise.all(config.nodes.map(async (n) => {
    const r = await getJson(n, '/checksum', 120_000);
    return r.ok ? { id: n.id, up: true, tables: r.body.tables as TableSum[] } : { id: n.id, up: false, error: r.error, tables: [] as TableSum[] };
  }));
  const names = [...new Set(results.flatMap((r) => r.tables.map((t) => t.table)))].sort();
  const differing: string[] = [];
  for (const name of names) {
    const sums = results.map((r) => r.tables.find((t) => t.table === name));
    const first = sums[0];
    if (!sums.every((s) => s && first && s.rows === first.rows && s.digest === first.digest)) differing.push(name);
  }
  const down = results.filter((r) => !r.up);
  const agree = down.length === 0 && differing.length === 0;
  if (json) {
    process.stdout.write(JSON.stringify({ agree, differing, down: down.map((d) => d.id), nodes: results }, null, 2) + '\n');
  } else {
    const header = ['table', ...results.map((r) => r.id)];
    const rows = names.map((name) => [name, ...results.map((r) => {
      const t = r.tables.find((x) => x.table === name);
      return t ? `${t.rows} ${t.digest}` : '-';
    })]);
    const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
    const line = (cells: string[]) => cells.map((c, i) => c.padEnd(widths[i]!)).join('  ');
    process.stdout.write(line(header) + '\n');
    for (const r of rows) process.stdout.write(line(r) + (differing.includes(r[0]!) ? '  DIFFERS' : '') + '\n');
    for (const d of down) process.stdout.write(`${d.id}: down (${d.error})\n`);
    process.stdout.write(agree ? `all ${results.length} nodes agree on ${names.length} tables\n`
      : `replicas differ${differing.length ? ` in: ${differing.join(', ')}` : ''}${down.length ? `; down: ${down.map((d) => d.id).join(', ')}` : ''}\n`);
  }
  return agree ? 0 : 1;
}
