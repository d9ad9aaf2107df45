import type { JetStreamClient } from '@nats-io/jetstream';
import { errorMessage } from '../util/errors.ts';
import type { Logger } from '../util/log.ts';

/** What the schema publisher needs from the node's store (declared here: replication never imports sqlite). */
export interface SchemaOutbox {
  /** This node's oldest schema entry not published yet. */
  next(): { n: number; payload: Uint8Array } | null;
  published(n: number): void;
}

export interface SchemaPublisherOptions {
  readonly subject: string;
  /** The msgID of entry n with these bytes (deduplicated by JetStream: a retry after a lost ack is stored once). */
  readonly msgId: (n: number, payload: Uint8Array) => string;
  /** Signs an entry as it goes out ([security] sign). */
  readonly seal?: (payload: Uint8Array) => Uint8Array;
  readonly timeoutMs: number;
  readonly retryDelayMsMax: number;
  /** TEST ONLY (sabotage lose-schema-entry): entry n is treated as acknowledged without being published. */
  readonly lose?: (n: number) => boolean;
}

/**
 * Publishes this node's schema entries to the schema stream one at a time, in their order (the
 * next only after the previous one's ack), with a stable msgID per entry; errors are retried with
 * backoff (bounded delay), and nothing is marked published without an ack.
 */
export class SchemaPublisher {
  readonly stats = { published: 0, retries: 0, lastError: null as string | null };
  private running = false;
  private wake: (() => void) | null = null;
  private loop: Promise<void> | null = null;
  /** When the current streak of failed publishes began (null: the last publish succeeded). */
  private failingSince: number | null = null;

  constructor(private readonly js: JetStreamClient, private readonly outbox: SchemaOutbox, private readonly o: SchemaPublisherOptions,
    private readonly log: Logger) {}

  start(): void {
    this.running = true;
    this.loop = this.run();
  }

  /** Something may be waiting to be published. */
  kick(): void {
    this.wake?.();
  }

  async stop(): Promise<void> {
    this.running = false;
    this.wake?.();
    await this.loop;
  }

  private async run(): Promise<void> {
    let delay = 50;
    while (this.running) {
      const next = this.safeNext();
      if (!next) {
        this.failingSince = null; // nothing to publish: not stuck
        await new Promise<void>((r) => {
          this.wake = r;
          setTimeout(r, 1000);
        });
        this.wake = null;
        continue;
      }
      try {
        if (!this.o.lose?.(next.n)) await this.js.publish(this.o.subject, this.o.seal ? this.o.seal(next.payload) : next.payload, { msgID: this.o.msgId(next.n, next.payload), timeout: this.o.timeoutMs });
        this.outbox.published(next.n);
        this.stats.published++;
        this.failingSince = null;
        delay = 50;
      } catch (err) {
        this.stats.retries++;
        this.failingSince ??= Date.now();
        this.stats.lastError = errorMessage(err);
        if (this.stats.retries === 1 || this.stats.retries % 20 === 0) this.log.warn('publishing a schema entry failed; retrying', { n: next.n, error: this.stats.lastError });
        await new Promise((r) => setTimeout(r, delay));
        delay = Math.min(delay * 2, this.o.retryDelayMsMax);
      }
    }
  }

  /** [0] (the schema stream's one "shard") when publishes have failed for at least `ms` with an entry waiting; else []. */
  stuckShards(ms: number): number[] {
    return this.failingSince !== null && Date.now() - this.failingSince >= ms ? [0] : [];
  }

  private safeNext(): { n: number; payload: Uint8Array } | null {
    try {
      return this.outbox.next();
    } catch (err) {
      this.stats.lastError = errorMessage(err);
      return null;
    }
  }
}
