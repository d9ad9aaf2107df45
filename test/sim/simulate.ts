import BetterSqlite3 from 'better-sqlite3';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { SimulatedClock } from '../../src/clock/clock.ts';
import { Replica } from '../../src/node/replica.ts';
import { takeOutbox } from '../helpers/replicas.ts';
import { copySnapshot, schemaNotOrdered } from '../../src/snapshot/copy.ts';
import { mergeSnapshot } from '../../src/snapshot/merge.ts';
import { createLogger, silentLogger } from '../../src/util/log.ts';
import type { Features } from './features.ts';
import { dumpTable, Oracle } from './oracle.ts';
import { Rng } from './rng.ts';
import { isDdlTable, SimDdl, userObjects } from './ddl.ts';
import { acceptableWriteError, buildWorkload, randomStatement, schemaAt, type Workload } from './workload.ts';

/**
 * One seeded run: 3–5 in-process nodes, each a real SQLite file with the real capture, stamper and
 * applier (Replica, as the node composes it), an outside application connection per node, and an
 * in-memory transport that delays, reorders, duplicates and drops (then repairs) batches. Nodes
 * restart with clock skew and go down while their application keeps writing. After quiescence
 * every replica must hold the same bytes, the same checksums, and what the oracle computes.
 * With feature `ddl`, schema replication is on: one node at a time migrates tables of their own
 * (ddl.ts) while every node writes them, entries travel through an in-memory schema stream folded
 * with lag, and every node must end with the same schema objects and rows in those tables.
 * Everything draws from one Rng and simulated clocks, so a seed replays exactly.
 */

export interface SimOptions {
  readonly seed: number;
  readonly features: Features;
  /** Random actions before the settle phase. */
  readonly actions?: number;
}

export interface SimResult {
  readonly seed: number;
  readonly nodes: number;
  readonly actions: number;
  readonly writes: number;
  readonly writesRefused: number;
  readonly batches: number;
  readonly deliveries: number;
  readonly dropped: number;
  readonly duplicated: number;
  readonly restarts: number;
  readonly rows: number;
  readonly shadowed: number;
  readonly ddlApplied: number;
  readonly ddlWrites: number;
  readonly schemaEntries: number;
  readonly wipes: number;
  readonly restores: number;
}

export class SimFailure extends Error {
  override name = 'SimFailure';
  constructor(readonly seed: number, message: string, readonly trace: readonly string[]) {
    super(`seed ${seed}: ${message}`);
  }
}

interface Msg {
  readonly shard: number;
  readonly seq: number;
  readonly data: Buffer;
  readonly origin: string;
}

interface SimNode {
  readonly id: string;
  readonly file: string;
  app: BetterSqlite3.Database;
  readonly clock: SimulatedClock;
  replica: Replica | null;
  skewMs: number;
  stepsDone: number;
  inbox: Msg[];
  /** Wiped (feature `wipe`): empty until it restores from a peer's snapshot; its application writes only DDL tables meanwhile. */
  restoring: boolean;
  /** Since it started, its own schema numbers were checked against the stream read to its end (as the node's schema publisher does). */
  numbered: boolean;
}

const shards = 4;
const startMs = 1_800_000_000_000;
const traceMax = Number(process.env.SIM_TRACE_MAX ?? 400);

export async function simulate(o: SimOptions): Promise<SimResult> {
  const sim = new Simulation(o);
  try {
    return await sim.run();
  } finally {
    await sim.close();
  }
}

