import { errorMessage } from '../util/errors.ts';
import type { Logger } from '../util/log.ts';

/** What the watch needs from the node (declared here: replication never imports sqlite). */
export interface SchemaLossDeps {
  /** The schema stream has been read to its end once since start. */
  ready(): boolean;
  /** The schema stream position this node has folded. */
  position(): number;
  /** Own entries the stream acknowledged that have not come back through it yet. */
  publishedPending(): number[];
  /** The schema stream's last sequence, as the server says. */
  streamLastSeq(): Promise<number>;
  /** Publish these entries again, under msgIDs JetStream has not seen (its duplicate window would drop them). */
  republish(ns: readonly number[]): void;
}

/**
 * nats-server 2.9.10 can lose messages it acknowledged when a stream's quorum is killed (an old
 * chaos 505 run lost schema entries): the origin's entry then never comes back through the
 * stream, its own data waits on every node for it, and its schema stays apart. This watch sees it:
 * entries published but not folded back while this node has read the stream to its last message,
 * for `checksMax` checks in a row (nothing in flight can explain that), are published again.
 * Nodes that had already folded a lost copy skip the new one as a duplicate.
 */
export class SchemaLossWatch {
  readonly stats = { republished: 0, lastError: null as string | null };
  private checks = 0;
  private watching = '';

  constructor(private readonly d: SchemaLossDeps, private readonly log: Logger, private readonly checksMax = 3) {}

  async tick(): Promise<void> {
    const pending = this.d.ready() ? this.d.publishedPending() : [];
    const key = pending.join(',');
    if (key !== this.watching) {
      this.watching = key;
      this.checks = 0;
    }
    if (pending.length === 0) return;
    let last: number;
    try {
      last = await this.d.streamLastSeq();
    } catch (err) {
      this.stats.lastError = errorMessage(err);
      return;
    }
    if (this.d.position() < last) {
      this.checks = 0; // still reading: the entries may be on their way
      return;
    }
    if (++this.checks < this.checksMax) return;
    this.checks = 0;
    this.d.republish(pending);
    this.stats.republished += pending.length;
    this.log.warn('schema entries the stream acknowledged never came back through it (lost by the server): publishing them again', { entries: pending.join(','), streamLastSeq: last });
  }
}
