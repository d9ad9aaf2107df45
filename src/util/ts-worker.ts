import { Worker } from 'node:worker_threads';

/**
 * Run a TypeScript file in a worker thread and settle with the one message it posts
 * (`{ ok: true, … }` or `{ ok: false, error }`). The entry is a one-line loader: worker threads do
 * not inherit tsx's hooks, so it registers them before importing the file.
 */
export function runTsWorker<T>(entry: URL, data: unknown, what: string): Promise<T> {
  const api = import.meta.resolve('tsx/esm/api');
  const w = new Worker(`import(${JSON.stringify(api)}).then((m) => { m.register(); return import(${JSON.stringify(entry.href)}); })`,
    { eval: true, workerData: data });
  return new Promise((resolve, reject) => {
    let settled = false;
    w.once('message', (m: ({ ok: true } & T) | { ok: false; error: string }) => {
      settled = true;
      if (m.ok) resolve(m as T);
      else reject(new Error(`${what} failed: ${m.error}`));
      void w.terminate();
    });
    w.once('error', (err) => {
      if (!settled) reject(err);
      settled = true;
    });
    w.once('exit', (code) => {
      if (!settled) reject(new Error(`${what}: worker exited with code ${code}`));
      settled = true;
    });
  });
}
