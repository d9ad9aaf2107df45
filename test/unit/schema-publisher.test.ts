import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { JetStreamClient } from '@nats-io/jetstream';
import { SchemaPublisher } from '../../src/replication/schema-publisher.ts';
import { silentLogger } from '../../src/util/log.ts';

/** SchemaPublisher against a fake JetStream: order, retries, and the failing streak the schema doctor reads. */

async function until(cond: () => boolean, what: string): Promise<void> {
  const deadline = Date.now() + 5000;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

test('schema publisher: entries go out in order, a failing stream is reported stuck until a publish succeeds again', async () => {
  const out = [{ n: 1, payload: new Uint8Array([1]) }, { n: 2, payload: new Uint8Array([2]) }];
  const sent: string[] = [];
  let failing = true;
  const js = {
    publish: async (_subject: string, _data: Uint8Array, opts: { msgID: string }) => {
      if (failing) throw new Error('timeout');
      sent.push(opts.msgID);
      return { seq: sent.length };
    },
  } as unknown as JetStreamClient;
  const p = new SchemaPublisher(js, { next: () => out[0] ?? null, published: (n) => { assert.equal(out.shift()!.n, n); } },
    { subject: 's', msgId: (n) => `e${n}`, timeoutMs: 10, retryDelayMsMax: 20 }, silentLogger);
  p.start();
  try {
    await until(() => p.stats.retries >= 2, 'retries');
    assert.deepEqual(p.stuckShards(0), [0], 'failing with an entry waiting: stuck');
    assert.deepEqual(p.stuckShards(60_000), [], 'not for a minute yet');
    failing = false;
    await until(() => out.length === 0, 'both entries published');
    assert.deepEqual(sent, ['e1', 'e2']);
    assert.deepEqual(p.stuckShards(0), [], 'publishing again: not stuck');
  } finally {
    await p.stop();
  }
});

test('schema publisher (sabotage lose-schema-entry): an entry "lost" is marked published without reaching the stream', async () => {
  const out = [{ n: 1, payload: new Uint8Array([1]) }, { n: 2, payload: new Uint8Array([2]) }];
  const sent: string[] = [];
  const js = { publish: async (_s: string, _d: Uint8Array, opts: { msgID: string }) => { sent.push(opts.msgID); return { seq: sent.length }; } } as unknown as JetStreamClient;
  const p = new SchemaPublisher(js, { next: () => out[0] ?? null, published: () => { out.shift(); } },
    { subject: 's', msgId: (n) => `e${n}`, timeoutMs: 10, retryDelayMsMax: 20, lose: (n) => n === 1 }, silentLogger);
  p.start();
  try {
    await until(() => out.length === 0, 'both entries marked published');
    assert.deepEqual(sent, ['e2']);
  } finally {
    await p.stop();
  }
});
