/**
 * Snapshot and restore figures for a replica of a given size: the consistent copy (worker thread,
 * VACUUM INTO + compaction + SHA-256), a plain file copy of the snapshot for comparison, and the
 * restore by merge into an empty replica (rows/s, MB/s, ratio to the plain copy). In-process, real
 * SQLite files, no NATS (object-store transfer is measured by `npm run bench`'s join figure).
 *
 *   npx tsx bench/restore.ts [--mb 1024] [--row-bytes 1000] [--json FILE]
 */
import { copyFileSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import BetterSqlite3 from 'better-sqlite3';
import { SystemClock } from '../src/clock/clock.ts';
import { Replica } from '../src/node/replica.ts';
import { copySnapshot } from '../src/snapshot/copy.ts';
import { mergeSnapshot } from '../src/snapshot/merge.ts';
import { silentLogger } from '../src/util/log.ts';

const { values } = parseArgs({ options: { mb: { type: 'string', default: '1024' }, 'row-bytes': { type: 'string', default: '1000' }, json: { type: 'string' } } });
const targetBytes = Number(values.mb) * 1024 * 1024;
const rowBytes = Number(values['row-bytes']);
const dir = mkdtempSync(path.join(process.env.TMPDIR ?? os.tmpdir(), 'burrow-restore-bench-'));

async function open(id: string): Promise<Replica> {
  return Replica.open({
    file: path.join(dir, `${id}.db`), sqlite: { synchronous: 'NORMAL', busyTimeoutMs: 5000 }, nodeId: id, clusterName: 'bench', shards: 16,
    members: ['n1', 'n2'], hlcSkewMsMax: 60_000, limits: { ingestChangesMax: 20_000, batchChangesMax: 2000, batchBytesMax: 512 * 1024 },
    clock: new SystemClock(), log: silentLogger,
  });
}

const mb = (b: number) => b / 1024 / 1024;

try {
  const src = await open('n1');
  const app = new BetterSqlite3(path.join(dir, 'n1.db'));
  app.exec('CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB NOT NULL, n INTEGER)');
  const ins = app.prepare('INSERT INTO t VALUES (?, randomblob(?), ?)');
  let rows = 0;
  const t0 = performance.now();
  while (statSync(path.join(dir, 'n1.db')).size + statSync(path.join(dir, 'n1.db-wal')).size < targetBytes * 1.05 || rows === 0) {
    app.transaction(() => { for (let i = 0; i < 20_000; i++) ins.run(++rows, rowBytes, rows); })();
    while (src.applier.stampLocal().logRows > 0) { /* stamp */ }
    src.db.conn.exec('DELETE FROM __burrow_outbox');
  }
  app.pragma('wal_checkpoint(TRUNCATE)');
  const fillS = (performance.now() - t0) / 1000;
  const snapFile = path.join(dir, 'snap.db');
  let t = performance.now();
  const facts = await copySnapshot({ dbFile: path.join(dir, 'n1.db'), outFile: snapFile, shards: 16, busyTimeoutMs: 5000 });
  const snapshotS = (performance.now() - t) / 1000;
  t = performance.now();
  copyFileSync(snapFile, path.join(dir, 'plain-copy.db'));
  const plainS = (performance.now() - t) / 1000;
  rmSync(path.join(dir, 'plain-copy.db'));
  const dst = await open('n2');
  t = performance.now();
  const r = await mergeSnapshot(dst, snapFile, { nodeId: 'n2', cluster: 'bench', shards: 16, log: silentLogger });
  const mergeS = (performance.now() - t) / 1000;
  const restoredRows = Number(dst.db.conn.prepare('SELECT count(*) FROM t').pluck().get() as bigint);
  if (restoredRows !== rows) throw new Error(`restored ${restoredRows} rows of ${rows}`);
  const result = {
    rows, rowBytes, snapshotBytes: facts.bytes, fillS,
    snapshot: { seconds: snapshotS, mbPerS: mb(facts.bytes) / snapshotS },
    plainCopy: { seconds: plainS, mbPerS: mb(facts.bytes) / plainS },
    restoreByMerge: { seconds: mergeS, rowsPerS: rows / mergeS, mbPerS: mb(facts.bytes) / mergeS, changes: r.changes },
    restoreVsPlainCopy: plainS / mergeS,
  };
  const f = (n: number) => n.toFixed(1).padStart(10);
  process.stdout.write(`replica: ${rows} rows of ${rowBytes} B, snapshot ${mb(facts.bytes).toFixed(0)} MB (filled in ${fillS.toFixed(0)} s)\n`
    + `snapshot (copy worker)   ${f(snapshotS)} s ${f(result.snapshot.mbPerS)} MB/s\n`
    + `plain file copy          ${f(plainS)} s ${f(result.plainCopy.mbPerS)} MB/s\n`
    + `restore by merge         ${f(mergeS)} s ${f(result.restoreByMerge.mbPerS)} MB/s ${f(result.restoreByMerge.rowsPerS)} rows/s\n`
    + `restore / plain copy     ${(result.restoreVsPlainCopy * 100).toFixed(1)} %\n`);
  if (values.json) writeFileSync(values.json, JSON.stringify(result, null, 2));
  app.close();
  src.close();
  dst.close();
} finally {
  rmSync(dir, { recursive: true, force: true });
}
