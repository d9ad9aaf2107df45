import { setImmediate as yieldToLoop } from 'node:timers/promises';
import { SchemaMismatch, type Applier, type MergeChange } from '../apply/applier.ts';
import { isInternalName, scanSchema, type TableSchema } from '../capture/schema.ts';
import { localObjects } from '../capture/schema-capture.ts';
import { SchemaStore, type SchemaEvent, type SchemaObject } from '../store/schema-store.ts';
import type { ApplierSchema } from '../apply/applier.ts';
import { decodeBatch, encodeBatch, type WireBatch, type WireTable } from '../codec/batch-codec.ts';
import { encodeValues, type SqlValue } from '../codec/value-codec.ts';
import type { GapTracker } from '../replication/gaps.ts';
import { openReadOnly, quoteIdent, type Connection, type Database } from '../sqlite/database.ts';
import { ExactSelect } from '../sqlite/exact.ts';
import { ClockStore } from '../store/clock-store.ts';
import type { MetaStore } from '../store/meta-store.ts';
import type { ReceivedStore } from '../store/received-store.ts';
import type { Quarantine } from '../store/quarantine.ts';
import type { SqliteOutbox } from '../capture/outbox.ts';
import { hlcFormat, hlcMs, hlcPack } from '../clock/hlc.ts';
import type { Logger } from '../util/log.ts';

/** The parts of a replica a merge writes through (node/replica.ts Replica has them all). */
export interface MergeTarget {
  readonly db: Database;
  readonly applier: Applier;
  readonly received: ReceivedStore;
  readonly meta: MetaStore;
  readonly gaps: GapTracker;
  readonly outbox: SqliteOutbox;
  readonly quarantine: Quarantine;
  /** Schema replication (null when off): the snapshot's replicated schema and stream position come along. */
  readonly schema?: ApplierSchema | null;
}

export interface MergeOptions {
  readonly nodeId: string;
  readonly cluster: string;
  readonly shards: number;
  readonly log: Logger;
  /** Changes per apply transaction (bounded: apps keep writing between them). */
  readonly chunkChanges?: number;
  readonly onProgress?: (p: MergeProgress) => void;
  /**
   * Versions older than this may meet replicas that have collected the tombstones they lose to
   * (now + stream age − history + skew); with the snapshot's own horizon it sets how far back the
   * snapshot is taken as the cluster's state (0: only the snapshot's horizon).
   */
  readonly staleBelow?: bigint;
  /** cluster.hlc_skew_ms_max: the snapshot judges only versions older than the time it was taken by this. */
  readonly skewMs?: number;
  /** When the snapshot was taken (its manifest); without it, its replica's HLC mark. */
  readonly takenAtMs?: number;
}

export interface MergeProgress {
  table: string;
  changes: number;
}

export interface MergeResult {
  /** Schema objects (tables, indexes, views, triggers) this replica lacked and got from the snapshot. */
  readonly created: string[];
  /** Schema objects that could not be created here, with SQLite's reason. */
  readonly schemaErrors: string[];
  readonly changes: number;
  readonly positions: number[];
  /** Rows and clocks older than the horizon that the snapshot said were deleted or older (forgotten here). */
  readonly forgotten: number;
  /** This node's unpublished changes older than the horizon, moved to __burrow_dead. */
  readonly outboxDropped: number;
  /** The horizon used (HLC; 0 = none). */
  readonly horizon: bigint;
}

/** A snapshot file that is not one of this cluster's (refused before anything is merged). */
export class NotASnapshotError extends Error {
  override name = 'NotASnapshotError';
}

/**
 * Restore by merge. A table this replica lacks is copied whole (rows and clocks as they are, one
 * transaction). For every other table, each row version, tombstone and hidden UNIQUE loser goes
 * through the LWW apply path (Applier.mergeChanges) in bounded transactions, so an application
 * may keep the database open and writing meanwhile, this node's own unpublished changes win or
 * lose like any change, and a merge cut short is simply redone (LWW is idempotent). Tables,
 * indexes, views and triggers the replica lacks are created first, exactly as the snapshot has
 * them. At the end, in one transaction: shard positions and per-origin batch numbers are raised
 * to the snapshot's (never lowered), and the node's own batch numbering continues above any of
 * its numbers the snapshot saw.
 */
