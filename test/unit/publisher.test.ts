import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { JetStreamClient } from '@nats-io/jetstream';
import { Publisher, type OutboxBatch, type OutboxSource } from '../../src/replication/publisher.ts';
import { silentLogger } from '../../src/util/log.ts';

class MemoryOutbox implements OutboxSource {
  batches: OutboxBatch[] = [];
  removed: number[] = [];
  reads: { shard: number; skipped: number }[] = [];
  private lastId = 0;
  /** Appends `count` one-change batches of `shard` with the next ids (msgId `m<id>`). */
  add(shard: number, count = 1): void {
    for (let i = 0; i < count; i++) {
      const id = ++this.lastId;
      this.batches.push({ id, shard, msgId: `m${id}`, changes: 1, payload: new Uint8Array(1) });
    }
  }
  pending(shard: number, limit: number, exclude: ReadonlySet<number>): OutboxBatch[] {
    const mine = this.batches.filter((b) => b.shard === shard);
    this.reads.push({ shard, skipped: mine.filter((b) => exclude.has(b.id)).length });
    return mine.filter((b) => !exclude.has(b.id)).slice(0, limit);
  }
  remove(ids: readonly number[]): void {
    this.removed.push(...ids);
    this.batches = this.batches.filter((b) => !ids.includes(b.id));
  }
}

/** A fake JetStream: publishes to `stalled` subjects fail after a short timeout; others are acked. */
function fakeJs(stalled: Set<string>, calls: { subject: string; msgID: string }[]) {
  return {
    publish: (subject: string, _p: Uint8Array, opts: { msgID: string }) => {
      calls.push({ subject, msgID: opts.msgID });
      if (stalled.has(subject)) {
        return new Promise((_r, rej) => setTimeout(() => rej(Object.assign(new Error('timeout'), { name: 'TimeoutError' })), 5));
      }
      return Promise.resolve({ stream: 's', seq: calls.length, duplicate: false });
    },
  } as unknown as JetStreamClient;
}

const until = async (what: string, fn: () => boolean, ms = 2000) => {
  const deadline = Date.now() + ms;
  while (!fn()) {
    if (Date.now() > deadline) throw new Error(`timed out: ${what}`);
    await new Promise((r) => setTimeout(r, 2));
  }
};

test('a shard whose leader is gone cannot starve the other shards (per-shard in-flight cap)', async () => {
  const outbox = new MemoryOutbox();
  outbox.add(0, 10);
  outbox.add(1, 10);
  const calls: { subject: string; msgID: string }[] = [];
  const stalled = new Set(['s.0']);
  const p = new Publisher(fakeJs(stalled, calls), outbox, (s) => `s.${s}`,
    { shards: 2, inFlightMax: 4, inFlightPerShardMax: 2, timeoutMs: 5, retryDelayMsMin: 1, retryDelayMsMax: 5 }, silentLogger);
  p.start();
  try {
    await until('every shard-1 batch published', () => outbox.batches.every((b) => b.shard === 0));
    assert.deepEqual(outbox.removed.sort((a, b) => a - b), [11, 12, 13, 14, 15, 16, 17, 18, 19, 20]);
    // Shard 0 keeps at most 2 in flight, retries them with the same msgIDs, and none is removed.
    await until('shard 0 retried', () => calls.filter((c) => c.subject === 's.0').length > 4);
    const shard0 = calls.filter((c) => c.subject === 's.0');
    assert.deepEqual(new Set(shard0.map((c) => c.msgID)), new Set(['m1', 'm2']));
    assert.equal(outbox.batches.length, 10);
    // The stalled shard is reported as stuck (the node's doctor steps its stream leader down).
    await until('shard 0 reported stuck', () => p.stuckShards(20).length > 0);
    assert.deepEqual(p.stuckShards(20), [0]);
    // The leader comes back: shard 0 drains, with no batch lost or published twice.
    stalled.clear();
    await until('shard 0 drained', () => outbox.batches.length === 0);
    assert.equal(outbox.removed.length, 20);
    assert.equal(new Set(outbox.removed).size, 20);
    assert.deepEqual(p.stuckShards(0), [], 'a success ends the failure streak');
  } finally {
    p.stop();
  }
});

