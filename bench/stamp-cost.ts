/**
 * The writing node's serial step, measured alone: µs per row of ChangeStamper.stampPending over
 * 20,000 captured inserts (28 rounds after 2 warm-ups: median and min), then the parts of it one
 * by one (log read, row read, clock upsert, routing, key encoding, coalescing, log delete).
 *
 *   npx tsx bench/stamp-cost.ts
 */
import { ValueWriter } from '../src/codec/value-codec.ts';
import { mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import BetterSqlite3 from 'better-sqlite3';
import { Replica } from '../src/node/replica.ts';
import { SystemClock } from '../src/clock/clock.ts';
import { ShardRouter } from '../src/shard/shard-router.ts';
import { silentLogger } from '../src/util/log.ts';

const dir = mkdtempSync(path.join(os.tmpdir(), 'stamp-'));
const file = path.join(dir, 'a.db');
const app = new BetterSqlite3(file);
app.pragma('journal_mode = WAL');
app.pragma('synchronous = NORMAL');
app.exec('CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT NOT NULL, n INTEGER)');
const replica = await Replica.open({
  file, sqlite: { synchronous: 'NORMAL', busyTimeoutMs: 5000 }, nodeId: 'n1', clusterName: 'c', shards: 16, members: ['n1'], hlcSkewMsMax: 60000,
  limits: { ingestChangesMax: 20000, batchChangesMax: 2000, batchBytesMax: 512 * 1024 }, clock: new SystemClock(), log: silentLogger,
});
const { db, capture, stamper, clocks } = replica;
const ins = app.prepare('INSERT INTO t(id, v, n) VALUES (?, ?, ?)');
let id = 1;
const write = app.transaction((k: number) => { for (let i = 0; i < k; i++) ins.run(id++, 'burrow benchmark row payload 0123456789abcdef', i); });
const times: number[] = [];
for (let round = 0; round < 30; round++) {
  write(20000);
  const t0 = performance.now();
  const r = db.writeTx(() => stamper.stampPending());
  const ms = performance.now() - t0;
  if (round >= 2) times.push(ms / r.logRows * 1000);
  db.conn.exec('DELETE FROM __burrow_outbox');
}
times.sort((a, b) => a - b);
console.log(`stampPending: median ${times[Math.floor(times.length / 2)]!.toFixed(2)} µs/row, min ${times[0]!.toFixed(2)}`);

// phases
write(20000);
const tx = (f: () => void) => { db.conn.exec('BEGIN IMMEDIATE'); try { f(); } finally { db.conn.exec('ROLLBACK'); } };
const router = await ShardRouter.create(16);
const table = capture.tables()[0]!;
const T = (name: string, f: () => number) => { const t0 = performance.now(); const n = f(); console.log(`${name}: ${((performance.now() - t0) / n * 1000).toFixed(2)} µs/row`); };
tx(() => {
  let rows: any[] = [];
  T('log select k0..k7', () => { rows = db.conn.prepare('SELECT seq, tid, k0,k1,k2,k3,k4,k5,k6,k7 FROM __burrow_log ORDER BY seq LIMIT 20000').raw(true).all(); return rows.length; });
  T('log select k0', () => db.conn.prepare('SELECT seq, tid, k0 FROM __burrow_log ORDER BY seq LIMIT 20000').raw(true).all().length);

  const w = new ValueWriter(256);
  const keys = rows.map((r) => w.reset().writeAll([r[2]]).bytes());
  T('readRow', () => { for (const r of rows) table.readRow([r[2]]); return rows.length; });
  let h = 1n << 40n;
  T('clock upsert', () => { for (const r of rows) clocks.setIfNewer(table.tid, [r[2]], h++, 'n1', false); return rows.length; });
  T('shardOf', () => { for (const k of keys) router.shardOf('t', k); return keys.length; });
  T('keyWriter', () => { for (const r of rows) w.reset().writeAll([r[2]]).bytes(); return rows.length; });
  T('id strings+map', () => { const m = new Map(); for (const k of keys) { const id = `1:${k.toString('latin1')}`; m.delete(id); m.set(id, k); } return keys.length; });
  T('log delete', () => db.conn.prepare('DELETE FROM __burrow_log WHERE seq <= ?').run(rows.at(-1)[0]).changes);
});
