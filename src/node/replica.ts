import { Applier } from '../apply/applier.ts';
import { Capture } from '../capture/capture.ts';
import { ChangeStamper, type StamperLimits } from '../capture/change-stamper.ts';
import type { TableChecksum } from '../capture/checksum.ts';
import { checksumInWorker } from '../capture/checksum-thread.ts';
import { SqliteOutbox } from '../capture/outbox.ts';
import type { Clock } from '../clock/clock.ts';
import { Hlc } from '../clock/hlc.ts';
import { GapTracker } from '../replication/gaps.ts';
import { ShardRouter } from '../shard/shard-router.ts';
import { Database, type DatabaseOptions } from '../sqlite/database.ts';
import { ClockStore } from '../store/clock-store.ts';
import { MetaStore } from '../store/meta-store.ts';
import { Quarantine } from '../store/quarantine.ts';
import { ReceivedStore } from '../store/received-store.ts';
import type { Logger } from '../util/log.ts';
import { SchemaStore } from '../store/schema-store.ts';
import { SchemaCapture } from '../capture/schema-capture.ts';
import { SchemaApplier } from '../apply/schema-applier.ts';
import type { ApplierSchema } from '../apply/applier.ts';

export interface ReplicaOptions {
  readonly file: string;
  readonly sqlite: DatabaseOptions;
  readonly nodeId: string;
  readonly clusterName: string;
  readonly shards: number;
  readonly members: readonly string[];
  readonly hlcSkewMsMax: number;
  readonly limits: StamperLimits & { readonly rowBytesMax?: number };
  readonly clock: Clock;
  readonly log: Logger;
  /** Runs on the open database before capture is installed (the node checks its identity facts). */
  readonly check?: (meta: MetaStore) => void;
  /** Capture local DDL as schema entries and fold the schema stream's (the node does; in-process tests opt in). */
  readonly replicateSchema?: boolean;
}

/**
 * The SQLite side of one node, composed once: database, stores, capture, HLC, stamper, applier.
 * The real node (node.ts) adds NATS around it; the simulation and tests use it as it is, so they
 * exercise exactly the parts the node runs.
 */
export class Replica {
  private constructor(
    readonly db: Database,
    readonly meta: MetaStore,
    readonly clocks: ClockStore,
    readonly capture: Capture,
    readonly hlc: Hlc,
    readonly router: ShardRouter,
    readonly stamper: ChangeStamper,
    readonly received: ReceivedStore,
    readonly gaps: GapTracker,
    readonly quarantine: Quarantine,
    readonly applier: Applier,
    readonly outbox: SqliteOutbox,
    /** Node ids accepted as origins — members and former members (node/membership.ts); the applier, the schema fold and gap repair reject any other. Updated in place on a config reload. */
    readonly members: Set<string>,
    /** Schema replication (null when off). */
    readonly schema: ApplierSchema | null,
  ) {}

  static async open(o: ReplicaOptions): Promise<Replica> {
    const router = await ShardRouter.create(o.shards);
    const db = Database.open(o.file, o.sqlite);
    try {
      const meta = new MetaStore(db);
      o.check?.(meta);
      // Identity facts: a snapshot of this file names its cluster and shard count; a restart checks them.
      db.writeTx(() => {
        for (const [k, v] of [['node_id', o.nodeId], ['cluster', o.clusterName], ['shards', BigInt(o.shards)]] as const) meta.set(k, v);
      });
      const hlc = new Hlc(o.clock, o.hlcSkewMsMax);
      // The persisted mark covers every clock this replica wrote or received (same transactions).
      hlc.observe(meta.hlc());
      const clocks = new ClockStore(db);
      const capture = new Capture(db, clocks, o.log);
      const r = capture.refresh();
      o.log.info('capture installed', { tables: capture.tables().length, added: r.added.join(',') || undefined, backfilled: r.backfilled || undefined });
      const quarantine = new Quarantine(db);
      const members = new Set(o.members);
      const schemaStore = new SchemaStore(db);
      const schema: ApplierSchema | null = o.replicateSchema
        ? { store: schemaStore, capture: new SchemaCapture(db, schemaStore, o.nodeId), applier: new SchemaApplier(db, schemaStore, capture, o.nodeId, members, o.log) }
        : null;
      const stamper = new ChangeStamper(db, capture, clocks, meta, quarantine, hlc, router, o.nodeId, o.clusterName, o.limits, schema);
      const received = new ReceivedStore(db);
      const gaps = new GapTracker(received.load());
      const applier = new Applier({
        db, capture, stamper, clocks, meta, quarantine, received, hlc, nodeId: o.nodeId, log: o.log, members, gaps, schema,
      });
      return new Replica(db, meta, clocks, capture, hlc, router, stamper, received, gaps, quarantine, applier, new SqliteOutbox(db), members, schema);
    } catch (err) {
      db.close();
      throw err;
    }
  }

  /** Per-table digests over a separate read connection, in a worker thread (off the event loop). */
  async checksum(): Promise<TableChecksum[]> {
    return checksumInWorker({ dbFile: this.db.file, busyTimeoutMs: 5000, tables: this.capture.tables().map((t) => t.schema) });
  }

  close(): void {
    this.db.close();
  }
}
