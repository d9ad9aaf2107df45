import type { NatsConnection, Subscription } from '@nats-io/transport-node';
import { pack, unpack } from 'msgpackr';
import { decodeBatch } from '../codec/batch-codec.ts';
import { noSeal, type Seal, type SealKind } from '../security/envelope.ts';
import { heartbeatSubject, publisherOfSubject, replaySubject } from '../shard/shard-router.ts';
import { errorMessage } from '../util/errors.ts';
import type { Logger } from '../util/log.ts';
import type { GapTracker } from './gaps.ts';
import type { InboundMessage, InboundOutcome } from './inbound.ts';

/** What repair needs from the node. */
export interface RepairHost {
  /** Every batch numbered up to this was acknowledged by JetStream. */
  publishedUpto(): number;
  /** Sent batches by number (about `bytesMax`), and the numbers no longer kept. */
  sentBatches(want: readonly number[], bytesMax: number): { batches: Buffer[]; gone: number[] };
  /** Apply batches (one transaction), as the consumers do. */
  apply(msgs: readonly InboundMessage[]): readonly InboundOutcome[];
  /** True while JetStream deliveries wait to be applied (then gaps are probably just lag). */
  busy(): boolean;
  /** Record numbers the origin no longer has as settled (persisted). */
  settle(origin: string, numbers: readonly number[]): void;
}

export interface RepairLimits {
  readonly heartbeatMs: number;
  /** A number missing this long without progress is asked for. */
  readonly gapMs: number;
  /** Most numbers per request; most reply bytes. */
  readonly requestNumbersMax: number;
  readonly replyBytesMax: number;
}

export interface RepairStats {
  heartbeatsSent: number;
  requests: number;
  requestFailures: number;
  batchesRepaired: number;
  /** Numbers an origin no longer had (lost beyond its sent-log retention): data may be missing here. */
  lost: number;
  lastLost: { origin: string; numbers: string; atMs: number } | null;
  served: number;
  /** Heartbeats, requests, replies and repaired batches that did not verify (forged, or not from whom they claim). */
  refused: number;
}

/**
 * Heartbeats and gap repair over core NATS (not JetStream, so it works while streams are stuck):
 * every node announces how far JetStream acknowledged its batches (`burrow.<cluster>.hb.<node>`), answers
 * requests for its sent batches (`burrow.<cluster>.replay.<node>`), and asks origins for numbers
 * the GapTracker finds missing. Replayed batches go through the normal apply (idempotent LWW).
 */
export class GapRepair {
  readonly stats: RepairStats = { heartbeatsSent: 0, requests: 0, requestFailures: 0, batchesRepaired: 0, lost: 0, lastLost: null, served: 0, refused: 0 };
  private readonly subs: Subscription[] = [];
  private hbTimer: NodeJS.Timeout | null = null;
  private repairing = false;

  constructor(
    private readonly nc: NatsConnection,
    private readonly cluster: string,
    private readonly nodeId: string,
    private readonly members: ReadonlySet<string>,
    private readonly tracker: GapTracker,
    private readonly host: RepairHost,
    private readonly limits: RepairLimits,
    private readonly log: Logger,
    /** Heartbeats, requests, replies and the batches in them are signed and checked ([security] sign). */
    private readonly seal: Seal = noSeal,
  ) {}

  /** A signed message's payload when it verifies and (signing on) comes from `from`; null otherwise. */
  private openFrom(kind: SealKind, data: Uint8Array, from: (signer: string) => boolean): Uint8Array | null {
    const r = this.seal.open(kind, data);
    if (!r.ok || (r.signer !== null && !from(r.signer))) {
      this.stats.refused++;
      return null;
    }
    return r.payload;
  }