test('a batch leaves the outbox only after its ack', async () => {
  const outbox = new MemoryOutbox();
  outbox.batches.push({ id: 1, shard: 0, msgId: 'only', changes: 3, payload: new Uint8Array(1) });
  let release: (v: unknown) => void = () => {};
  const js = { publish: () => new Promise((r) => (release = r)) } as unknown as JetStreamClient;
  const p = new Publisher(js, outbox, (s) => `s.${s}`,
    { shards: 1, inFlightMax: 4, inFlightPerShardMax: 4, timeoutMs: 1000, retryDelayMsMin: 1, retryDelayMsMax: 5 }, silentLogger);
  p.start();
  try {
    await new Promise((r) => setTimeout(r, 20));
    assert.equal(outbox.batches.length, 1, 'not removed while the publish is unacknowledged');
    assert.equal(p.inFlightCount(), 1);
    release({ stream: 's', seq: 1, duplicate: false });
    await until('removed after the ack', () => outbox.batches.length === 0);
    assert.equal(p.stats.changesPublished, 3);
  } finally {
    p.stop();
  }
});

test('a shard stuck longer than detourAfterMs publishes through another shard (re-addressed), and goes home once its stream answers', async () => {
  const outbox = new MemoryOutbox();
  outbox.add(0, 6);
  const calls: { subject: string; msgID: string }[] = [];
  const payloads: { subject: string; payload: number }[] = [];
  const stalled = new Set(['s.0']);
  const inner = fakeJs(stalled, calls);
  const js = {
    publish: (subject: string, payload: Uint8Array, opts: { msgID: string }) => {
      payloads.push({ subject, payload: payload[0]! });
      return inner.publish(subject, payload, opts);
    },
  } as unknown as JetStreamClient;
  const p = new Publisher(js, outbox, (s) => `s.${s}`, {
    shards: 3, inFlightMax: 4, inFlightPerShardMax: 2, timeoutMs: 5, retryDelayMsMin: 1, retryDelayMsMax: 5,
    detourAfterMs: 30, detourProbeMs: 10, reshard: (_payload, shard) => new Uint8Array([shard]),
  }, silentLogger);
  p.start();
  try {
    await until('every batch published', () => outbox.batches.length === 0);
    assert.equal(p.stats.detoured, 6);
    const detours = payloads.filter((x) => x.subject !== 's.0');
    assert.ok(detours.length >= 6);
    for (const d of detours) assert.equal(`s.${d.payload}`, d.subject, 'the payload is re-addressed to the shard that carries it');
    assert.deepEqual(new Set(calls.filter((c) => c.subject !== 's.0').map((c) => c.msgID)), new Set(['m1', 'm2', 'm3', 'm4', 'm5', 'm6']));
    // Nothing of shard 0 is in flight any more: not stuck (the doctor leaves its leader alone), though
    // its next batch probes it first.
    assert.deepEqual(p.stuckShards(0), [], 'an idle failing shard is not stuck');
    // The home stream answers again: the next batches go home.
    stalled.clear();
    await new Promise((r) => setTimeout(r, 15)); // past the probe interval
    outbox.batches.push({ id: 99, shard: 0, msgId: 'm99', changes: 1, payload: new Uint8Array([0]) });
    p.kick();
    await until('published', () => outbox.batches.length === 0);
    assert.equal(calls.at(-1)!.subject, 's.0');
    assert.deepEqual(p.stuckShards(0), [], 'the probe succeeded: home again');
  } finally {
    p.stop();
  }
});