export async function mergeSnapshot(t: MergeTarget, file: string, o: MergeOptions): Promise<MergeResult> {
  const snap = openReadOnly(file);
  // The objects the merge creates are the cluster's schema, not DDL of this node.
  if (t.schema) t.schema.capture.paused = true;
  try {
    checkIdentity(snap, o);
    const scan = scanSchema(snap);
    const tids = snap.prepare('SELECT tid, name FROM __burrow_tables ORDER BY tid').raw(true).all() as [bigint, string][];
    const copiedIndexes: string[] = [];
    const copied = copyNewTables(t, snap, file, scan.tables, tids, copiedIndexes);
    const { created, schemaErrors } = createMissingSchema(t.db, snap, o.log);
    created.unshift(...[...copied.keys()].map((n) => `table ${n}`), ...copiedIndexes);
    const horizon = mergeHorizon(snap, o);
    const { forgotten, outboxDropped } = forgetPastHorizon(t, snap, file, horizon, tids, copied, o.log);
    const chunk = o.chunkChanges ?? 2000;
    let pending: MergeChange[] = [];
    const flush = async () => {
      if (pending.length === 0) return;
      t.applier.mergeChanges(pending);
      changes += pending.length;
      pending = [];
      await yieldToLoop();
    };
    let changes = [...copied.values()].reduce((a, n) => a + n, 0);
    for (const [tid, name] of tids) {
      const schema = scan.tables.get(name);
      if (copied.has(name) || !schema || !hasTable(snap, ClockStore.tableName(Number(tid)))) continue;
      for (const c of tableChanges(snap, Number(tid), schema)) {
        pending.push(c);
        if (pending.length >= chunk) {
          await flush();
          o.onProgress?.({ table: name, changes });
        }
      }
      await flush();
      o.onProgress?.({ table: name, changes });
    }
    for (const c of waitingChanges(snap)) {
      pending.push(c);
      if (pending.length >= chunk) await flush();
    }
    await flush();
    const positions = finish(t, snap, o, created);
    return { created, schemaErrors, changes, positions, forgotten, outboxDropped, horizon };
  } finally {
    if (t.schema) t.schema.capture.paused = false;
    snap.close();
  }
}

/**
 * Schema replication: when the snapshot folded further in the schema stream, its replicated
 * schema, per-origin entry numbers and rename/drop history become this replica's, and the stream
 * is read on from its position. Local objects that now match the replicated schema, and those the
 * merge created, are seen (not this node's DDL); the others stay a difference capture publishes as
 * this node's own.
 */