class Simulation {
  private readonly rng: Rng;
  private readonly f: Features;
  private readonly w: Workload;
  private readonly dir = mkdtempSync(path.join(os.tmpdir(), 'burrow-sim-'));
  private readonly nodes: SimNode[] = [];
  private readonly streamSeq = new Array<number>(shards).fill(0);
  private readonly published: Buffer[] = [];
  private readonly lost: { to: SimNode; m: Msg }[] = [];
  private readonly trace: string[] = [];
  private elapsedMs = 0;
  /** Faults have ended: nothing is lost any more (gap repair has caught up). */
  private settling = false;
  private readonly stats = { writes: 0, writesRefused: 0, deliveries: 0, dropped: 0, duplicated: 0, restarts: 0, wipes: 0, restores: 0 };
  /** Every message sent, in order: a restored node reads the streams again from the start (what its snapshot has is a no-op). */
  private readonly history: Msg[] = [];
  /** Feature `ddl`: schema changes on one node at a time, replicated through an in-memory schema stream. */
  private readonly ddl: SimDdl | null;
  private readonly schemaLog: Buffer[] = [];

  constructor(private readonly o: SimOptions) {
    this.rng = new Rng(o.seed);
    this.f = o.features;
    this.w = buildWorkload(o.features, this.rng);
    this.ddl = this.f.has('ddl') ? new SimDdl(this.rng) : null;
  }

  private note(s: string): void {
    this.trace.push(s);
    if (this.trace.length > traceMax) this.trace.shift();
  }

  private fail(message: string): never {
    throw new SimFailure(this.o.seed, message, this.trace);
  }

  async run(): Promise<SimResult> {
    const n = this.rng.between(3, 5);
    for (let i = 1; i <= n; i++) await this.addNode(`n${i}`);
    const actions = this.o.actions ?? 150;
    for (let i = 0; i < actions; i++) await this.step();
    await this.settle();
    const { rows, shadowed } = await this.check();
    const ddl = { ddlApplied: this.ddl?.applied ?? 0, ddlWrites: this.ddl?.writes ?? 0, schemaEntries: this.schemaLog.length };
    return { seed: this.o.seed, nodes: n, actions, batches: this.published.length, rows, shadowed, ...this.stats, ...ddl };
  }

  private async addNode(id: string): Promise<void> {
    const file = path.join(this.dir, `${id}.db`);
    const app = openApp(file);
    for (const t of this.w.initial) app.exec(t.create);
    const node: SimNode = { id, file, app, clock: new SimulatedClock(startMs), replica: null, skewMs: 0, stepsDone: 0, inbox: [], restoring: false, numbered: false };
    this.nodes.push(node);
    await this.up(node);
  }

  private async up(node: SimNode): Promise<void> {
    node.numbered = false;
    node.clock.set(startMs + this.elapsedMs + node.skewMs);
    node.replica = await Replica.open({
      file: node.file, sqlite: { synchronous: 'NORMAL', busyTimeoutMs: 1000 }, nodeId: node.id, clusterName: 'sim', shards,
      members: this.memberIds(), hlcSkewMsMax: 60_000,
      limits: { ingestChangesMax: 1000, batchChangesMax: 100, batchBytesMax: 64 * 1024 }, clock: node.clock, log: process.env.SIM_LOG ? createLogger(node.id, 'warn') : silentLogger,
      replicateSchema: this.ddl !== null,
    });
  }

  private memberIds(): string[] {
    // Every node id the run will have (members are fixed for the run).
    return Array.from({ length: 5 }, (_, i) => `n${i + 1}`);
  }

  private down(node: SimNode): void {
    node.replica?.close();
    node.replica = null;
  }

  private async step(): Promise<void> {
    const node = this.rng.pick(this.nodes);
    const choices: [number, () => Promise<void> | void][] = [
      [40, () => this.write(node)],
      [15, () => this.publish(node)],
      [25, () => this.deliver(node)],
      [10, () => this.advance()],
      [this.w.steps.length > node.stepsDone ? 4 : 0, () => this.migrate(node)],
      [3, () => this.retry(node)],
      [this.lost.length > 0 ? 3 : 0, () => this.repair()],
      [this.f.has('restart') ? 2 : 0, () => this.restart(node)],
      [this.f.has('down') ? 2 : 0, () => this.toggle(node)],
      [this.ddl ? 3 : 0, () => this.note(`${node.id} ${this.ddl!.step(node.app)}`)],
      [this.ddl ? 10 : 0, () => this.ddlWrite(node)],
      [this.ddl ? 6 : 0, () => void this.publishSchema(node)],
      [this.ddl ? 8 : 0, () => void this.deliverSchema(node, this.rng.between(1, 4))],
      [this.f.has('wipe') && this.donors(node).length > 0 ? 1 : 0, () => this.wipe(node)],
      [node.restoring ? 6 : 0, () => this.restore(node)],
    ];
    let r = this.rng.int(choices.reduce((s, [wgt]) => s + wgt, 0));
    for (const [wgt, act] of choices) {
      if (r < wgt) return act();
      r -= wgt;
    }
  }

