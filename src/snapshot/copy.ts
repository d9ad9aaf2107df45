import { Worker } from 'node:worker_threads';
import { createSHA256 } from 'hash-wasm';
import { createReadStream } from 'node:fs';

export interface CopyRequest {
  readonly dbFile: string;
  readonly outFile: string;
  readonly shards: number;
  readonly busyTimeoutMs: number;
}

/** What the copy holds (the manifest is built from it). */
export interface CopyFacts {
  readonly bytes: number;
  readonly sha256: string;
  readonly positions: number[];
  readonly received: Record<string, number>;
  readonly hlc: string;
  readonly tables: { name: string; rows: number }[];
}

/**
 * Run copy-worker.ts in a worker thread. The worker's entry is a one-line loader: worker threads
 * do not inherit tsx's hooks, so it registers them before importing the TypeScript file.
 */
export function copySnapshot(req: CopyRequest): Promise<CopyFacts> {
  const api = import.meta.resolve('tsx/esm/api');
  const entry = new URL('./copy-worker.ts', import.meta.url).href;
  const w = new Worker(`import(${JSON.stringify(api)}).then((m) => { m.register(); return import(${JSON.stringify(entry)}); })`,
    { eval: true, workerData: req });
  return new Promise((resolve, reject) => {
    let settled = false;
    w.once('message', (m: { ok: true; facts: CopyFacts } | { ok: false; error: string }) => {
      settled = true;
      if (m.ok) resolve(m.facts);
      else reject(new Error(`snapshot copy of ${req.dbFile} failed: ${m.error}`));
      void w.terminate();
    });
    w.once('error', (err) => {
      if (!settled) reject(err);
      settled = true;
    });
    w.once('exit', (code) => {
      if (!settled) reject(new Error(`snapshot copy worker exited with code ${code}`));
      settled = true;
    });
  });
}

/** SHA-256 (hex) of a file, streamed. */
export async function sha256OfFile(file: string): Promise<string> {
  const h = await createSHA256();
  h.init();
  for await (const chunk of createReadStream(file, { highWaterMark: 4 * 1024 * 1024 })) h.update(chunk as Buffer);
  return h.digest('hex');
}