function finishSchema(t: MergeTarget, snap: Connection, o: MergeOptions, created: readonly string[]): void {
  const schema = t.schema;
  if (!schema || !hasTable(snap, '__burrow_schema_state')) return;
  const seq = Number((snap.prepare('SELECT seq FROM __burrow_schema_state WHERE id = 1').pluck().get() as bigint | undefined) ?? 0n);
  const st = schema.store;
  const jumped = seq > st.position();
  if (jumped) {
    const objs = (snap.prepare('SELECT type, name, tbl_name AS tbl, sql, seq FROM __burrow_schema').all() as (SchemaObject & { seq: bigint })[]).map((o) => ({ ...o, seq: Number(o.seq) }));
    st.replaceReplicated(objs);
    for (const [origin, n] of snap.prepare('SELECT origin, n FROM __burrow_schema_from').raw(true).all() as [string, bigint][]) {
      st.setFolded(origin, Number(n));
      if (origin === o.nodeId) forgetStaleOwn(t, Number(n));
    }
    for (const ev of snap.prepare('SELECT seq, origin, n, kind, tbl, a, b FROM __burrow_schema_history WHERE seq > ? ORDER BY rowid').all(BigInt(st.position())) as { seq: bigint; origin: string; n: bigint; kind: SchemaEvent['kind']; tbl: string; a: string | null; b: string | null }[]) {
      st.addEvent({ ...ev, seq: Number(ev.seq), n: Number(ev.n) });
    }
    st.setPosition(seq);
  }
  const fromSnapshot = new Set(created.map((c) => { const i = c.indexOf(' '); return SchemaStore.key(c.slice(0, i), c.slice(i + 1)); }));
  // Local objects R defines otherwise (this replica had folded another history: chaos seed 505)
  // follow the snapshot's R now, as they would have had it folded that history.
  schema.applier.convergeToReplicated(fromSnapshot, jumped);
  const r = st.replicated();
  const seen = st.seen();
  // Objects the merge created are the snapshot's schema, not DDL of this node, even those its
  // replica had not folded yet (its own pending entries): they reach R through the stream, where
  // this node folds them like anyone's. Left unseen, capture would send them again as this node's
  // own entries, which could fold after the stream dropped or renamed them (seed 101).
  const local = localObjects(t.db.conn);
  for (const obj of local) {
    const k = SchemaStore.key(obj.type, obj.name);
    if (r.get(k)?.sql === obj.sql || fromSnapshot.has(k)) seen.set(k, obj);
  }
  // Gone here and from R (dropped by the history the snapshot folded): nothing for capture to send.
  const here = new Set(local.map((o) => SchemaStore.key(o.type, o.name)));
  for (const k of [...seen.keys()]) if (!here.has(k) && !r.has(k)) seen.delete(k);
  st.replaceSeen(seen.values());
}

/**
 * The snapshot folded `n` entries of this node — made before this replica's database was replaced
 * (a wiped node rejoining). Entries this replica queued and never published under those numbers
 * (DDL an application ran before the restore finished) would be taken everywhere for the old
 * ones and skipped as duplicates, and entries made after them would fold first (chaos seed 606:
 * a rename folded before the CREATE it was made on). They — and every unpublished entry after
 * them — are dropped instead and their objects left unseen, so capture sends the local schema as
 * it is now in a new entry numbered above `n`, at today's position; their tables' rows are
 * stamped again under it.
 */
function forgetStaleOwn(t: MergeTarget, n: number): void {
  const st = t.schema!.store;
  st.raiseOwnNumber(n);
  const unpublished = st.pendingOwn().filter((p) => !p.published);
  if (!unpublished.some((p) => p.n <= n)) return;
  const seen = st.seen();
  const tables = new Set<string>();
  // All of them: one made after a stale one may build on it, and must not go out before it.
  for (const p of unpublished) {
    st.removeOwn(p.n);
    for (const op of p.entry.ops) {
      seen.delete(SchemaStore.key(op.type, op.name));
      if (op.renamedFrom !== undefined) seen.delete(SchemaStore.key('table', op.renamedFrom));
      tables.add(op.tbl);
    }
  }
  st.replaceSeen(seen.values());
  for (const name of tables) t.applier.restamp(name);
}

/**
 * How far back the snapshot is the cluster's state: below the horizon its replica collected
 * tombstones to, or below the point the cluster may have forgotten deletes (staleBelow), but
 * never above the time it was taken less the skew bound (it cannot judge what came after it).
 */
function mergeHorizon(snap: Connection, o: MergeOptions): bigint {
  const meta = (k: string) => (snap.prepare('SELECT value FROM __burrow_meta WHERE key = ?').pluck().get(k) as bigint | undefined) ?? 0n;
  const want = [meta('history_horizon'), o.staleBelow ?? 0n].reduce((a, b) => (a > b ? a : b));
  if (want === 0n) return 0n;
  const cap = hlcPack(Math.max(0, (o.takenAtMs ?? hlcMs(meta('hlc'))) - (o.skewMs ?? 0)), 0);
  return want < cap ? want : cap;
}

