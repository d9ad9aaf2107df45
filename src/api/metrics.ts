import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';

/** Seconds buckets for replication latencies (commit → published, commit → applied) and apply transactions. */
const latencyBuckets = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];

/**
 * GET /metrics: Prometheus exposition of what `status` holds, plus latency histograms the node
 * observes as it works, and the process defaults (CPU, memory, event-loop lag: every SQLite call
 * blocks the loop). Counters and gauges are read from the status object at each scrape
 * (`collect`), so there is one source of truth; histograms are fed by `observe*`.
 */
export class Metrics {
  readonly registry = new Registry();
  private readonly commitToPublished: Histogram;
  private readonly commitToApplied: Histogram;
  private readonly applyTx: Histogram;

  constructor(nodeId: string, version: string, status: () => Record<string, unknown>) {
    this.registry.setDefaultLabels({ node: nodeId });
    collectDefaultMetrics({ register: this.registry, prefix: 'burrow_process_', eventLoopMonitoringPrecision: 20 });
    const r = this.registry;
    this.commitToPublished = new Histogram({ name: 'burrow_commit_to_published_seconds', help: 'Local commit (its HLC) to JetStream acknowledging the batch', buckets: latencyBuckets, registers: [r] });
    this.commitToApplied = new Histogram({ name: 'burrow_commit_to_applied_seconds', help: 'Commit on the origin (its HLC) to applied here, per applied remote batch', buckets: latencyBuckets, registers: [r] });
    this.applyTx = new Histogram({ name: 'burrow_apply_transaction_seconds', help: 'Duration of one apply transaction (a group of messages)', buckets: latencyBuckets, registers: [r] });
    new Gauge({ name: 'burrow_info', help: 'Constant 1, labelled with the version', labelNames: ['version'], registers: [r] }).set({ version }, 1);
    let current: Record<string, any> = {};
    // One status read per scrape, shared by every series below (the first collect reads it).
    const read = () => (current = status() as Record<string, any>);
    const gauge = (name: string, help: string, get: (s: Record<string, any>) => number | undefined, first = false) =>
      new Gauge({ name, help, registers: [r], collect() {
        if (first) read();
        const v = get(current);
        if (typeof v === 'number' && Number.isFinite(v)) this.set(v);
      } });
    const counter = (name: string, help: string, get: (s: Record<string, any>) => number | undefined) =>
      new Counter({ name, help, registers: [r], collect() {
        const v = get(current);
        if (typeof v === 'number' && Number.isFinite(v)) {
          this.reset();
          this.inc(v);
        }
      } });
    gauge('burrow_up', 'The node answers (1); ready is burrow_ready', () => 1, true);
    gauge('burrow_ready', '1 when the node is ready (streams up, backlog at start applied)', (s) => (s.ready ? 1 : 0));
    gauge('burrow_pending_log_rows', 'Captured changes not stamped yet', (s) => s.pending?.logRows);
    gauge('burrow_pending_outbox_changes', 'Stamped changes not acknowledged by JetStream yet', (s) => s.pending?.outboxChanges);
    gauge('burrow_publish_in_flight', 'Publishes awaiting their ack', (s) => s.pending?.publishInFlight);
    gauge('burrow_inbound_queued_messages', 'Messages received, not applied yet', (s) => s.pending?.inboundQueued);
    counter('burrow_published_batches_total', 'Batches acknowledged by JetStream', (s) => s.publish?.published);
    counter('burrow_published_changes_total', 'Changes acknowledged by JetStream', (s) => s.publish?.changesPublished);
    counter('burrow_publish_retries_total', 'Publish attempts that failed and were retried', (s) => s.publish?.retries);
    counter('burrow_publish_detours_total', 'Batches published through another shard\'s stream', (s) => s.publish?.detoured);
    counter('burrow_applied_messages_total', 'Messages applied (own included)', (s) => s.apply?.messages);
    counter('burrow_applied_changes_total', 'Remote changes written here', (s) => s.apply?.changesApplied);
    counter('burrow_skipped_changes_total', 'Remote changes that lost by last-writer-wins', (s) => s.apply?.changesSkipped);
    counter('burrow_held_total', 'Messages held back (clock too far ahead, waiting room full)', (s) => s.apply?.held);
    counter('burrow_rejected_messages_total', 'Messages rejected and dead-lettered (malformed, unsigned, foreign)', (s) => s.apply?.messagesRejected);
    counter('burrow_dead_lettered_changes_total', 'Changes dead-lettered since start', (s) => s.apply?.deadLettered);
    gauge('burrow_dead_letters', 'Rows in __burrow_dead', (s) => s.deadLetters);
    gauge('burrow_conflicts', 'Rows in __burrow_conflicts (UNIQUE conflicts resolved)', (s) => s.conflicts);
    gauge('burrow_waiting_changes', 'Changes waiting for their schema', (s) => s.waiting?.changes);
    counter('burrow_repaired_batches_total', 'Batches fetched from their origin by gap repair', (s) => s.repair?.batchesRepaired);
    counter('burrow_repair_lost_batches_total', 'Batch numbers no origin still had', (s) => s.repair?.lost);
    counter('burrow_doctor_stream_stepdowns_total', 'Stream leader step-downs the shard doctor asked for', (s) => s.doctor?.streamStepDowns);
    counter('burrow_doctor_rereads_total', 'Shards the doctor read again', (s) => s.doctor?.rereads);
    counter('burrow_nats_restarts_total', 'Embedded nats-server restarts', (s) => s.nats?.restarts);
    counter('burrow_signatures_refused_total', 'Signed messages that did not verify ([security] sign)', (s) => s.security?.refused);
    gauge('burrow_schema_position', 'Schema stream position folded', (s) => s.schema?.position);
    gauge('burrow_schema_pending_entries', 'Own schema entries not ordered yet', (s) => s.schema?.pending);
    new Gauge({ name: 'burrow_shard_position', help: 'Stream sequence applied, per shard', labelNames: ['shard'], registers: [r], collect() {
      this.reset();
      for (const p of (current.shards ?? []) as { shard: number; appliedSeq: number }[]) this.set({ shard: String(p.shard) }, p.appliedSeq);
    } });
    new Gauge({ name: 'burrow_shard_lag_messages', help: 'Messages the shard stream holds beyond what this node applied', labelNames: ['shard'], registers: [r], collect() {
      this.reset();
      for (const p of (current.shards ?? []) as { shard: number; lagMessages?: number }[]) if (p.lagMessages !== undefined) this.set({ shard: String(p.shard) }, p.lagMessages);
    } });
  }

  /** A batch of ours acknowledged: `commitMs` is its first change's HLC time. */
  observePublished(commitMs: number, nowMs = Date.now()): void {
    this.commitToPublished.observe(Math.max(0, nowMs - commitMs) / 1000);
  }

  observeApplied(commitMs: number, nowMs = Date.now()): void {
    this.commitToApplied.observe(Math.max(0, nowMs - commitMs) / 1000);
  }

  observeApplyTx(ms: number): void {
    this.applyTx.observe(ms / 1000);
  }

  async render(): Promise<{ contentType: string; body: string }> {
    return { contentType: this.registry.contentType, body: await this.registry.metrics() };
  }
}
