import BetterSqlite3 from 'better-sqlite3';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { SimulatedClock } from '../../src/clock/clock.ts';
import type { MessageOutcome } from '../../src/apply/applier.ts';
import { Replica } from '../../src/node/replica.ts';
import { silentLogger } from '../../src/util/log.ts';

/** A published batch as the transport carries it. */
export interface Sent {
  readonly from: string;
  readonly shard: number;
  readonly data: Buffer;
}

/**
 * What a node would publish now: its pending local changes stamped (the whole change log), then
 * every outbox batch per shard, taken out of the outbox (into the sent log) as a publish ack would.
 */
export function takeOutbox(r: Replica, shards: number): { shard: number; data: Buffer }[] {
  while (r.applier.stampLocal().logRows > 0) { /* drain the change log */ }
  const out: { shard: number; data: Buffer }[] = [];
  for (let shard = 0; shard < shards; shard++) {
    const rows = r.outbox.pending(shard, 10_000, new Set());
    for (const row of rows) out.push({ shard, data: Buffer.from(row.payload) });
    r.outbox.remove(rows.map((x) => x.id));
  }
  return out;
}

/**
 * In-process replicas for convergence tests: each a real SQLite file with the real parts (Replica),
 * an outside "app" connection for user writes, and a simulated clock. No NATS: `publish()` takes
 * stamped batches from an outbox, `deliver()` applies them where the test says, in its order.
 */
export class Replicas {
  readonly dir = mkdtempSync(path.join(os.tmpdir(), 'burrow-replicas-'));
  readonly nodes = new Map<string, Replica>();
  readonly apps = new Map<string, BetterSqlite3.Database>();
  readonly clocks = new Map<string, SimulatedClock>();
  private seq = 0;

  /** The schema stream: every node's entries in one order (schema replication on: `withSchema`). */
  readonly schemaLog: Buffer[] = [];

  constructor(readonly ids: readonly string[], readonly startMs = 1_800_000_000_000, readonly withSchema = false) {}

  file(id: string): string {
    return path.join(this.dir, `${id}.db`);
  }

  async open(id: string, skewMs = 0): Promise<Replica> {
    const clock = this.clocks.get(id) ?? new SimulatedClock(this.startMs);
    this.skews.set(id, skewMs);
    clock.set(this.startMs + this.elapsedMs + skewMs);
    this.clocks.set(id, clock);
    const r = await Replica.open({
      file: this.file(id), sqlite: { synchronous: 'NORMAL', busyTimeoutMs: 1000 }, nodeId: id, clusterName: 't', shards: 4,
      members: this.ids, hlcSkewMsMax: 60_000, limits: { ingestChangesMax: 1000, batchChangesMax: 100, batchBytesMax: 64 * 1024 },
      clock, log: silentLogger, replicateSchema: this.withSchema,
    });
    this.nodes.set(id, r);
    return r;
  }

  private readonly skews = new Map<string, number>();
  private elapsedMs = 0;

  static async start(ids: readonly string[], opts: { schema?: boolean } = {}): Promise<Replicas> {
    const rs = new Replicas(ids, undefined, opts.schema ?? false);
    for (const id of ids) await rs.open(id);
    return rs;
  }

  node(id: string): Replica {
    const r = this.nodes.get(id);
    if (!r) throw new Error(`replica ${id} is closed`);
    return r;
  }

  /** The outside application connection of a node (not burrow's writer). */
  app(id: string): BetterSqlite3.Database {
    let a = this.apps.get(id);
    if (!a) {
      a = new BetterSqlite3(this.file(id));
      a.defaultSafeIntegers(true);
      a.pragma('busy_timeout = 1000');
      this.apps.set(id, a);
    }
    return a;
  }

  /** Run SQL on every node's app connection. */
  everywhere(sql: string): void {
    for (const id of this.ids) this.app(id).exec(sql);
  }

  /** Wall time passes on every node (each keeps its skew). */
  advance(ms: number): void {
    this.elapsedMs += ms;
    for (const [id, c] of this.clocks) c.set(this.startMs + this.elapsedMs + (this.skews.get(id) ?? 0));
  }

  /** Stamp a node's local changes and take its outbox as sent batches. */
  publish(id: string): Sent[] {
    return takeOutbox(this.node(id), 4).map((b) => ({ from: id, ...b }));
  }

  deliver(to: string, batches: readonly Sent[]): MessageOutcome[] {
    return this.node(to).applier.applyMessages(batches.map((b) => ({ shard: b.shard, seq: ++this.seq, data: b.data, origin: b.from })));
  }

  /** A node's schema entries (its DDL, captured by a stamp pass) appended to the schema stream, in order. */
  publishSchema(id: string): number {
    const r = this.node(id);
    assert.ok(r.schema, 'schema replication is off');
    r.applier.stampLocal();
    let n = 0;
    for (let next = r.db.writeTx(() => r.schema!.store.nextToPublish()); next; next = r.db.writeTx(() => r.schema!.store.nextToPublish())) {
      this.schemaLog.push(Buffer.from(next.payload));
      r.db.writeTx(() => r.schema!.store.markPublished(next!.n));
      n++;
    }
    return n;
  }

  /** A node folds the schema stream from its position on. */
  deliverSchema(to: string): number {
    const r = this.node(to);
    const from = r.schema!.store.position();
    const entries = this.schemaLog.slice(from).map((data, i) => ({ seq: from + i + 1, data }));
    if (entries.length > 0) r.applier.applySchema(entries);
    return entries.length;
  }

  /** Publish from every node and deliver every batch to every other node, until nothing moves. */
  sync(): void {
    for (let round = 0; round < 10; round++) {
      let schemaMoved = 0;
      if (this.withSchema) {
        for (const id of this.ids.filter((x) => this.nodes.has(x))) schemaMoved += this.publishSchema(id);
        for (const id of this.nodes.keys()) schemaMoved += this.deliverSchema(id);
      }
      const sent = this.ids.filter((id) => this.nodes.has(id)).flatMap((id) => this.publish(id));
      if (this.withSchema) for (const id of this.nodes.keys()) this.node(id).applier.retryWaiting(true);
      if (sent.length === 0 && schemaMoved === 0) return;
      for (const to of this.nodes.keys()) this.deliver(to, sent.filter((s) => s.from !== to));
    }
    throw new Error('replicas did not settle in 10 rounds');
  }

  /** Every row of a table with exact bytes and storage classes, in a stable order. */
  dump(id: string, table: string): string[] {
    const cols = (this.app(id).prepare(`PRAGMA table_info("${table}")`).all() as { name: string }[]).map((c) => `"${c.name}"`);
    const exprs = cols.map((c) => `typeof(${c}) || ':' || coalesce(hex(CAST(${c} AS BLOB)), '')`).join(` || '|' || `);
    return (this.app(id).prepare(`SELECT ${exprs} AS r FROM "${table}"`).pluck().all() as string[]).sort();
  }

  async close(id: string): Promise<void> {
    this.apps.get(id)?.close();
    this.apps.delete(id);
    this.nodes.get(id)?.close();
    this.nodes.delete(id);
  }

  async closeAll(): Promise<void> {
    for (const id of [...this.nodes.keys()]) await this.close(id);
    rmSync(this.dir, { recursive: true, force: true });
  }
}