  start(): void {
    const hb = this.nc.subscribe(heartbeatSubject(this.cluster, '*'), {
      callback: (err, m) => {
        if (err) return;
        try {
          let signer = '';
          const payload = this.openFrom('hb', m.data, (s) => { signer = s; return true; });
          if (!payload) return;
          const h = unpack(payload) as { o?: unknown; u?: unknown };
          // Signed by and published on the subject of the node it speaks for (the subject is the server's word with [security] auth).
          if ((this.seal.on && signer !== h.o) || publisherOfSubject(this.cluster, m.subject) !== h.o) {
            this.stats.refused++;
            return;
          }
          if (typeof h.o !== 'string' || h.o === this.nodeId || !this.members.has(h.o) || typeof h.u !== 'number' || !Number.isSafeInteger(h.u)) return;
          this.tracker.noteKnown(h.o, h.u);
        } catch { /* not a heartbeat */ }
      },
    });
    const replay = this.nc.subscribe(replaySubject(this.cluster, this.nodeId), {
      callback: (err, m) => {
        if (err) return;
        try {
          // Members only: a request that does not verify gets no answer.
          const payload = this.openFrom('replay-req', m.data, (s) => this.members.has(s));
          if (!payload) return;
          const r = unpack(payload) as { want?: unknown };
          const want = Array.isArray(r.want) ? r.want.filter((n): n is number => Number.isSafeInteger(n)).slice(0, this.limits.requestNumbersMax) : [];
          const { batches, gone } = this.host.sentBatches(want, this.limits.replyBytesMax);
          this.stats.served += batches.length;
          m.respond(this.seal.seal('replay-reply', pack({ b: batches.map((b) => this.seal.seal('batch', b)), g: gone })));
        } catch (e) {
          this.log.warn('could not answer a replay request', { error: errorMessage(e) });
        }
      },
    });
    this.subs.push(hb, replay);
    this.hbTimer = setInterval(() => this.heartbeat(), this.limits.heartbeatMs);
  }

  private heartbeat(): void {
    if (this.nc.isClosed()) return;
    try {
      this.nc.publish(heartbeatSubject(this.cluster, this.nodeId), this.seal.seal('hb', pack({ o: this.nodeId, u: this.host.publishedUpto() })));
      this.stats.heartbeatsSent++;
    } catch { /* disconnected: next beat */ }
  }

  /** Ask origins for what is missing (called periodically by the node). */
  async tick(): Promise<void> {
    if (this.repairing || this.nc.isClosed()) return;
    this.repairing = true;
    try {
      const due = this.tracker.due(this.limits.gapMs, this.limits.requestNumbersMax); // also records where origins stand
      if (this.host.busy()) return;
      for (const req of due) if (req.origin !== this.nodeId) await this.repair(req.origin, req.missing);
    } finally {
      this.repairing = false;
    }
  }

  private async repair(origin: string, missing: readonly number[]): Promise<void> {
    this.stats.requests++;
    let reply: { b?: unknown; g?: unknown };
    try {
      const m = await this.nc.request(replaySubject(this.cluster, origin), this.seal.seal('replay-req', pack({ want: missing })), { timeout: 5000 });
      const payload = this.openFrom('replay-reply', m.data, (s) => s === origin);
      if (!payload) throw new Error(`the reply is not signed by ${origin}`);
      reply = unpack(payload) as { b?: unknown; g?: unknown };
    } catch (err) {
      this.stats.requestFailures++;
      this.log.warn('asking a node for batches missing here failed (retried later)', { origin, missing: missing.length, error: errorMessage(err) });
      return;
    }
    const batches = Array.isArray(reply.b) ? reply.b.filter((x): x is Uint8Array => x instanceof Uint8Array) : [];
    const msgs: InboundMessage[] = [];
    for (const data of batches) {
      try {
        const payload = this.openFrom('batch', data, (s) => s === origin);
        if (!payload) continue;
        const b = decodeBatch(payload);
        if (b.o === origin) msgs.push({ shard: b.s, seq: 0, data }); // the apply path checks the signature again
      } catch { /* the applier would dead-letter it; skip */ }
    }
    if (msgs.length > 0) {
      this.host.apply(msgs);
      this.stats.batchesRepaired += msgs.length;
      this.log.warn('applied batches JetStream did not deliver, fetched from their origin', { origin, batches: msgs.length, asked: missing.length });
    }
    // Only numbers this node asked for can be given up on.
    const asked = new Set(missing);
    const gone = Array.isArray(reply.g) ? reply.g.filter((n): n is number => Number.isSafeInteger(n) && asked.has(n)) : [];
    if (gone.length > 0) {
      this.stats.lost += gone.length;
      const numbers = gone.length > 5 ? `${gone.slice(0, 5).join(',')},… (${gone.length})` : gone.join(',');
      this.stats.lastLost = { origin, numbers, atMs: Date.now() };
      this.host.settle(origin, gone);
      this.log.error('batches missing here are no longer kept by their origin: rows they changed may differ on this node', { origin, numbers });
    }
  }

  stop(): void {
    if (this.hbTimer) clearInterval(this.hbTimer);
    for (const s of this.subs) s.unsubscribe();
  }
}