  private write(node: SimNode): void {
    if (node.restoring) return;
    const schema = schemaAt(this.w, node.stepsDone);
    const group = this.f.has('transactions') && this.rng.chance(0.2) ? this.rng.between(2, 4) : 1;
    if (group > 1) node.app.exec('BEGIN');
    for (let i = 0; i < group; i++) {
      const sql = randomStatement(schema, this.f, this.rng);
      this.note(`${node.id} ${sql}`);
      try {
        node.app.exec(sql);
        this.stats.writes++;
      } catch (err) {
        if (!acceptableWriteError(err)) this.fail(`${node.id}: ${sql}: ${(err as Error).message}`);
        this.stats.writesRefused++;
      }
    }
    if (group > 1) node.app.exec('COMMIT');
  }

  /** Debugging a seed: SIM_WATCH_SQL's result on a node's file is traced after each step that changes it (with SIM_TRACE_MAX). */
  private watch(node: SimNode, what: string): void {
    if (!process.env.SIM_WATCH_SQL) return;
    try {
      this.note(`  watch ${node.id} after ${what}: ${JSON.stringify(node.app.prepare(process.env.SIM_WATCH_SQL).raw(true).all(), (_k, v) => (typeof v === 'bigint' ? v.toString() : v))}`);
    } catch (e) { this.note(`  watch ${node.id}: ${(e as Error).message}`); }
  }

  private ddlWrite(node: SimNode): void {
    const sql = this.ddl!.write(node.app);
    if (sql !== null) this.note(`${node.id} ${sql}`);
  }

  /** A node's schema entries (its captured DDL) appended to the schema stream, in order. */
  private publishSchema(node: SimNode): number {
    const r = node.replica;
    if (!r?.schema || node.restoring) return 0;
    r.applier.stampLocal();
    if (!node.numbered) {
      // As the node's schema publisher: nothing goes out before the stream is read to its end, then
      // entries made before this replica knew its own numbers are numbered again (node.ts).
      if (r.schema.store.position() < this.schemaLog.length) return 0;
      const store = r.schema.store;
      r.db.writeTx(() => {
        for (const t of store.renumberUnpublishedAbove(store.folded(node.id))) r.applier.restamp(t);
      });
      node.numbered = true;
    }
    let n = 0;
    for (let next = r.db.writeTx(() => r.schema!.store.nextToPublish()); next; next = r.db.writeTx(() => r.schema!.store.nextToPublish())) {
      this.schemaLog.push(Buffer.from(next.payload));
      r.db.writeTx(() => r.schema!.store.markPublished(next!.n));
      this.note(`${node.id} publishes schema entry ${next.n} at ${this.schemaLog.length}`);
      n++;
    }
    return n;
  }

  /** A node folds up to `count` entries of the schema stream from its position on. */
  private deliverSchema(node: SimNode, count = Infinity): number {
    const r = node.replica;
    if (!r?.schema || node.restoring) return 0; // a wiped node reads the streams from its snapshot's positions
    const from = r.schema.store.position();
    const entries = this.schemaLog.slice(from, from + count).map((data, i) => ({ seq: from + i + 1, data }));
    if (entries.length === 0) return 0;
    this.note(`${node.id} folds schema ${from + 1}..${from + entries.length}`);
    r.applier.applySchema(entries);
    this.watch(node, 'schema');
    return entries.length;
  }