/**
 * Before the merge, past the horizon (Applier.forgetOlderThanSnapshot): local rows and clocks
 * older than it that the snapshot has nothing at least as new for are forgotten, so the merge
 * leaves each such key as the snapshot has it; and this node's own unpublished changes that old
 * leave the outbox for __burrow_dead with the reason (never silently lost).
 */
function forgetPastHorizon(t: MergeTarget, snap: Connection, file: string, horizon: bigint, tids: readonly [bigint, string][],
  copied: ReadonlyMap<string, number>, log: Logger): { forgotten: number; outboxDropped: number } {
  if (horizon === 0n) return { forgotten: 0, outboxDropped: 0 };
  const reason = `older than the history horizon (${hlcFormat(horizon)}): the cluster may have forgotten the delete it loses to; `
    + 'not published (the node was cut off for longer than cluster.history_s − cluster.stream_age_max_s)';
  const outboxDropped = t.outbox.dropOlderThan(horizon, (b: WireBatch, i: number) => {
    const c = b.changes[i]!;
    t.quarantine.deadLetter({ shard: b.s, seq: null, origin: b.o, table: b.tables[c.t]!.n, hlc: c.h, reason,
      change: encodeBatch({ ...b, changes: [{ ...c, t: 0 }], tables: [b.tables[c.t]!] }) });
  });
  let forgotten = 0;
  const todo = tids.filter(([tid, name]) => !copied.has(name) && hasTable(snap, ClockStore.tableName(Number(tid))));
  if (todo.length > 0) {
    t.db.attach(file, attachedAs);
    try {
      const sqlOf = snap.prepare("SELECT sql FROM sqlite_schema WHERE type = 'table' AND name = ?").pluck();
      for (const [tid, name] of todo) {
        const fromClock = ClockStore.tableName(Number(tid));
        const n = t.applier.forgetOlderThanSnapshot({
          name, from: attachedAs, fromClock, below: horizon, fromClockDdl: (sqlOf.get(fromClock) as string).replace(fromClock, ClockStore.tableName(-1)),
        });
        if (n < 0) log.warn('restore past the history horizon: the table\'s key is declared differently here than in the snapshot; its old rows are merged by LWW only', { table: name });
        else forgotten += n;
      }
    } finally {
      t.db.detach(attachedAs);
    }
  }
  if (forgotten + outboxDropped > 0) log.warn('restore past the history horizon: versions older than it follow the snapshot', { horizon: hlcFormat(horizon), forgotten, outboxDropped });
  return { forgotten, outboxDropped };
}

function checkIdentity(snap: Connection, o: MergeOptions): void {
  let cluster: unknown;
  let shards: unknown;
  try {
    cluster = snap.prepare("SELECT value FROM __burrow_meta WHERE key = 'cluster'").pluck().get();
    shards = snap.prepare("SELECT value FROM __burrow_meta WHERE key = 'shards'").pluck().get();
  } catch (err) {
    throw new NotASnapshotError(`not a burrow snapshot (${(err as Error).message})`);
  }
  if (cluster !== o.cluster) throw new NotASnapshotError(`snapshot of cluster ${String(cluster)}, this node is in cluster ${o.cluster}`);
  if (shards !== BigInt(o.shards)) throw new NotASnapshotError(`snapshot made with ${String(shards)} shards, the cluster has ${o.shards}`);
}

const attachedAs = 'burrow_snapshot';

/**
 * Tables this replica does not have at all are created and filled with the snapshot's rows and
 * clocks as they are, one transaction each (Applier.copyNewTable): no application can have
 * written a table that did not exist, so nothing is there to merge with. Each table's indexes
 * come with it. Returns rows copied per table; tables the fast path cannot take are left to the
 * row-by-row merge.
 */
