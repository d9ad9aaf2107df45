/**
 * A chaos writer: a separate process (an application, not burrow) writing straight into one
 * node's SQLite file at a bounded rate — upserts and deletes of hot keys, some multi-row
 * transactions — and recording each write in a JSONL history only after its COMMIT returned.
 * It keeps writing whether the node's burrow process is alive or not. SIGTERM: finish, exit 0.
 *
 *   node --import tsx chaos/writer.ts '<json WriterArgs>'
 */
import { appendFileSync } from 'node:fs';
import BetterSqlite3 from 'better-sqlite3';
import { seededRandom } from '../src/util/random.ts';
import { keyId, keyValues, type ChaosTable, type HistoryWrite } from './workload.ts';

export interface WriterArgs {
  readonly db: string;
  readonly node: string;
  /** writer index within the node; the writer owns keys with index % writersPerNode === index */
  readonly index: number;
  readonly writersPerNode: number;
  readonly seed: number;
  readonly txPerSecond: number;
  readonly keys: number;
  readonly history: string;
  /** stop after this many ms (safety bound) */
  readonly maxMs: number;
}

const tables: ChaosTable[] = ['kv_int', 'kv_text', 'kv_pair'];

function main(args: WriterArgs): void {
  const rnd = seededRandom(args.seed);
  const db = new BetterSqlite3(args.db, { timeout: 5000 });
  db.defaultSafeIntegers(true);
  db.pragma('journal_mode = WAL');
  const w = `w${args.index}`;
  const upsert: Record<ChaosTable, BetterSqlite3.Statement> = {
    kv_int: db.prepare('INSERT INTO kv_int(k, v, n) VALUES (?, ?, ?) ON CONFLICT(k) DO UPDATE SET v = excluded.v, n = excluded.n'),
    kv_text: db.prepare('INSERT INTO kv_text(k, v, b) VALUES (?, ?, ?) ON CONFLICT(k) DO UPDATE SET v = excluded.v, b = excluded.b'),
    kv_pair: db.prepare('INSERT INTO kv_pair(a, b, v) VALUES (?, ?, ?) ON CONFLICT(a, b) DO UPDATE SET v = excluded.v'),
    kv_bulk: db.prepare('INSERT INTO kv_bulk(k, v) VALUES (?, ?) ON CONFLICT(k) DO UPDATE SET v = excluded.v'),
  };
  const del: Record<ChaosTable, BetterSqlite3.Statement> = {
    kv_int: db.prepare('DELETE FROM kv_int WHERE k = ?'),
    kv_text: db.prepare('DELETE FROM kv_text WHERE k = ?'),
    kv_pair: db.prepare('DELETE FROM kv_pair WHERE a = ? AND b = ?'),
    kv_bulk: db.prepare('DELETE FROM kv_bulk WHERE k = ?'),
  };
  const owned = Array.from({ length: args.keys }, (_, i) => i).filter((i) => i % args.writersPerNode === args.index);
  let seq = 0;
  let tx = 0;
  let stopping = false;
  process.on('SIGTERM', () => {
    stopping = true;
  });
  const started = Date.now();
  const step = () => {
    if (stopping || Date.now() - started > args.maxMs) {
      db.close();
      process.exit(0);
    }
    tx++;
    const n = rnd() < 0.25 ? 2 + Math.floor(rnd() * 3) : 1;
    const ops: Omit<HistoryWrite, 'ms'>[] = [];
    try {
      db.exec('BEGIN IMMEDIATE');
      for (let i = 0; i < n; i++) {
        const table = tables[Math.floor(rnd() * tables.length)]!;
        const ki = owned[Math.floor(rnd() * owned.length)]!;
        const key = keyValues(table, ki);
        if (rnd() < 0.15) {
          if (del[table].run(...key).changes > 0) ops.push({ t: table, k: keyId(key), op: 'd', v: null, node: args.node, w, seq: ++seq, tx });
        } else {
          const v = `${args.node}/${w}/${seq + 1}`;
          const extra = table === 'kv_int' ? BigInt(Math.floor(rnd() * 2 ** 62)) * (rnd() < 0.5 ? -1n : 1n)
            : table === 'kv_text' ? Buffer.from([0, Math.floor(rnd() * 256), 0]) : undefined;
          upsert[table].run(...key, v, ...(extra === undefined ? [] : [extra]));
          ops.push({ t: table, k: keyId(key), op: 'u', v, node: args.node, w, seq: ++seq, tx });
        }
      }
      db.exec('COMMIT');
      const ms = Date.now();
      if (ops.length > 0) appendFileSync(args.history, ops.map((o) => JSON.stringify({ ...o, ms })).join('\n') + '\n');
    } catch (err) {
      // Not committed (busy past the timeout, …): not recorded. Sequence numbers of the
      // rolled-back ops are simply skipped.
      if (db.inTransaction) db.exec('ROLLBACK');
      process.stderr.write(`writer ${args.node}/${w}: transaction not committed: ${(err as Error).message}\n`);
    }
    setTimeout(step, Math.max(0, 1000 / args.txPerSecond * (0.5 + rnd())));
  };
  step();
}

main(JSON.parse(process.argv[2] ?? '{}') as WriterArgs);