  private publish(node: SimNode): void {
    if (!node.replica) return;
    for (const { shard, data } of takeOutbox(node.replica, shards)) this.send({ shard, seq: ++this.streamSeq[shard]!, data, origin: node.id });
  }

  /** A stream message reaches every node's inbox (its origin's too), maybe lost or twice. */
  private send(m: Msg): void {
    this.published.push(m.data);
    this.history.push(m);
    this.note(`publish ${m.origin} shard ${m.shard} seq ${m.seq}`);
    for (const to of this.nodes) {
      if (this.f.has('drop') && !this.settling && this.rng.chance(0.04)) {
        this.lost.push({ to, m });
        this.stats.dropped++;
        continue;
      }
      this.enqueue(to, m);
      if (this.f.has('duplicate') && this.rng.chance(0.04)) {
        this.enqueue(to, m);
        this.stats.duplicated++;
      }
    }
  }

  private enqueue(to: SimNode, m: Msg): void {
    if (this.f.has('reorder') && to.inbox.length > 0 && this.rng.chance(0.3)) to.inbox.splice(this.rng.int(to.inbox.length + 1), 0, m);
    else to.inbox.push(m);
  }

  private deliver(node: SimNode, count = this.rng.between(1, 6)): void {
    const r = node.replica;
    if (!r || node.restoring || node.inbox.length === 0) return;
    const batch = node.inbox.splice(0, count);
    this.note(`deliver ${node.id} ${batch.map((m) => `${m.origin}:${m.shard}/${m.seq}`).join(' ')}`);
    const outcomes = r.applier.applyMessages(batch);
    this.watch(node, 'deliver');
    this.stats.deliveries += batch.length;
    outcomes.forEach((out, i) => {
      // Held (clock too far ahead): JetStream would redeliver it later.
      if (out.kind === 'held') node.inbox.push(batch[i]!);
    });
  }

  private advance(): void {
    this.elapsedMs += this.rng.between(1, 2000);
    for (const n of this.nodes) n.clock.set(startMs + this.elapsedMs + n.skewMs);
  }

  private migrate(node: SimNode): void {
    if (node.restoring) return;
    const s = this.w.steps[node.stepsDone];
    if (!s) return;
    this.note(`${node.id} migrate: ${s.sql}`);
    try {
      node.app.exec(s.sql);
    } catch (err) {
      // With schema replication the step may have reached this node from another one already.
      if (!this.ddl || !/already exists|duplicate column/.test((err as Error).message)) throw err;
    }
    node.stepsDone++;
    this.watch(node, 'migrate');
  }

  private retry(node: SimNode): void {
    // `all`: the waiting room's backoff reads the wall clock, which would make a seed not replay.
    node.replica?.applier.retryWaiting(true);
  }

  /** Gap repair: a lost copy reaches its node after all, at some later point. */
  private repair(): void {
    const i = this.rng.int(this.lost.length);
    const [{ to, m }] = this.lost.splice(i, 1) as [{ to: SimNode; m: Msg }];
    this.note(`repair ${to.id} ${m.origin}:${m.shard}/${m.seq}`);
    this.enqueue(to, m);
  }

  private async restart(node: SimNode): Promise<void> {
    if (!node.replica) return;
    this.down(node);
    if (this.f.has('skew')) node.skewMs = this.rng.between(-20_000, 20_000);
    this.note(`${node.id} restart, skew ${node.skewMs} ms`);
    this.stats.restarts++;
    await this.up(node);
  }

  /** Live nodes a wiped node could restore from. */
  private donors(node: SimNode): SimNode[] {
    return this.nodes.filter((n) => n !== node && n.replica && !n.restoring);
  }

