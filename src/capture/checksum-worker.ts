/**
 * Worker thread: per-table digests of a replica over its own read-only connection (one read
 * transaction), off the node's event loop — a large replica takes seconds, and the loop carries
 * publishing, applying and the HTTP API meanwhile.
 */
import { parentPort, workerData } from 'node:worker_threads';
import BetterSqlite3 from 'better-sqlite3';
import { checksumTables } from './checksum.ts';
import type { ChecksumRequest } from './checksum-thread.ts';

async function run(req: ChecksumRequest): Promise<void> {
  const conn = new BetterSqlite3(req.dbFile, { readonly: true, timeout: req.busyTimeoutMs });
  try {
    conn.defaultSafeIntegers(true);
    conn.exec('BEGIN');
    const tables = await checksumTables(conn, req.tables);
    conn.exec('COMMIT');
    parentPort!.postMessage({ ok: true, tables });
  } finally {
    conn.close();
  }
}

run(workerData as ChecksumRequest).catch((err: unknown) => parentPort!.postMessage({ ok: false, error: err instanceof Error ? err.message : String(err) }));
