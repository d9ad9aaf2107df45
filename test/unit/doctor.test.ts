import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ShardDoctor } from '../../src/node/doctor.ts';
import type { Inbound } from '../../src/replication/inbound.ts';
import type { NatsLink } from '../../src/replication/nats-link.ts';
import type { Publisher } from '../../src/replication/publisher.ts';
import { silentLogger } from '../../src/util/log.ts';

interface FakeState {
  /** consumer info per shard: waiting messages, or 'no-answer'. */
  info: Map<number, { pending: number; ackPending: number } | 'no-answer'>;
  silent: number[];
  stuckPublish: number[];
  calls: string[];
  received: number[];
}

function fakes(st: FakeState) {
  const link = {
    nc: { isClosed: () => false },
    consumerInfo: async (stream: string) => {
      const shard = Number(stream.split('_').pop());
      const i = st.info.get(shard) ?? { pending: 0, ackPending: 0 };
      if (i === 'no-answer') throw new Error('TimeoutError');
      return { num_pending: i.pending, num_ack_pending: i.ackPending, delivered: { stream_seq: 0 } };
    },
    stepDownConsumerLeader: async (stream: string, consumer: string) => {
      st.calls.push(`consumer-stepdown ${stream} ${consumer}`);
      return '{}';
    },
    stepDownStreamLeader: async (stream: string) => {
      st.calls.push(`stream-stepdown ${stream}`);
      return '{}';
    },
  } as unknown as NatsLink;
  const publisher = { stuckShards: () => st.stuckPublish } as unknown as Publisher;
  const inbound = {
    receivedPerShard: st.received,
    silentShards: () => st.silent,
    restartShard: async (shard: number) => {
      st.calls.push(`resubscribe ${shard}`);
    },
  } as unknown as Inbound;
  return { link, publisher, inbound };
}

function doctor(st: FakeState, nudgeIntervalMs = 0) {
  const f = fakes(st);
  return new ShardDoctor('t', 'n2', f.link, f.publisher, f.inbound, { stuckMs: 0, nudgeIntervalMs }, silentLogger);
}

function state(): FakeState {
  return { info: new Map(), silent: [], stuckPublish: [], calls: [], received: Array.from({ length: 16 }, () => 0) };
}

test('doctor: an idle shard with nothing waiting is left alone', async () => {
  const st = state();
  st.silent = [0, 1, 2];
  const d = doctor(st);
  await d.tick();
  await d.tick();
  assert.deepEqual(st.calls, []);
  assert.equal(d.stats.consumerChecks, 6);
  assert.deepEqual(d.stats.stalledShards, []);
});

test('doctor: a silent shard with messages waiting is re-subscribed, then its consumer leader stepped down', async () => {
  const st = state();
  st.silent = [5];
  st.info.set(5, { pending: 10, ackPending: 0 });
  const d = doctor(st);
  await d.tick();
  assert.deepEqual(st.calls, ['resubscribe 5']);
  assert.deepEqual(d.stats.stalledShards, [5]);
  await d.tick();
  assert.deepEqual(st.calls, ['resubscribe 5', 'consumer-stepdown burrow_t_5 node_n2', 'resubscribe 5']);
  assert.equal(d.stats.consumerStepDowns, 1);
  // Messages arrive again: the shard is healthy, the count starts over.
  st.received[5] = 3;
  st.silent = [];
  await d.tick();
  assert.deepEqual(d.stats.stalledShards, []);
});

test('doctor: consumer step-downs are rate limited per shard', async () => {
  const st = state();
  st.silent = [7];
  st.info.set(7, { pending: 0, ackPending: 4 });
  const d = doctor(st, 60_000);
  for (let i = 0; i < 5; i++) await d.tick();
  assert.equal(st.calls.filter((c) => c.startsWith('consumer-stepdown')).length, 1);
  assert.equal(st.calls.filter((c) => c.startsWith('resubscribe')).length, 5);
});

test('doctor: a consumer that does not answer twice gets its stream leader stepped down', async () => {
  const st = state();
  st.silent = [3];
  st.info.set(3, 'no-answer');
  const d = doctor(st);
  await d.tick();
  assert.deepEqual(st.calls, []);
  await d.tick();
  assert.deepEqual(st.calls, ['stream-stepdown burrow_t_3']);
  assert.equal(d.stats.streamStepDowns, 1);
});

test('doctor: a shard whose publishes keep failing gets its stream leader stepped down, at most once per interval', async () => {
  const st = state();
  st.stuckPublish = [9];
  const d = doctor(st, 60_000);
  await d.tick();
  await d.tick();
  assert.deepEqual(st.calls, ['stream-stepdown burrow_t_9']);
});