  /** As chaos wipe-rejoin does: drained, stopped, its files deleted, started empty (it restores later). */
  private async wipe(node: SimNode): Promise<void> {
    if (!node.replica || node.restoring) return;
    this.deliverSchema(node); // its schema publisher goes once the stream is read to its end
    this.publishSchema(node);
    this.publish(node);
    this.note(`${node.id} wiped`);
    this.down(node);
    node.app.close();
    for (const ext of ['', '-wal', '-shm']) rmSync(node.file + ext, { force: true });
    node.app = openApp(node.file);
    node.inbox = [];
    node.restoring = true;
    this.stats.wipes++;
    await this.up(node);
  }

  /** A wiped node merges a snapshot a live peer takes now, then reads every stream again from the start. */
  private async restore(node: SimNode): Promise<void> {
    const donors = this.donors(node);
    if (!node.replica || !node.restoring || donors.length === 0) return;
    const donor = this.rng.pick(donors);
    while (donor.replica!.applier.stampLocal().logRows > 0) { /* what the donor's application wrote is in its snapshot */ }
    const snap = path.join(this.dir, `${node.id}-from-${donor.id}.snapshot.db`);
    try {
      await copySnapshot({ dbFile: donor.file, outFile: snap, shards, busyTimeoutMs: 1000, orderedSchema: this.ddl !== null });
    } catch (err) {
      if (!(err as Error).message.includes(schemaNotOrdered)) throw err;
      this.note(`${node.id} cannot restore from ${donor.id} yet: ${(err as Error).message}`);
      rmSync(snap, { force: true });
      return;
    }
    await mergeSnapshot(node.replica, snap, { nodeId: node.id, cluster: 'sim', shards, log: silentLogger });
    rmSync(snap, { force: true });
    this.note(`${node.id} restored from ${donor.id}`);
    node.restoring = false;
    node.stepsDone = donor.stepsDone;
    node.inbox = [...this.history];
    this.stats.restores++;
  }

  private async toggle(node: SimNode): Promise<void> {
    this.note(`${node.id} ${node.replica ? 'down' : 'up'}`);
    if (node.replica) this.down(node);
    else await this.up(node);
  }

  /** Faults end: every node up and migrated, every lost copy repaired, then run until nothing moves. */
  private async settle(): Promise<void> {
    this.note('settle');
    this.settling = true;
    for (const node of this.nodes) if (!node.replica) await this.up(node);
    for (const { to, m } of this.lost.splice(0)) to.inbox.push(m);
    for (let round = 0; round < 60; round++) {
      const before = this.published.length;
      // A wiped node restores once a peer can give a snapshot (none while its DDL is unordered).
      for (const node of this.nodes) if (node.restoring) await this.restore(node);
      for (const node of this.nodes) while (!node.restoring && node.stepsDone < this.w.steps.length) this.migrate(node);
      let schemaMoved = this.nodes.filter((n) => n.restoring).length;
      for (const node of this.nodes) schemaMoved += this.publishSchema(node);
      for (const node of this.nodes) schemaMoved += this.deliverSchema(node);
      for (const node of this.nodes) this.publish(node);
      let delivered = 0;
      for (const node of this.nodes.filter((n) => !n.restoring)) {
        for (let guard = 0; node.inbox.length > 0 && guard < 10_000; guard++) {
          delivered += Math.min(node.inbox.length, 50);
          this.deliver(node, 50);
        }
      }
      let unparked = 0;
      for (const node of this.nodes) unparked += node.replica!.applier.retryWaiting(true).applied;
      if (this.published.length === before && delivered === 0 && unparked === 0 && schemaMoved === 0) return;
    }
    this.fail('did not settle in 60 rounds');
  }

  private userTables(db: BetterSqlite3.Database): Map<string, string> {
    const rows = db.prepare("SELECT name, sql FROM sqlite_master WHERE type = 'table' AND name NOT LIKE '\\_\\_burrow%' ESCAPE '\\' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY name").raw(true).all() as [string, string][];
    return new Map(rows.filter(([name]) => !isDdlTable(name)));
  }

