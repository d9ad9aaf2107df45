import { runTsWorker } from '../util/ts-worker.ts';
import { createSHA256 } from 'hash-wasm';
import { createReadStream } from 'node:fs';

export interface CopyRequest {
  readonly dbFile: string;
  readonly outFile: string;
  readonly shards: number;
  readonly busyTimeoutMs: number;
  /**
   * Refuse to copy while the replica has schema changes the schema stream has not ordered yet
   * (its own entries not folded back, or DDL capture has not seen): a replica restored from such a
   * copy would hold objects outside the cluster's schema (the node sets it; in-process tests
   * without schema replication do not).
   */
  readonly orderedSchema?: boolean;
}

/** The message (part) a copy refused for unordered schema changes carries: the taker tries again later. */
export const schemaNotOrdered = 'has schema changes the schema stream has not ordered yet';

/** What the copy holds (the manifest is built from it). */
export interface CopyFacts {
  readonly bytes: number;
  readonly sha256: string;
  readonly positions: number[];
  readonly received: Record<string, number>;
  readonly hlc: string;
  readonly tables: { name: string; rows: number }[];
}

/** Run copy-worker.ts in a worker thread (off the node's event loop). */
export async function copySnapshot(req: CopyRequest): Promise<CopyFacts> {
  return (await runTsWorker<{ facts: CopyFacts }>(new URL('./copy-worker.ts', import.meta.url), req, `snapshot copy of ${req.dbFile}`)).facts;
}

/** SHA-256 (hex) of a file, streamed. */
export async function sha256OfFile(file: string): Promise<string> {
  const h = await createSHA256();
  h.init();
  for await (const chunk of createReadStream(file, { highWaterMark: 4 * 1024 * 1024 })) h.update(chunk as Buffer);
  return h.digest('hex');
}
