import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Replicas } from '../helpers/replicas.ts';
import { batchVersion, encodeBatch } from '../../src/codec/batch-codec.ts';
import { encodeValues } from '../../src/codec/value-codec.ts';
import { hlcPack } from '../../src/clock/hlc.ts';
import { holdAheadMaxMs } from '../../src/apply/applier.ts';
import { upsertCacheMax } from '../../src/apply/row-writer.ts';
import { Quarantine } from '../../src/store/quarantine.ts';
import { WaitingRoom, waitingLimits } from '../../src/apply/waiting-room.ts';
import { createLogger, formatLogLine, rotatingFile } from '../../src/util/log.ts';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

/** Bad input stays bounded: held messages, prepared statements, dead letters and conflicts. */

test('a message stamped further ahead than holding could fix is dead-lettered; one a little ahead is held, then applies', async () => {
  const rs = await Replicas.start(['n1', 'n2']);
  try {
    rs.everywhere('CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)');
    const now = rs.startMs;
    const batch = (id: bigint, aheadMs: number) => ({ from: 'n1', shard: 0, data: encodeBatch({ v: batchVersion, o: 'n1', s: 0,
      tables: [{ n: 't', k: ['id'], c: ['id', 'v'] }], changes: [{ t: 0, h: hlcPack(now + aheadMs, 0), d: 0, k: encodeValues([id]), r: encodeValues([id, 'x']) }] }) });
    const far = rs.deliver('n2', [batch(1n, holdAheadMaxMs + 120_000)]);
    assert.deepEqual(far.map((o) => o.kind), ['applied'], 'not held: dead-lettered');
    const reasons = rs.node('n2').db.conn.prepare('SELECT reason FROM __burrow_dead').pluck().all() as string[];
    assert.match(reasons.join(), /would stall the shard for more than 60 minutes/);
    const near = rs.deliver('n2', [batch(2n, 120_000)]);
    assert.equal(near[0]!.kind, 'held');
    rs.advance(120_000);
    assert.equal(rs.deliver('n2', [batch(2n, 120_000)])[0]!.kind, 'applied');
    assert.deepEqual(rs.dump('n2', 't').length, 1, 'only the near one applied');
  } finally {
    await rs.closeAll();
  }
});

test('thousands of different column lists keep at most upsertCacheMax statements prepared', async () => {
  const rs = await Replicas.start(['n1', 'n2']);
  try {
    const cols = Array.from({ length: 12 }, (_, i) => `c${i}`);
    rs.everywhere(`CREATE TABLE w(id INTEGER PRIMARY KEY, ${cols.join(', ')})`);
    // 3,000 column subsets (as a crafted flood would send): each a new statement.
    const msgs = Array.from({ length: 3000 }, (_, i) => {
      const pick = cols.filter((_, b) => ((i + 1) >> b) & 1);
      return { from: 'n1', shard: 0, data: encodeBatch({ v: batchVersion, o: 'n1', s: 0, tables: [{ n: 'w', k: ['id'], c: ['id', ...pick] }],
        changes: [{ t: 0, h: hlcPack(rs.startMs - 1000, i), d: 0, k: encodeValues([BigInt(i)]), r: encodeValues([BigInt(i), ...pick.map(() => 1n)]) }] }) };
    });
    for (let i = 0; i < msgs.length; i += 100) rs.deliver('n2', msgs.slice(i, i + 100));
    assert.equal(rs.dump('n2', 'w').length, 3000);
    const held = (rs.node('n2').applier as unknown as { rows: { cachedStatements(): number } }).rows.cachedStatements();
    assert.ok(held <= upsertCacheMax, `${held} statements cached`);
  } finally {
    await rs.closeAll();
  }
});