function copyNewTables(t: MergeTarget, snap: Connection, file: string, tables: ReadonlyMap<string, TableSchema>, tids: readonly [bigint, string][],
  createdIndexes: string[]): Map<string, number> {
  const out = new Map<string, number>();
  const sqlOf = snap.prepare("SELECT sql FROM sqlite_schema WHERE type = 'table' AND name = ?").pluck();
  const indexes = snap.prepare("SELECT name, sql FROM sqlite_schema WHERE type = 'index' AND tbl_name = ? AND sql IS NOT NULL ORDER BY rowid");
  const exists = t.db.conn.prepare("SELECT 1 FROM sqlite_schema WHERE name = ? COLLATE NOCASE");
  const todo = tids.filter(([tid, name]) => tables.has(name) && exists.get(name) === undefined && sqlOf.get(ClockStore.tableName(Number(tid))) !== undefined);
  if (todo.length === 0) return out;
  t.db.attach(file, attachedAs);
  try {
    for (const [tid, name] of todo) {
      const schema = tables.get(name)!;
      const fromClock = ClockStore.tableName(Number(tid));
      const same = (l: TableSchema) => JSON.stringify([l.columns, l.keyColumns, l.keyDecls, l.rowidKeyed, l.withoutRowid])
        === JSON.stringify([schema.columns, schema.keyColumns, schema.keyDecls, schema.rowidKeyed, schema.withoutRowid]);
      const ix = indexes.all(name) as { name: string; sql: string }[];
      try {
        const rows = t.applier.copyNewTable({
          name, ddl: sqlOf.get(name) as string, after: ix.map((i) => i.sql), from: attachedAs, fromClock,
          fromClockDdl: (sqlOf.get(fromClock) as string).replace(fromClock, ClockStore.tableName(-1)), sameSchema: (l) => same(l.schema),
        });
        if (rows !== null) {
          out.set(name, rows);
          createdIndexes.push(...ix.map((i) => `index ${i.name}`));
        }
      } catch (err) {
        // Not the snapshot's table here, or a snapshot SQLite cannot attach (an older format): row by row.
        if (err instanceof SchemaMismatch) continue;
        if (String((err as { code?: unknown }).code ?? '').startsWith('SQLITE_CORRUPT')) break;
        throw err;
      }
    }
  } finally {
    t.db.detach(attachedAs);
  }
  return out;
}

function hasTable(conn: Connection, name: string): boolean {
  return conn.prepare("SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name = ?").get(name) !== undefined;
}

/** Create the snapshot's user schema objects this replica does not have (tables first, then indexes, views, triggers). */
function createMissingSchema(db: Database, snap: Connection, log: Logger): { created: string[]; schemaErrors: string[] } {
  const shadowTables = new Set((snap.prepare('PRAGMA main.table_list').all() as { name: string; type: string }[])
    .filter((r) => r.type === 'shadow').map((r) => r.name));
  const objects = snap.prepare(`SELECT type, name, tbl_name, sql FROM sqlite_schema WHERE sql IS NOT NULL
    ORDER BY CASE type WHEN 'table' THEN 0 WHEN 'index' THEN 1 WHEN 'view' THEN 2 ELSE 3 END, rowid`).all() as
    { type: string; name: string; tbl_name: string; sql: string }[];
  const created: string[] = [];
  const schemaErrors: string[] = [];
  const exists = db.conn.prepare('SELECT 1 FROM sqlite_schema WHERE type = ? AND name = ? COLLATE NOCASE');
  for (const obj of objects) {
    if (isInternalName(obj.name) || isInternalName(obj.tbl_name) || shadowTables.has(obj.name)) continue;
    if (exists.get(obj.type, obj.name) !== undefined) continue;
    try {
      db.writeTx(() => db.exec(obj.sql));
      created.push(`${obj.type} ${obj.name}`);
    } catch (err) {
      const reason = `${obj.type} ${obj.name}: ${(err as Error).message}`;
      schemaErrors.push(reason);
      log.warn('a schema object of the snapshot could not be created here', { object: obj.name, error: (err as Error).message });
    }
  }
  return { created, schemaErrors };
}

