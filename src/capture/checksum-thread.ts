import { Worker } from 'node:worker_threads';
import type { TableChecksum } from './checksum.ts';
import type { TableSchema } from './schema.ts';

export interface ChecksumRequest {
  readonly dbFile: string;
  readonly busyTimeoutMs: number;
  readonly tables: readonly TableSchema[];
}

/** checksumTables in a worker thread (checksum-worker.ts), so the node's event loop keeps running. */
export function checksumInWorker(req: ChecksumRequest): Promise<TableChecksum[]> {
  const api = import.meta.resolve('tsx/esm/api');
  const entry = new URL('./checksum-worker.ts', import.meta.url).href;
  const w = new Worker(`import(${JSON.stringify(api)}).then((m) => { m.register(); return import(${JSON.stringify(entry)}); })`,
    { eval: true, workerData: req });
  return new Promise((resolve, reject) => {
    let settled = false;
    w.once('message', (m: { ok: true; tables: TableChecksum[] } | { ok: false; error: string }) => {
      settled = true;
      if (m.ok) resolve(m.tables);
      else reject(new Error(`checksum of ${req.dbFile} failed: ${m.error}`));
      void w.terminate();
    });
    w.once('error', (err) => {
      if (!settled) reject(err);
    });
    w.once('exit', (code) => {
      if (!settled) reject(new Error(`checksum worker exited with code ${code}`));
    });
  });
}