test('the outbox is read only for shards the stamper wrote', async () => {
  const outbox = new MemoryOutbox();
  const calls: { subject: string; msgID: string }[] = [];
  const stalled = new Set(['s.1']);
  const p = new Publisher(fakeJs(stalled, calls), outbox, (s) => `s.${s}`,
    { shards: 4, inFlightMax: 16, inFlightPerShardMax: 4, timeoutMs: 5, retryDelayMsMin: 1, retryDelayMsMax: 5 }, silentLogger);
  p.start();
  try {
    assert.deepEqual(outbox.reads.map((r) => r.shard).sort(), [0, 1, 2, 3], 'start reads every shard once');
    outbox.reads = [];
    // Shard 1 is stalled: two batches stay in flight; a third is read, skipping them.
    outbox.add(1, 2); // ids 1, 2
    p.kick([1]);
    assert.deepEqual(outbox.reads, [{ shard: 1, skipped: 0 }]);
    outbox.add(1); // id 3
    outbox.add(2); // id 4
    p.kick([1, 2]);
    assert.deepEqual(outbox.reads.slice(1).sort((a, b) => a.shard - b.shard), [{ shard: 1, skipped: 2 }, { shard: 2, skipped: 0 }]);
    await until('shard 2 published', () => outbox.removed.includes(4));
    const readsAfterAck = outbox.reads.length;
    // An ack pumps again, but shards read to the end are not read until named (or a full kick).
    await new Promise((r) => setTimeout(r, 20));
    assert.equal(outbox.reads.length, readsAfterAck);
    stalled.clear();
    await until('shard 1 drained', () => outbox.batches.length === 0);
    assert.deepEqual(outbox.removed.sort(), [1, 2, 3, 4]);
    assert.deepEqual(new Set(calls.filter((c) => c.subject === 's.1').map((c) => c.msgID)), new Set(['m1', 'm2', 'm3']));
  } finally {
    p.stop();
  }
});

test('a stream leader election wakes publishes waiting on the dead leader: retried at once, same msgID', async () => {
  const outbox = new MemoryOutbox();
  outbox.add(0); // m1
  const calls: string[] = [];
  let leaderAlive = false;
  const js = {
    publish: (_subject: string, _p: Uint8Array, opts: { msgID: string }) => {
      calls.push(opts.msgID);
      // The dead leader never answers (the real client would time out after timeoutMs).
      return leaderAlive ? Promise.resolve({ stream: 's', seq: 1, duplicate: false }) : new Promise(() => {});
    },
  } as unknown as JetStreamClient;
  const p = new Publisher(js, outbox, (s) => `s.${s}`,
    { shards: 2, inFlightMax: 4, inFlightPerShardMax: 2, timeoutMs: 60_000, retryDelayMsMin: 1, retryDelayMsMax: 5 }, silentLogger);
  p.start();
  try {
    await until('published once', () => calls.length === 1);
    leaderAlive = true;
    p.leaderElected(1); // another shard's election: nothing to wake
    await new Promise((r) => setTimeout(r, 10));
    assert.equal(calls.length, 1);
    p.leaderElected(0);
    await until('removed after the retry', () => outbox.batches.length === 0, 500);
    assert.deepEqual(calls, ['m1', 'm1']);
    assert.equal(p.stats.leaderWakeups, 1);
  } finally {
    p.stop();
  }
});

test('shards whose publishes fail keep one batch in flight: the live shards keep the window', async () => {
  const outbox = new MemoryOutbox();
  for (const shard of [0, 1, 2]) outbox.add(shard, 6);
  const calls: { subject: string; msgID: string }[] = [];
  const stalled = new Set(['s.0', 's.1']);
  // Window 4, 2 per shard: the two dead shards take all 4 slots until their first timeouts.
  const p = new Publisher(fakeJs(stalled, calls), outbox, (s) => `s.${s}`,
    { shards: 3, inFlightMax: 4, inFlightPerShardMax: 2, timeoutMs: 5, retryDelayMsMin: 20, retryDelayMsMax: 20 }, silentLogger);
  p.start();
  try {
    // Until a shard's first publish fails it is not known to be failing and may hold its 2 slots
    // (under load shard 2 can drain before shard 1's first timeout fires): check once both failed.
    await until('shard 2 drained while 0 and 1 are down', () => outbox.batches.every((b) => b.shard !== 2)
      && p.stuckShards(0).includes(0) && p.stuckShards(0).includes(1), 1000);
    assert.ok(p.inFlightCount() <= 2, `one probe per failing shard (in flight: ${p.inFlightCount()})`);
    stalled.clear();
    await until('all drained', () => outbox.batches.length === 0, 2000);
    assert.equal(new Set(outbox.removed).size, 18);
  } finally {
    p.stop();
  }
});