  private async check(): Promise<{ rows: number; shadowed: number }> {
    const first = this.nodes[0]!;
    const schema = this.userTables(first.app);
    for (const node of this.nodes) {
      const r = node.replica!;
      const s = this.userTables(node.app);
      if ([...s.keys()].join() !== [...schema.keys()].join()) this.fail(`${node.id} has tables ${[...s.keys()].join(',')}, ${first.id} has ${[...schema.keys()].join(',')}`);
      if (r.quarantine.deadCount() > 0) this.fail(`${node.id} dead-lettered ${r.quarantine.deadCount()} change(s): ${JSON.stringify(r.quarantine.recentDead(3))}`);
      if (r.applier.waitingCount() > 0) this.fail(`${node.id} still has ${r.applier.waitingCount()} change(s) waiting: ${JSON.stringify(node.app.prepare('SELECT origin, tbl, reason FROM __burrow_waiting LIMIT 3').all())}`);
      if (r.outbox.counts().batches > 0 || r.outbox.logRows() > 0) this.fail(`${node.id} has unsent changes`);
    }
    if (this.ddl) this.checkDdl(first);
    const oracle = new Oracle(schema);
    try {
      for (const data of this.published) oracle.add(data);
      const shadowed = oracle.build();
      let rows = 0;
      for (const table of schema.keys()) {
        const mine = dumpTable(first.app, table);
        for (const node of this.nodes.slice(1)) {
          const got = dumpTable(node.app, table);
          if (got.join('\n') !== mine.join('\n')) this.fail(`replicas differ: table ${table} on ${node.id} vs ${first.id}:\n${diff(mine, got)}`);
        }
        const want = oracle.dump(table);
        rows += want.length;
        if (mine.join('\n') !== want.join('\n')) this.fail(`replicas agree but table ${table} is not the (hlc, node) winners:\n${diff(want, mine)}`);
      }
      const sums = await Promise.all(this.nodes.map((n) => n.replica!.checksum()));
      for (const [i, s] of sums.entries()) {
        if (JSON.stringify(s) !== JSON.stringify(sums[0])) this.fail(`checksums differ: ${first.id} ${JSON.stringify(sums[0])}, ${this.nodes[i]!.id} ${JSON.stringify(s)}`);
      }
      return { rows, shadowed };
    } finally {
      oracle.close();
    }
  }

  /** Schema replication: every node has the same schema objects and the same rows in the DDL tables. */
  private checkDdl(first: SimNode): void {
    const objects = userObjects(first.app);
    for (const node of this.nodes.slice(1)) {
      const got = userObjects(node.app);
      if (got.join('\n') !== objects.join('\n')) this.fail(`schemas differ: ${node.id} vs ${first.id}:\n${diff(objects, got)}`);
    }
    const tables = first.app.prepare("SELECT name FROM sqlite_schema WHERE type = 'table' ORDER BY name").pluck().all() as string[];
    for (const table of tables.filter(isDdlTable)) {
      const mine = dumpTable(first.app, table);
      for (const node of this.nodes.slice(1)) {
        const got = dumpTable(node.app, table);
        if (got.join('\n') !== mine.join('\n')) this.fail(`replicas differ: DDL table ${table} on ${node.id} vs ${first.id}:\n${diff(mine, got)}`);
      }
    }
  }

  async close(): Promise<void> {
    for (const node of this.nodes) {
      this.down(node);
      node.app.close();
    }
    rmSync(this.dir, { recursive: true, force: true });
  }
}

function openApp(file: string): BetterSqlite3.Database {
  const app = new BetterSqlite3(file);
  app.defaultSafeIntegers(true);
  app.pragma('busy_timeout = 1000');
  return app;
}

function diff(want: readonly string[], got: readonly string[]): string {
  const w = new Set(want);
  const g = new Set(got);
  const lines = [...want.filter((x) => !g.has(x)).map((x) => `  want ${x}`), ...got.filter((x) => !w.has(x)).map((x) => `  got  ${x}`)];
  return lines.slice(0, 20).join('\n');
}
