import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ShardDoctor } from '../../src/node/doctor.ts';
import type { Inbound } from '../../src/replication/inbound.ts';
import type { NatsLink } from '../../src/replication/nats-link.ts';
import type { Publisher } from '../../src/replication/publisher.ts';
import { silentLogger } from '../../src/util/log.ts';

interface FakeState {
  /** stream state per shard, or 'no-answer'. */
  streams: Map<number, { firstSeq: number; lastSeq: number } | 'no-answer'>;
  applied: number[];
  silent: number[];
  stuckPublish: number[];
  calls: string[];
  received: number[];
}

function fakes(st: FakeState) {
  const link = {
    nc: { isClosed: () => false },
    streamState: async (stream: string) => {
      const shard = Number(stream.split('_').pop());
      const s = st.streams.get(shard) ?? { firstSeq: 1, lastSeq: st.applied[shard]! };
      if (s === 'no-answer') throw new Error('TimeoutError');
      return s;
    },
    stepDownStreamLeader: async (stream: string) => {
      st.calls.push(`stream-stepdown ${stream}`);
      return '{}';
    },
  } as unknown as NatsLink;
  const publisher = { stuckShards: () => st.stuckPublish } as unknown as Publisher;
  const inbound = {
    receivedPerShard: st.received,
    positions: st.applied.map((appliedSeq) => ({ appliedSeq })),
    silentShards: () => st.silent,
    restartShard: async (shard: number) => {
      st.calls.push(`reread ${shard}`);
    },
  } as unknown as Inbound;
  return { link, publisher, inbound };
}

function doctor(st: FakeState, nudgeIntervalMs = 0) {
  const f = fakes(st);
  return new ShardDoctor('t', f.link, f.publisher, f.inbound, { stuckMs: 0, nudgeIntervalMs }, silentLogger);
}

function state(): FakeState {
  return { streams: new Map(), applied: Array.from({ length: 16 }, () => 10), silent: [], stuckPublish: [], calls: [], received: Array.from({ length: 16 }, () => 0) };
}

test('doctor: an idle shard whose stream holds nothing beyond our position is left alone', async () => {
  const st = state();
  st.silent = [0, 1, 2];
  // Shard 2's stream dropped old messages (retention) and holds only what we applied.
  st.streams.set(2, { firstSeq: 11, lastSeq: 10 });
  const d = doctor(st);
  await d.tick();
  await d.tick();
  assert.deepEqual(st.calls, []);
  assert.equal(d.stats.shardChecks, 6);
  assert.deepEqual(d.stats.stalledShards, []);
});

test('doctor: a silent shard whose stream holds more is read again, then its stream leader stepped down', async () => {
  const st = state();
  st.silent = [5];
  st.streams.set(5, { firstSeq: 1, lastSeq: 20 });
  const d = doctor(st);
  await d.tick();
  assert.deepEqual(st.calls, ['reread 5']);
  assert.deepEqual(d.stats.stalledShards, [5]);
  await d.tick();
  assert.deepEqual(st.calls, ['reread 5', 'stream-stepdown burrow_t_5', 'reread 5']);
  assert.equal(d.stats.streamStepDowns, 1);
  assert.equal(d.stats.rereads, 2);
  // Messages arrive again: the shard is healthy, the count starts over.
  st.received[5] = 3;
  st.silent = [];
  await d.tick();
  assert.deepEqual(d.stats.stalledShards, []);
});

test('doctor: a re-read that does not finish (no consumer can be placed) holds nothing up: step-down, then escalation (chaos seed 606)', async () => {
  const st = state();
  st.silent = [2];
  st.streams.set(2, { firstSeq: 1, lastSeq: 30 });
  const f = fakes(st);
  let rereads = 0;
  const inbound = { ...f.inbound, restartShard: () => { rereads++; return new Promise<void>(() => {}); } } as unknown as Inbound;
  const d = new ShardDoctor('t', f.link, f.publisher, inbound, { stuckMs: 0, nudgeIntervalMs: 0 }, silentLogger);
  const why: string[] = [];
  d.escalate = async (w) => { why.push(w); };
  for (let i = 0; i < d.escalateAfterChecks; i++) {
    const tick = d.tick();
    const done = await Promise.race([tick.then(() => true), new Promise((r) => setTimeout(() => r(false), 1000))]);
    assert.ok(done, `tick ${i + 1} returned while the re-read is still running`);
  }
  assert.equal(rereads, 1, 'one re-read of the shard at a time');
  assert.ok(st.calls.includes('stream-stepdown burrow_t_2'), st.calls.join(', '));
  assert.deepEqual(why, ['stream burrow_t_2 has delivered nothing for 4 checks while it holds messages beyond this node\'s position']);
});

test('doctor: stream step-downs are rate limited per shard', async () => {
  const st = state();
  st.silent = [7];
  st.streams.set(7, { firstSeq: 1, lastSeq: 14 });
  const d = doctor(st, 60_000);
  for (let i = 0; i < 5; i++) await d.tick();
  assert.equal(st.calls.filter((c) => c.startsWith('stream-stepdown')).length, 1);
  assert.equal(st.calls.filter((c) => c.startsWith('reread')).length, 5);
});

test('doctor: a stream that does not answer twice gets its leader stepped down', async () => {
  const st = state();
  st.silent = [3];
  st.streams.set(3, 'no-answer');
  const d = doctor(st);
  await d.tick();
  assert.deepEqual(st.calls, []);
  await d.tick();
  assert.deepEqual(st.calls, ['stream-stepdown burrow_t_3']);
  assert.equal(d.stats.streamStepDowns, 1);
});

test('doctor: a stream still without an answer after escalateAfterChecks checks escalates (the node restarts its nats-server)', async () => {
  const st = state();
  st.silent = [3];
  st.streams.set(3, 'no-answer');
  const d = doctor(st);
  const why: string[] = [];
  d.escalate = async (w) => { why.push(w); };
  for (let i = 0; i < d.escalateAfterChecks - 1; i++) await d.tick();
  assert.deepEqual(why, []);
  await d.tick();
  assert.deepEqual(why, ['stream burrow_t_3 has not answered for 4 checks']);
  st.streams.delete(3);
  await d.tick();
  assert.equal(why.length, 1, 'answering again: no more escalation');
});

test('doctor: a shard whose publishes keep failing gets its stream leader stepped down, at most once per interval', async () => {
  const st = state();
  st.stuckPublish = [9];
  const d = doctor(st, 60_000);
  await d.tick();
  await d.tick();
  assert.deepEqual(st.calls, ['stream-stepdown burrow_t_9']);
});

test('doctor: publishes failing for escalateAfterChecks × stuckMs escalate (the schema stream refused entries for minutes: chaos seed 202)', async () => {
  const st = state();
  const f = fakes(st);
  let failingMs = 1500;
  const publishes = { stuckShards: (ms: number) => (failingMs >= ms ? [0] : []) };
  const d = new ShardDoctor('t', f.link, publishes, f.inbound, { stuckMs: 1000, nudgeIntervalMs: 0 }, silentLogger, () => 'burrow_t_schema');
  const why: string[] = [];
  d.escalate = async (w) => { why.push(w); };
  await d.tick();
  assert.deepEqual(st.calls, ['stream-stepdown burrow_t_schema']);
  assert.deepEqual(why, [], 'a step-down first');
  failingMs = 4000;
  await d.tick();
  assert.deepEqual(why, ['publishes to burrow_t_schema have failed for 4 s']);
  failingMs = 0;
  await d.tick();
  assert.equal(why.length, 1, 'publishing again: no more escalation');
});
