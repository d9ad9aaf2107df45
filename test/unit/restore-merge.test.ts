import assert from 'node:assert/strict';
import { rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { copySnapshot } from '../../src/snapshot/copy.ts';
import { mergeSnapshot, NotASnapshotError } from '../../src/snapshot/merge.ts';
import { silentLogger } from '../../src/util/log.ts';
import { Replicas } from '../helpers/replicas.ts';

/**
 * Restore by merge on in-process replicas (real SQLite files, real capture/stamper/applier): a
 * snapshot written by the copy worker is merged into another replica through the LWW apply path.
 * The merged replica must end byte-identical to the others once the changes made after the
 * snapshot arrive, keep its own unpublished writes, and take app writes during the merge.
 */

const schema = `
  CREATE TABLE people(id INTEGER PRIMARY KEY, name TEXT, email TEXT UNIQUE);
  CREATE TABLE tags(k TEXT PRIMARY KEY COLLATE NOCASE, v) WITHOUT ROWID;
  CREATE TABLE notes(body);
  CREATE INDEX people_name ON people(name);
  CREATE VIEW named AS SELECT name FROM people;
`;

function assertSame(rs: Replicas, ids: readonly string[], tables: readonly string[]): void {
  for (const t of tables) {
    const first = rs.dump(ids[0]!, t);
    for (const id of ids.slice(1)) assert.deepEqual(rs.dump(id, t), first, `${t} on ${id} differs from ${ids[0]}`);
  }
}

/** The node stamps a commit within milliseconds; here it happens when the test says. */
function stamp(rs: Replicas, id: string): void {
  while (rs.node(id).applier.stampLocal().logRows > 0) { /* drain */ }
}

async function snapshotOf(rs: Replicas, id: string, name: string): Promise<string> {
  stamp(rs, id);
  const out = path.join(rs.dir, `${name}.snapshot.db`);
  rmSync(out, { force: true });
  await copySnapshot({ dbFile: rs.file(id), outFile: out, shards: 4, busyTimeoutMs: 1000 });
  return out;
}

function merge(rs: Replicas, id: string, file: string, onProgress?: () => void) {
  const r = rs.node(id);
  return mergeSnapshot(r, file, { nodeId: id, cluster: 't', shards: 4, log: silentLogger, chunkChanges: 7, onProgress });
}

/** Replicas for one test, closed and removed afterwards whatever happens. */
async function withReplicas(ids: string[], fn: (rs: Replicas) => Promise<void>): Promise<void> {
  const rs = await Replicas.start(ids);
  try {
    await fn(rs);
  } finally {
    await rs.closeAll();
  }
}

function write(rs: Replicas, id: string, from: number, count: number): void {
  const app = rs.app(id);
  for (let i = from; i < from + count; i++) {
    app.prepare('INSERT INTO people VALUES (?, ?, ?) ON CONFLICT(id) DO UPDATE SET name = excluded.name').run(BigInt(i), `${id}-${i}`, `${i}@x`);
    app.prepare('INSERT OR REPLACE INTO tags VALUES (?, ?)').run(i % 2 ? `Tag${i % 5}` : `tag${i % 5}`, `${id}:${i}`);
    app.prepare('INSERT INTO notes VALUES (?)').run(Buffer.from([0xff, i & 0xff]).toString('latin1'));
  }
  app.prepare('DELETE FROM people WHERE id % 7 = 0').run();
}

test('a new empty replica restored from a snapshot gets schema, rows, tombstones and ends identical', () => withReplicas(['n1', 'n2', 'n3'], async (rs) => {
  rs.app('n1').exec(schema);
  rs.app('n2').exec(schema);
  write(rs, 'n1', 1, 40);
  write(rs, 'n2', 30, 30);
  // n3 is new: it has no tables and never saw anything; n1 and n2 exchange everything.
  const n3Out = rs.publish('n3');
  assert.equal(n3Out.length, 0);
  const a = rs.publish('n1');
  const b = rs.publish('n2');
  rs.deliver('n1', b);
  rs.deliver('n2', a);
  const snap = await snapshotOf(rs, 'n1', 's1');
  const r = await merge(rs, 'n3', snap);
  assert.ok(r.created.includes('table people') && r.created.includes('index people_name') && r.created.includes('view named'), r.created.join(','));
  assert.deepEqual(r.schemaErrors, []);
  assert.ok(r.changes > 0);
  // Copied, not re-stamped: the restored replica has nothing of its own to publish.
  assert.deepEqual(rs.publish('n3'), []);
  assert.deepEqual(rs.dump('n3', 'people'), rs.dump('n1', 'people'));
  // After the snapshot: more writes on n1 and n2, delivered to everyone.
  write(rs, 'n1', 100, 10);
  write(rs, 'n2', 5, 10);
  rs.sync();
  assertSame(rs, ['n1', 'n2', 'n3'], ['people', 'tags', 'notes']);
  assert.equal(rs.app('n3').prepare("SELECT count(*) FROM sqlite_schema WHERE name = 'named'").pluck().get(), 1n);
  assert.deepEqual(await rs.node('n3').checksum(), await rs.node('n1').checksum());
}));

test('a replica merging a snapshot keeps its own unpublished writes; they win or lose by LWW', () => withReplicas(['n1', 'n2'], async (rs) => {
  rs.everywhere(schema);
  write(rs, 'n1', 1, 20);
  rs.sync();
  // n2 is cut off: it writes (never published), n1 writes the same keys later.
  write(rs, 'n2', 1, 10);
  stamp(rs, 'n2');
  rs.advance(50);
  write(rs, 'n1', 5, 10);
  const snap = await snapshotOf(rs, 'n1', 's2');
  await merge(rs, 'n2', snap);
  rs.sync();
  assertSame(rs, ['n1', 'n2'], ['people', 'tags', 'notes']);
  // ids 1..4 were last written by n2 (n1's later write started at 5): n2's offline writes survived.
  assert.equal(rs.app('n1').prepare('SELECT name FROM people WHERE id = 3').pluck().get(), 'n2-3');
  assert.equal(rs.app('n1').prepare('SELECT name FROM people WHERE id = 8').pluck().get(), 'n1-8');
}));

test('an application writing while the merge runs: nothing lost, replicas identical', () => withReplicas(['n1', 'n2'], async (rs) => {
  rs.everywhere(schema);
  write(rs, 'n1', 1, 60);
  const snap = await snapshotOf(rs, 'n1', 's3');
  let i = 1000;
  await merge(rs, 'n2', snap, () => {
    // Between two merge transactions an outside connection commits on the same file.
    rs.app('n2').prepare('INSERT INTO people VALUES (?, ?, ?)').run(BigInt(i), `app-${i}`, `${i}@app`);
    i++;
  });
  assert.ok(i > 1005, `the app wrote between merge transactions (${i - 1000} writes)`);
  rs.sync();
  assertSame(rs, ['n1', 'n2'], ['people', 'tags', 'notes']);
  assert.equal(rs.app('n1').prepare('SELECT count(*) FROM people WHERE id >= 1000').pluck().get(), BigInt(i - 1000));
}));

test('a merge cut short and redone ends the same (idempotent)', () => withReplicas(['n1', 'n2'], async (rs) => {
  rs.everywhere(schema);
  write(rs, 'n1', 1, 30);
  const snap = await snapshotOf(rs, 'n1', 's4');
  let calls = 0;
  await assert.rejects(merge(rs, 'n2', snap, () => {
    if (++calls === 3) throw new Error('killed');
  }), /killed/);
  await merge(rs, 'n2', snap);
  await merge(rs, 'n2', snap);
  rs.sync();
  assertSame(rs, ['n1', 'n2'], ['people', 'tags', 'notes']);
}));

test('a file that is not a snapshot of this cluster is refused before anything is merged', () => withReplicas(['n1'], async (rs) => {
  const bogus = path.join(rs.dir, 'bogus.db');
  writeFileSync(bogus, 'this is not a database, just some bytes that are long enough'.repeat(100));
  await assert.rejects(merge(rs, 'n1', bogus), (err: Error) => err instanceof NotASnapshotError || /not a database/.test(err.message));
  assert.equal(rs.app('n1').prepare("SELECT count(*) FROM sqlite_schema WHERE name NOT LIKE '\\_\\_burrow%' ESCAPE '\\' AND name NOT LIKE 'sqlite%'").pluck().get(), 0n);
}));

test('a wiped node restored from a snapshot that lacks its last writes gets them back from the stream (its own batches it never stamped are applied)', () => withReplicas(['n1', 'n2'], async (rs) => {
  rs.everywhere(schema);
  write(rs, 'n1', 1, 20);
  rs.sync();
  // n1's last writes are published, but n2 has not applied them when n2's snapshot is taken.
  write(rs, 'n1', 200, 15);
  const late = rs.publish('n1');
  assert.ok(late.length > 0);
  const snap = await snapshotOf(rs, 'n2', 'before-late');
  // n1's database is deleted; n1 starts empty and restores from that snapshot.
  await rs.close('n1');
  for (const ext of ['', '-wal', '-shm']) rmSync(rs.file('n1') + ext, { force: true });
  await rs.open('n1');
  await merge(rs, 'n1', snap);
  // Reading on from the snapshot's positions, n1 meets its own earlier batches: applied, not skipped.
  rs.deliver('n1', late);
  rs.deliver('n2', late);
  assert.ok(rs.node('n1').applier.stats.ownRecovered > 0);
  rs.sync();
  assertSame(rs, ['n1', 'n2'], ['people', 'tags', 'notes']);
  assert.equal(rs.app('n1').prepare('SELECT count(*) FROM people WHERE id >= 200').pluck().get(), rs.app('n2').prepare('SELECT count(*) FROM people WHERE id >= 200').pluck().get());
  assert.ok((rs.app('n1').prepare('SELECT count(*) FROM people WHERE id >= 200').pluck().get() as bigint) > 0n);
  // New writes of n1 are numbered above its earlier batches.
  write(rs, 'n1', 400, 3);
  rs.sync();
  assertSame(rs, ['n1', 'n2'], ['people', 'tags', 'notes']);
}));