/** Every clock entry of one table as a change: visible rows with their image, tombstones, hidden UNIQUE losers. */
function* tableChanges(snap: Connection, tid: number, schema: TableSchema): Generator<MergeChange> {
  const clock = ClockStore.tableName(tid);
  const n = schema.keyColumns.length;
  const wt: WireTable = { n: schema.name, k: schema.keyColumns, c: schema.columns };
  const keyAt = schema.keyColumns.map((k) => schema.columns.indexOf(k));
  const on = schema.keyColumns.map((k, i) => `c.k${i} = r.${quoteIdent(k)}`).join(' AND ');
  const live = new ExactSelect(snap, [...schema.columns.map((c) => `r.${quoteIdent(c)}`), 'c.hlc', 'c.node'],
    `FROM ${quoteIdent(schema.name)} r JOIN ${clock} c ON ${on} WHERE c.deleted = 0 AND c.shadow IS NULL`);
  const w = schema.columns.length;
  for (const row of live.iterateExact()) {
    const image = row.slice(0, w);
    yield { origin: row[w + 1] as string, wt, c: { t: 0, h: row[w] as bigint, d: 0, k: encodeValues(keyAt.map((i) => image[i]!)), r: encodeValues(image) } };
  }
  const ks = Array.from({ length: n }, (_, i) => `k${i}`);
  const rest = new ExactSelect(snap, [...ks, 'hlc', 'node', 'deleted', 'shadow', 'shadow_cols'],
    `FROM ${clock} WHERE deleted = 1 OR shadow IS NOT NULL`);
  const shadowTables = new Map<string, WireTable>();
  for (const row of rest.iterateExact()) {
    const k = encodeValues(row.slice(0, n) as SqlValue[]);
    const [h, origin, deleted, shadow, cols] = row.slice(n) as [bigint, string, bigint, Buffer | null, string | null];
    if (deleted === 1n || shadow === null || cols === null) {
      yield { origin, wt, c: { t: 0, h, d: 1, k } };
      continue;
    }
    let swt = shadowTables.get(cols);
    if (!swt) shadowTables.set(cols, swt = { n: schema.name, k: schema.keyColumns, c: JSON.parse(cols) as string[] });
    yield { origin, wt: swt, c: { t: 0, h, d: 0, k, r: shadow } };
  }
}

/** Changes the snapshot's replica was holding until its schema had their table or columns. */
function* waitingChanges(snap: Connection): Generator<MergeChange> {
  for (const blob of snap.prepare('SELECT change FROM __burrow_waiting ORDER BY id').pluck().iterate() as IterableIterator<Buffer>) {
    const b = decodeBatch(blob);
    for (const c of b.changes) yield { origin: b.o, wt: b.tables[c.t]!, c: { ...c, t: 0 } };
  }
}

/** Positions and batch numbers raised to the snapshot's, in one transaction; then the in-memory tracker follows. */
function finish(t: MergeTarget, snap: Connection, o: MergeOptions, created: readonly string[]): number[] {
  const positions = Array.from({ length: o.shards }, () => 0);
  for (const [s, q] of snap.prepare('SELECT shard, stream_seq FROM __burrow_applied').raw(true).all() as [bigint, bigint][]) {
    if (Number(s) < o.shards) positions[Number(s)] = Number(q);
  }
  const received = snap.prepare('SELECT origin, contiguous FROM __burrow_received').raw(true).all() as [string, bigint][];
  t.db.writeTx(() => {
    finishSchema(t, snap, o, created);
    t.received.savePositions(new Map(positions.map((q, s) => [s, q] as [number, number]).filter(([, q]) => q > 0)));
    for (const [origin, c] of received) {
      t.received.raiseContiguous(origin, Number(c));
      // Our own numbers the snapshot saw: new batches are numbered above them (a wiped node rejoining).
      if (origin === o.nodeId && Number(c) > t.meta.lastBatchNumber()) t.meta.saveLastBatchNumber(Number(c));
    }
  });
  for (const [origin, c] of received) t.gaps.raise(origin, Number(c));
  return positions;
}
