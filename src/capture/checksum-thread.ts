import { runTsWorker } from '../util/ts-worker.ts';
import type { TableChecksum } from './checksum.ts';
import type { TableSchema } from './schema.ts';

export interface ChecksumRequest {
  readonly dbFile: string;
  readonly busyTimeoutMs: number;
  readonly tables: readonly TableSchema[];
}

/** checksumTables in a worker thread (checksum-worker.ts), so the node's event loop keeps running. */
export async function checksumInWorker(req: ChecksumRequest): Promise<TableChecksum[]> {
  return (await runTsWorker<{ tables: TableChecksum[] }>(new URL('./checksum-worker.ts', import.meta.url), req, `checksum of ${req.dbFile}`)).tables;
}