test('dead letters and conflicts are pruned to their row, byte and age bounds, oldest first', async () => {
  const rs = await Replicas.start(['n1']);
  try {
    const db = rs.node('n1').db;
    const q = new Quarantine(db, { rowsMax: 500, deadBytesMax: 200_000, ageMsMax: 86_400_000, pruneEvery: 100 });
    db.writeTx(() => {
      for (let i = 0; i < 2000; i++) q.deadLetter({ shard: 0, seq: i, origin: 'x', table: 't', hlc: null, reason: `bad ${i}`, change: new Uint8Array(100) });
      for (let i = 0; i < 2000; i++) q.conflict('t', ['u'], { node: 'a', hlc: 1n, row: '{}' }, { node: 'b', hlc: 0n, row: '{}' });
    });
    assert.ok(q.deadCount() <= 600 && q.conflictCount() <= 600, `dead ${q.deadCount()}, conflicts ${q.conflictCount()}`);
    const newest = db.conn.prepare('SELECT reason FROM __burrow_dead ORDER BY id DESC LIMIT 1').pluck().get();
    assert.equal(newest, 'bad 1999', 'the newest stay');
    db.writeTx(() => {
      for (let i = 0; i < 400; i++) q.deadLetter({ shard: 0, seq: i, origin: 'x', table: 't', hlc: null, reason: 'big', change: new Uint8Array(5000) });
      q.prune();
    });
    const bytes = Number(db.conn.prepare('SELECT sum(length(change) + length(reason)) FROM __burrow_dead').pluck().get());
    assert.ok(bytes <= 200_000, `${bytes} bytes kept`);
    db.conn.prepare('UPDATE __burrow_dead SET at_ms = 0').run();
    db.writeTx(() => q.prune());
    assert.equal(q.deadCount(), 0, 'older than the age bound: gone');
  } finally {
    await rs.closeAll();
  }
});

test('the waiting room is bounded: full by bytes as well as count (messages then stay in JetStream); changes past the age bound are dead-lettered', async () => {
  const rs = await Replicas.start(['n1', 'n2']);
  try {
    const n2 = rs.node('n2');
    const now = rs.startMs;
    const batch = (id: bigint) => ({ from: 'n1', shard: 0, data: encodeBatch({ v: batchVersion, o: 'n1', s: 0,
      tables: [{ n: 'later', k: ['id'], c: ['id', 'v'] }], changes: [{ t: 0, h: hlcPack(now, Number(id)), d: 0, k: encodeValues([id]), r: encodeValues([id, "x".repeat(1000)]) }] }) });
    assert.deepEqual(rs.deliver('n2', [batch(1n), batch(2n)]).map((o) => o.kind), ['applied', 'applied']);
    assert.equal(n2.applier.waitingCount(), 2, 'a table this node does not have: the changes wait');
    const small = new WaitingRoom(n2.db, { changesMax: 1000, bytesMax: 1500, ageMsMax: 1000 });
    assert.equal(small.full(), true, 'two ~1 KB changes fill a 1.5 KB room');
    assert.equal(new WaitingRoom(n2.db, { changesMax: 1000, bytesMax: 1_000_000, ageMsMax: 1000 }).full(), false);
    assert.equal(n2.applier.expireWaiting(1000, Date.now()), 0, 'younger than the age bound: they stay');
    assert.equal(n2.applier.expireWaiting(1000, Date.now() + waitingLimits.ageMsMax + 1000), 2);
    assert.equal(n2.applier.waitingCount(), 0);
    const reasons = n2.db.conn.prepare('SELECT reason FROM __burrow_dead').pluck().all() as string[];
    assert.equal(reasons.length, 2);
    assert.match(reasons[0]!, /waited too long for the schema \(table "later" does not exist here/);
  } finally {
    await rs.closeAll();
  }
});

test('burrow.log rotates by size: at most keep old files, none over the bound, the newest lines in the current file', () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'burrow-log-'));
  try {
    const file = path.join(dir, 'burrow.log');
    const write = rotatingFile(file, 1000, 3);
    for (let i = 0; i < 200; i++) write(`line ${i} ${'x'.repeat(40)}\n`);
    const files = readdirSync(dir).sort();
    assert.deepEqual(files, ['burrow.log', 'burrow.log.1', 'burrow.log.2', 'burrow.log.3']);
    for (const f of files) assert.ok(statSync(path.join(dir, f)).size <= 1000, `${f} within the bound`);
    assert.match(readFileSync(file, 'utf8'), /line 199 x+\n$/);
    assert.match(readFileSync(`${file}.1`, 'utf8'), /^line \d+/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a JSON log line reads as one line for people (burrow up); other lines stay as they are', () => {
  let line = '';
  createLogger('n1', 'info', (l) => { line = l; }).child('publish').warn('publish failed', { shard: 3, error: 'no responders', n: 5n });
  const o = JSON.parse(line) as Record<string, unknown>;
  assert.deepEqual({ level: o.level, node: o.node, component: o.component, msg: o.msg, n: o.n }, { level: 'warn', node: 'n1', component: 'publish', msg: 'publish failed', n: '5' });
  assert.match(formatLogLine(line.trim()), /^\d{4}-\d\d-\d\dT[\d:.]+Z WARN {2}n1\/publish publish failed shard=3 error="no responders" n=5$/);
  assert.equal(formatLogLine('plain text'), 'plain text');
});
