/**
 * Worker thread: writes a consistent copy of a replica (VACUUM INTO: one read transaction, so
 * rows, clocks, tombstones, positions and batch numbers belong together), drops what only the
 * source node needs (its change log, outbox, sent log, dead letters, conflicts), compacts it and
 * hashes it. Off the node's event loop: a large replica takes seconds.
 */
import { rmSync, statSync } from 'node:fs';
import { parentPort, workerData } from 'node:worker_threads';
import BetterSqlite3 from 'better-sqlite3';
import { sha256OfFile, schemaNotOrdered, type CopyFacts, type CopyRequest } from './copy.ts';
import { localObjects } from '../capture/schema-capture.ts';

const privateTables = ['__burrow_log', '__burrow_outbox', '__burrow_sent', '__burrow_dead', '__burrow_conflicts', '__burrow_schema_out', '__burrow_schema_conflicts'];

function copy(req: CopyRequest): Omit<CopyFacts, 'sha256' | 'bytes'> {
  const src = new BetterSqlite3(req.dbFile, { readonly: true, timeout: req.busyTimeoutMs });
  try {
    src.prepare('VACUUM INTO ?').run(req.outFile);
  } finally {
    src.close();
  }
  const out = new BetterSqlite3(req.outFile);
  try {
    out.defaultSafeIntegers(true);
    out.pragma('journal_mode = DELETE');
    if (req.orderedSchema) checkSchemaOrdered(out);
    for (const t of privateTables) out.exec(`DELETE FROM ${t}`);
    // The capture triggers are the source's (the restoring node installs its own); they name
    // main.* objects, which SQLite refuses in a database that is ATTACHed for a restore.
    for (const name of out.prepare("SELECT name FROM sqlite_schema WHERE type = 'trigger' AND name LIKE '\\_\\_burrow%' ESCAPE '\\'").pluck().all() as string[]) {
      out.exec(`DROP TRIGGER "${name.replaceAll('"', '""')}"`);
    }
    const positions = Array.from({ length: req.shards }, () => 0);
    for (const [s, q] of out.prepare('SELECT shard, stream_seq FROM __burrow_applied').raw(true).all() as [bigint, bigint][]) {
      if (Number(s) < req.shards) positions[Number(s)] = Number(q);
    }
    const received: Record<string, number> = {};
    for (const [o, c] of out.prepare('SELECT origin, contiguous FROM __burrow_received').raw(true).all() as [string, bigint][]) received[o] = Number(c);
    const hlc = String((out.prepare("SELECT value FROM __burrow_meta WHERE key = 'hlc'").pluck().get() as bigint | undefined) ?? 0n);
    const tables: { name: string; rows: number }[] = [];
    for (const name of out.prepare('SELECT name FROM __burrow_tables ORDER BY name').pluck().all() as string[]) {
      const exists = out.prepare("SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name = ?").get(name);
      if (exists) tables.push({ name, rows: Number(out.prepare(`SELECT count(*) FROM "${name.replaceAll('"', '""')}"`).pluck().get() as bigint) });
    }
    // Compact only when dropping the source's private rows freed much (VACUUM rewrites the whole file).
    const free = Number(out.pragma('freelist_count', { simple: true }) as bigint);
    const pages = Number(out.pragma('page_count', { simple: true }) as bigint);
    if (free > pages / 10) out.exec('VACUUM');
    return { positions, received, hlc, tables };
  } finally {
    out.close();
  }
}

/**
 * The copy's schema is all the cluster's: no own entry waiting to come back through the schema
 * stream, no DDL the node's capture has not seen (chaos seed 202's stuck schema stream; simulation
 * seed 32: a node restored from such a copy wrote columns the cluster did not have yet).
 */
function checkSchemaOrdered(db: BetterSqlite3.Database): void {
  const pending = Number(db.prepare('SELECT count(*) FROM __burrow_schema_out').pluck().get() as bigint);
  const seen = new Set((db.prepare('SELECT type, name, sql FROM __burrow_schema_seen').raw(true).all() as string[][]).map((r) => r.join('\u0000')));
  const unseen = localObjects(db).filter((o) => !seen.has([o.type, o.name, o.sql].join('\u0000'))).length;
  if (pending > 0 || unseen > 0) {
    throw new Error(`the replica ${schemaNotOrdered} (${pending} own schema entr${pending === 1 ? 'y' : 'ies'} not folded back, ${unseen} object(s) not captured yet); try again shortly`);
  }
}

const req = workerData as CopyRequest;
try {
  const facts = copy(req);
  const sha256 = await sha256OfFile(req.outFile);
  parentPort!.postMessage({ ok: true, facts: { ...facts, sha256, bytes: statSync(req.outFile).size } });
} catch (err) {
  rmSync(req.outFile, { force: true }); // a refused or failed copy leaves nothing behind
  parentPort!.postMessage({ ok: false, error: (err as Error).message ?? String(err) });
}
