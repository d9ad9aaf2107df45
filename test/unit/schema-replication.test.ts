import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Replicas } from '../helpers/replicas.ts';
import { rmSync } from 'node:fs';
import path from 'node:path';
import { localObjects } from '../../src/capture/schema-capture.ts';
import { encodeSchemaEntry, schemaEntryVersion } from '../../src/codec/schema-codec.ts';
import { copySnapshot } from '../../src/snapshot/copy.ts';
import { mergeSnapshot } from '../../src/snapshot/merge.ts';
import { silentLogger } from '../../src/util/log.ts';

/**
 * Schema replication on in-process replicas (real SQLite files, the real capture/stamper/applier,
 * an in-memory schema stream and data transport): DDL by an outside connection on one node
 * reaches every node, before the data that needs it, and every node ends with the same schema
 * and the same rows whatever the order the data arrives in.
 */

async function withReplicas(ids: readonly string[], fn: (rs: Replicas) => Promise<void> | void): Promise<void> {
  const rs = await Replicas.start(ids, { schema: true });
  try {
    await fn(rs);
  } finally {
    await rs.closeAll();
  }
}

function schemaOf(rs: Replicas, id: string): string[] {
  return localObjects(rs.node(id).db.conn).map((o) => `${o.type} ${o.name} ${o.tbl}: ${o.sql}`).sort();
}

function assertSame(rs: Replicas, tables: readonly string[]): void {
  const [first, ...rest] = rs.ids;
  for (const id of rest) {
    assert.deepEqual(schemaOf(rs, id), schemaOf(rs, first!), `schema of ${id} = schema of ${first}`);
    for (const t of tables) assert.deepEqual(rs.dump(id, t), rs.dump(first!, t), `rows of ${t} on ${id}`);
  }
}

test('a table created on one node reaches the others with its rows; data that arrives first waits for it', () => withReplicas(['n1', 'n2', 'n3'], (rs) => {
  rs.app('n1').exec("BEGIN; CREATE TABLE people(id INTEGER PRIMARY KEY, name TEXT NOT NULL); INSERT INTO people VALUES (1, 'ann'), (2, 'bob'); COMMIT;");
  // The data reaches n2 before the schema entry: it waits, then applies once the entry is folded.
  const data = rs.publish('n1');
  assert.ok(data.length > 0);
  rs.deliver('n2', data);
  assert.equal(rs.node('n2').applier.waitingCount(), 2);
  assert.equal(rs.publishSchema('n1'), 1, 'one entry: CREATE TABLE');
  assert.equal(rs.schemaLog.length, 1);
  rs.deliverSchema('n2');
  rs.node('n2').applier.retryWaiting(true);
  assert.equal(rs.node('n2').applier.waitingCount(), 0);
  rs.deliver('n3', data);
  rs.sync();
  assertSame(rs, ['people']);
  assert.deepEqual(rs.dump('n3', 'people').length, 2);
  // And n3 writes at once into the table it got.
  rs.app('n3').exec("INSERT INTO people VALUES (3, 'cy')");
  rs.sync();
  assertSame(rs, ['people']);
  assert.equal(rs.dump('n1', 'people').length, 3);
}));

test('ADD COLUMN and an UPDATE of it in one transaction: the update applies after the column everywhere', () => withReplicas(['n1', 'n2'], (rs) => {
  rs.app('n1').exec('CREATE TABLE t(id INTEGER PRIMARY KEY, a TEXT); INSERT INTO t VALUES (1, \'x\'), (2, \'y\');');
  rs.sync();
  rs.app('n1').exec("BEGIN; ALTER TABLE t ADD COLUMN c INTEGER DEFAULT 7; UPDATE t SET c = 42 WHERE id = 1; COMMIT;");
  const data = rs.publish('n1');
  rs.deliver('n2', data); // before the schema entry
  assert.ok(rs.node('n2').applier.waitingCount() > 0, 'the update waits for ADD COLUMN');
  rs.sync();
  assertSame(rs, ['t']);
  assert.deepEqual(rs.app('n2').prepare('SELECT id, c FROM t ORDER BY id').raw(true).all(), [[1n, 42n], [2n, 7n]]);
}));

test('a dropped table stays dropped (late changes do not bring it back); created again it starts clean everywhere', () => withReplicas(['n1', 'n2', 'n3'], (rs) => {
  rs.app('n1').exec("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT); INSERT INTO t VALUES (1, 'a');");
  rs.sync();
  rs.app('n2').exec("INSERT INTO t VALUES (2, 'late')"); // made before the drop reaches n2
  const late = rs.publish('n2');
  rs.app('n1').exec('DROP TABLE t');
  rs.sync(); // the drop reaches every node
  rs.deliver('n1', late);
  for (const id of rs.ids) assert.equal(rs.app(id).prepare("SELECT count(*) FROM sqlite_schema WHERE name = 't'").pluck().get(), 0n, `t is gone on ${id}`);
  rs.app('n3').exec("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT, w BLOB); INSERT INTO t VALUES (9, 'new', x'00');");
  rs.sync();
  // The change made before the drop reaches n3 only now, with a new table t in place: not applied.
  rs.deliver('n3', late);
  rs.sync();
  assertSame(rs, ['t']);
  assert.deepEqual(rs.dump('n3', 't'), ['integer:39|text:6E6577|blob:00']);
  assert.ok(rs.node('n3').applier.stats.changesDroppedWithTable >= 1);
}));

test('rename table and rename column keep the rows; an index and a view replicate', () => withReplicas(['n1', 'n2'], (rs) => {
  rs.app('n1').exec("CREATE TABLE a(id INTEGER PRIMARY KEY, name TEXT); INSERT INTO a VALUES (1, 'one'), (2, 'two');");
  rs.sync();
  rs.app('n1').exec('ALTER TABLE a RENAME TO b; ALTER TABLE b RENAME COLUMN name TO label; CREATE INDEX b_label ON b(label); CREATE VIEW bv AS SELECT label FROM b;');
  rs.sync();
  assertSame(rs, ['b']);
  assert.deepEqual(rs.app('n2').prepare('SELECT label FROM bv ORDER BY label').pluck().all(), ['one', 'two']);
  rs.app('n2').exec("INSERT INTO b VALUES (3, 'three')");
  rs.sync();
  assertSame(rs, ['b']);
  assert.equal(rs.dump('n1', 'b').length, 3);
}));

test('a table rebuilt in one transaction (create, copy, drop, rename) while another node writes: same definition and rows everywhere', () => withReplicas(['n1', 'n2'], (rs) => {
  rs.app('n1').exec("CREATE TABLE p(id INTEGER PRIMARY KEY, name TEXT, age TEXT); INSERT INTO p VALUES (1, 'a', '10'), (2, 'b', '20');");
  rs.sync();
  rs.app('n2').exec("UPDATE p SET name = 'B' WHERE id = 2; INSERT INTO p VALUES (3, 'c', '30');");
  const concurrent = rs.publish('n2');
  // What sqlite-utils transform does: a renamed column and a changed type.
  rs.app('n1').exec(`BEGIN;
    CREATE TABLE p_new(id INTEGER PRIMARY KEY, full_name TEXT, age INTEGER);
    INSERT INTO p_new(id, full_name, age) SELECT id, name, CAST(age AS INTEGER) FROM p;
    DROP TABLE p; ALTER TABLE p_new RENAME TO p; COMMIT;`);
  rs.deliver('n1', concurrent);
  rs.sync();
  assertSame(rs, ['p']);
  assert.match(schemaOf(rs, 'n2').find((s) => s.startsWith('table p '))!, /full_name TEXT, age INTEGER/);
  assert.deepEqual(rs.app('n2').prepare('SELECT count(*) FROM p WHERE full_name IS NOT NULL').pluck().get(), 3n, 'the row n2 inserted under the old column name keeps its value');
}));

test('a rebuild into a NOT NULL column with a DEFAULT, over a row that is NULL here: the row takes the default, the table follows (chaos seed 505)', () => withReplicas(['n1', 'n2'], (rs) => {
  rs.app('n1').exec("CREATE TABLE t(id INTEGER PRIMARY KEY, label TEXT); INSERT INTO t VALUES (1, 'x'), (2, NULL);");
  rs.sync();
  rs.app('n1').exec(`BEGIN; CREATE TABLE t_new(id INTEGER PRIMARY KEY, label TEXT NOT NULL DEFAULT '', c TEXT);
    INSERT INTO t_new(id, label) SELECT id, coalesce(label, '') FROM t; DROP TABLE t; ALTER TABLE t_new RENAME TO t; COMMIT;`);
  assert.equal(rs.publishSchema('n1'), 1);
  rs.deliverSchema('n2'); // before n1's restamped rows arrive: n2 rebuilds over its own NULL
  assert.ok(schemaOf(rs, 'n2').some((o) => o.includes("label TEXT NOT NULL DEFAULT ''")), schemaOf(rs, 'n2').join(' | '));
  rs.sync();
  assertSame(rs, ['t']);
  assert.deepEqual(rs.app('n2').prepare('SELECT id, label FROM t ORDER BY id').raw(true).all(), [[1n, 'x'], [2n, '']]);
}));

test('DROP COLUMN replicates (capture triggers do not name the column)', () => withReplicas(['n1', 'n2'], (rs) => {
  rs.app('n1').exec("CREATE TABLE t(id INTEGER PRIMARY KEY, keep TEXT, gone TEXT); INSERT INTO t VALUES (1, 'k', 'g');");
  rs.sync();
  rs.app('n2').exec('ALTER TABLE t DROP COLUMN gone');
  rs.app('n2').exec("INSERT INTO t VALUES (2, 'k2')");
  rs.sync();
  assertSame(rs, ['t']);
  assert.deepEqual(rs.app('n1').prepare('SELECT * FROM t ORDER BY id').raw(true).all(), [[1n, 'k'], [2n, 'k2']]);
}));

test('concurrent conflicting DDL converges to the stream order; the loser is recorded', () => withReplicas(['n1', 'n2'], (rs) => {
  rs.app('n1').exec('CREATE TABLE t(id INTEGER PRIMARY KEY)');
  rs.sync();
  rs.app('n1').exec('ALTER TABLE t ADD COLUMN x TEXT');
  rs.app('n2').exec('ALTER TABLE t ADD COLUMN x INTEGER');
  rs.app('n2').exec('INSERT INTO t VALUES (1, 5)');
  rs.publishSchema('n1'); // n1's entry first in the stream
  rs.sync();
  assertSame(rs, ['t']);
  assert.match(schemaOf(rs, 'n2').find((s) => s.startsWith('table t '))!, /x TEXT/);
  assert.equal(rs.node('n2').schema!.store.conflictCount() + rs.node('n1').schema!.store.conflictCount(), 2, 'both nodes record the losing entry');
  assert.equal(rs.node('n1').schema!.store.pendingCount(), 0);
}));

test('identical DDL run on every node (a migration run per node) is no conflict', () => withReplicas(['n1', 'n2', 'n3'], (rs) => {
  rs.everywhere('CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT); CREATE INDEX t_v ON t(v);');
  rs.app('n2').exec("INSERT INTO t VALUES (1, 'x')");
  rs.sync();
  assertSame(rs, ['t']);
  for (const id of rs.ids) assert.equal(rs.node(id).schema!.store.conflictCount(), 0);
}));

test('changes made under an old name reach the renamed table and column (concurrent rename)', () => withReplicas(['n1', 'n2'], (rs) => {
  rs.app('n1').exec("CREATE TABLE a(id INTEGER PRIMARY KEY, name TEXT); INSERT INTO a VALUES (1, 'one');");
  rs.sync();
  // n2 writes under the old names while n1 renames the table and the column.
  rs.app('n2').exec("INSERT INTO a VALUES (2, 'two'); UPDATE a SET name = 'ONE' WHERE id = 1;");
  const concurrent = rs.publish('n2');
  rs.app('n1').exec('ALTER TABLE a RENAME TO b; ALTER TABLE b RENAME COLUMN name TO label;');
  rs.publishSchema('n1');
  rs.deliverSchema('n1');
  rs.deliver('n1', concurrent);
  rs.sync();
  assertSame(rs, ['b']);
  assert.deepEqual(rs.app('n1').prepare('SELECT id, label FROM b ORDER BY id').raw(true).all(), [[1n, 'ONE'], [2n, 'two']]);
}));

test('an ADD COLUMN made before another node\'s column rename was ordered applies after it: both stand, values kept everywhere', () => withReplicas(['n1', 'n2'], (rs) => {
  rs.app('n1').exec("CREATE TABLE t(id INTEGER PRIMARY KEY, a TEXT); INSERT INTO t VALUES (1, 'x'), (2, 'y');");
  rs.sync();
  rs.app('n2').exec('ALTER TABLE t ADD COLUMN b INTEGER DEFAULT 0; UPDATE t SET b = 5;');
  rs.app('n1').exec('ALTER TABLE t RENAME COLUMN a TO label');
  rs.publishSchema('n1'); // the rename is ordered first: n2's ADD COLUMN is rebased on it
  rs.sync();
  assertSame(rs, ['t']);
  for (const id of rs.ids) {
    assert.deepEqual(rs.app(id).prepare('SELECT id, label, b FROM t ORDER BY id').raw(true).all(), [[1n, 'x', 5n], [2n, 'y', 5n]], id);
    assert.equal(rs.node(id).schema!.store.conflictCount(), 0, `${id}: no conflict`);
  }
}));

test('a column renamed twice (both renames of the same column): the second conflicts, the loser keeps its values under the winner', () => withReplicas(['n1', 'n2'], (rs) => {
  rs.app('n1').exec("CREATE TABLE t(id INTEGER PRIMARY KEY, a TEXT); INSERT INTO t VALUES (1, 'x'), (2, 'y');");
  rs.sync();
  rs.app('n2').exec("ALTER TABLE t RENAME COLUMN a TO mine; UPDATE t SET mine = 'z' WHERE id = 2;");
  rs.app('n1').exec('ALTER TABLE t RENAME COLUMN a TO label');
  rs.publishSchema('n1');
  rs.sync();
  assertSame(rs, ['t']);
  for (const id of rs.ids) assert.deepEqual(rs.app(id).prepare('SELECT id, label FROM t ORDER BY id').raw(true).all(), [[1n, 'x'], [2n, 'z']], id);
  assert.equal(rs.node('n2').schema!.store.conflictCount(), 1);
}));

test('a new replica restored from a snapshot takes the schema position with it: it publishes no DDL of its own and folds what came after', () => withReplicas(['n1', 'n2', 'n3'], async (rs) => {
  rs.app('n1').exec("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT); CREATE INDEX t_v ON t(v); INSERT INTO t VALUES (1, 'a');");
  rs.sync();
  await rs.close('n3');
  rmSync(rs.file('n3'), { force: true });
  for (const ext of ['-wal', '-shm']) rmSync(rs.file('n3') + ext, { force: true });
  const snap = path.join(rs.dir, 'n2.snapshot.db');
  while (rs.node('n2').applier.stampLocal().logRows > 0) { /* stamp */ }
  await copySnapshot({ dbFile: rs.file('n2'), outFile: snap, shards: 4, busyTimeoutMs: 1000 });
  // After the snapshot: more DDL in the stream.
  rs.app('n1').exec('ALTER TABLE t ADD COLUMN w INTEGER DEFAULT 3');
  rs.publishSchema('n1');
  const n3 = await rs.open('n3');
  await mergeSnapshot(n3, snap, { nodeId: 'n3', cluster: 't', shards: 4, log: silentLogger });
  assert.equal(n3.schema!.store.position(), 1, 'the snapshot\'s schema position');
  n3.applier.stampLocal();
  assert.equal(n3.schema!.store.pendingCount(), 0, 'the restored tables are not this node\'s DDL');
  rs.sync();
  assertSame(rs, ['t']);
  assert.equal(n3.schema!.store.position(), 2);
}));

test('a snapshot taken while its node\'s own DDL is unpublished: the restored replica does not send that DDL again as its own (a later drop stays)', () => withReplicas(['n1', 'n2', 'n3'], async (rs) => {
  rs.app('n1').exec("CREATE TABLE base(id INTEGER PRIMARY KEY)");
  rs.sync();
  await rs.close('n3');
  for (const ext of ['', '-wal', '-shm']) rmSync(rs.file('n3') + ext, { force: true });
  // n2 creates a table; its entry is stamped but not yet in the stream when the snapshot is taken.
  rs.app('n2').exec("CREATE TABLE pend(id INTEGER PRIMARY KEY, v TEXT); INSERT INTO pend VALUES (1, 'x');");
  while (rs.node('n2').applier.stampLocal().logRows > 0) { /* stamp */ }
  assert.equal(rs.node('n2').schema!.store.pendingCount(), 1);
  const snap = path.join(rs.dir, 'n2.pending.db');
  await copySnapshot({ dbFile: rs.file('n2'), outFile: snap, shards: 4, busyTimeoutMs: 1000 });
  const n3 = await rs.open('n3');
  await mergeSnapshot(n3, snap, { nodeId: 'n3', cluster: 't', shards: 4, log: silentLogger });
  n3.applier.stampLocal();
  assert.equal(n3.schema!.store.pendingCount(), 0, 'the table n2 had not published is not n3\'s DDL');
  // n2's entry goes out, then the table is dropped: it stays dropped on every node.
  rs.sync();
  rs.app('n1').exec('DROP TABLE pend');
  rs.sync();
  assertSame(rs, ['base']);
  assert.ok(!schemaOf(rs, 'n3').some((o) => o.includes('pend')), 'pend dropped on n3');
}));

test('a snapshot is refused while its replica has schema changes not ordered yet; a change for a table not here and never dropped waits for it (simulation seed 32)', () => withReplicas(['n1', 'n2', 'n3'], async (rs) => {
  rs.app('n1').exec('CREATE TABLE base(id INTEGER PRIMARY KEY)');
  rs.sync();
  await rs.close('n3');
  for (const ext of ['', '-wal', '-shm']) rmSync(rs.file('n3') + ext, { force: true });
  rs.app('n2').exec("CREATE TABLE pend(id INTEGER PRIMARY KEY, v TEXT); INSERT INTO pend VALUES (1, 'x');");
  while (rs.node('n2').applier.stampLocal().logRows > 0) { /* stamp */ }
  const snap = path.join(rs.dir, 'n2.unordered.db');
  await assert.rejects(copySnapshot({ dbFile: rs.file('n2'), outFile: snap, shards: 4, busyTimeoutMs: 1000, orderedSchema: true }),
    /has schema changes the schema stream has not ordered yet \(1 own schema entry not folded back/);
  // Taken anyway (as a snapshot of an older burrow could be): n3 gets pend before the cluster has it and writes it.
  await copySnapshot({ dbFile: rs.file('n2'), outFile: snap, shards: 4, busyTimeoutMs: 1000 });
  const n3 = await rs.open('n3');
  await mergeSnapshot(n3, snap, { nodeId: 'n3', cluster: 't', shards: 4, log: silentLogger });
  rs.app('n3').exec("INSERT INTO pend VALUES (2, 'from n3')");
  const early = rs.publish('n3');
  const out = rs.deliver('n1', early);
  assert.ok(out.every((o) => o.kind === 'applied'));
  assert.equal(rs.node('n1').applier.waitingCount(), 1, 'n1 has no table pend yet: the change waits, it is not dropped');
  rs.deliver('n2', early);
  rs.sync(); // n2's entry goes out: pend reaches n1, the change applies
  assertSame(rs, ['pend']);
  assert.deepEqual(rs.app('n1').prepare('SELECT id, v FROM pend ORDER BY id').raw(true).all(), [[1n, 'x'], [2n, 'from n3']]);
}));

test('DDL an application ran on a wiped node before its restore finished goes out after it, renumbered, with later DDL in order (chaos seed 606)', () => withReplicas(['n1', 'n2', 'n3'], async (rs) => {
  // n3's first life: two entries of its own, folded everywhere.
  rs.app('n3').exec('CREATE TABLE a3(id INTEGER PRIMARY KEY)');
  rs.sync();
  rs.app('n3').exec('CREATE TABLE b3(id INTEGER PRIMARY KEY)');
  rs.sync();
  await rs.close('n3');
  for (const ext of ['', '-wal', '-shm']) rmSync(rs.file('n3') + ext, { force: true });
  while (rs.node('n2').applier.stampLocal().logRows > 0) { /* stamp */ }
  const snap = path.join(rs.dir, 'n2.for-n3.db');
  await copySnapshot({ dbFile: rs.file('n2'), outFile: snap, shards: 4, busyTimeoutMs: 1000 });
  // The empty n3 starts; the application creates a table with rows before the restore is done.
  const n3 = await rs.open('n3');
  rs.app('n3').exec("CREATE TABLE t(id INTEGER PRIMARY KEY, a TEXT); INSERT INTO t VALUES (1, 'x'), (2, 'y');");
  while (n3.applier.stampLocal().logRows > 0) { /* stamp */ }
  assert.deepEqual(n3.schema!.store.pendingOwn().map((p) => p.n), [1], 'numbered 1 again: this replica does not know its old numbers yet');
  await mergeSnapshot(n3, snap, { nodeId: 'n3', cluster: 't', shards: 4, log: silentLogger });
  // Then the application renames a column of it.
  rs.app('n3').exec('ALTER TABLE t RENAME COLUMN a TO label');
  while (n3.applier.stampLocal().logRows > 0) { /* stamp */ }
  assert.ok(n3.schema!.store.pendingOwn().every((p) => p.n > 2), `numbered above the snapshot's 2: ${n3.schema!.store.pendingOwn().map((p) => p.n).join()}`);
  rs.sync();
  assertSame(rs, ['t', 'a3', 'b3']);
  assert.deepEqual(rs.dump('n1', 't').length, 2, 'the rows n3 wrote before its restore are everywhere');
  assert.ok(schemaOf(rs, 'n1').some((o) => o.includes('label TEXT')), schemaOf(rs, 'n1').join(' | '));
  for (const id of rs.ids) assert.equal(rs.node(id).schema!.store.conflictCount(), 0, `${id}: no conflict`);
}));

test('unpublished own entries whose numbers the stream already folded are all numbered again above it, in their order (chaos seed 505)', () => withReplicas(['n1'], (rs) => {
  for (const t of ['t1', 't2', 't3']) {
    rs.app('n1').exec(`CREATE TABLE ${t}(id INTEGER PRIMARY KEY)`);
    while (rs.node('n1').applier.stampLocal().logRows > 0) { /* stamp */ }
  }
  const store = rs.node('n1').schema!.store;
  const order = () => store.pendingOwn().map((p) => `${p.n}:${p.entry.n}:${p.entry.ops[0]!.name}`);
  assert.deepEqual(order(), ['1:1:t1', '2:2:t2', '3:3:t3']);
  assert.deepEqual(store.renumberUnpublishedAbove(0), [], 'no collision: nothing moves');
  assert.deepEqual(store.renumberUnpublishedAbove(2).sort(), ['t1', 't2', 't3']);
  assert.deepEqual(order(), ['4:4:t1', '5:5:t2', '6:6:t3'], 'all of them, above 3 (the highest number used), in order');
}));

test('an entry of this node\'s earlier life folded while later ones wait: they are numbered again above it in their order, their rows sent again', () => withReplicas(['n1', 'n2'], (rs) => {
  // The stream holds n1's entry 1 from before its database was replaced (another table).
  rs.schemaLog.push(encodeSchemaEntry({ v: schemaEntryVersion, o: 'n1', n: 1, q: 0, ops: [{ type: 'table', name: 'old', tbl: 'old', from: null, to: 'CREATE TABLE old(id INTEGER PRIMARY KEY)' }] }));
  rs.app('n1').exec("CREATE TABLE t(id INTEGER PRIMARY KEY, a TEXT); INSERT INTO t VALUES (1, 'x');");
  rs.node('n1').applier.stampLocal();
  rs.app('n1').exec("ALTER TABLE t ADD COLUMN c TEXT DEFAULT 'd'; UPDATE t SET c = 'new';");
  rs.node('n1').applier.stampLocal();
  const early = rs.publish('n1'); // stamped under entry numbers the stream already has
  const store = rs.node('n1').schema!.store;
  assert.deepEqual(store.pendingOwn().map((p) => p.n), [1, 2]);
  rs.deliverSchema('n1');
  assert.deepEqual(store.pendingOwn().map((p) => `${p.n}:${p.entry.ops[0]!.to?.includes(' c ') ? 'add' : 'create'}`), ['3:create', '4:add'], 'above every number used, CREATE before ADD COLUMN');
  rs.deliver('n2', early);
  rs.sync();
  assertSame(rs, ['t']);
  assert.deepEqual(rs.app('n2').prepare('SELECT id, a, c FROM t').raw(true).all(), [[1n, 'x', 'new']]);
  for (const id of rs.ids) assert.equal(rs.node(id).schema!.store.conflictCount(), 0, `${id}: no conflict`);
}));

test('a column renamed by a node that did not have the index yet: the index follows the rename everywhere (R rewrites dependents as SQLite does)', () => withReplicas(['n1', 'n2', 'n3'], (rs) => {
  rs.app('n1').exec("CREATE TABLE t(id INTEGER PRIMARY KEY, a TEXT); INSERT INTO t VALUES (1, 'x'), (2, 'y');");
  rs.sync();
  // n1's index is ordered first, but n2 renames the column before it has the index.
  rs.app('n1').exec('CREATE INDEX t_a ON t(a)');
  assert.equal(rs.publishSchema('n1'), 1);
  rs.app('n2').exec('ALTER TABLE t RENAME COLUMN a TO label');
  assert.equal(rs.publishSchema('n2'), 1);
  rs.sync();
  assertSame(rs, ['t']);
  for (const id of rs.ids) assert.ok(schemaOf(rs, id).includes('index t_a t: CREATE INDEX t_a ON t(label)'), `${id}: ${schemaOf(rs, id).join(' | ')}`);
  assert.equal(rs.node('n1').schema!.store.replicated().get('index\u0000t_a')?.sql, 'CREATE INDEX t_a ON t(label)', 'R follows the rename');
  // A later rebuild that drops the index (as its old table goes) is no conflict.
  rs.app('n3').exec(`BEGIN; CREATE TABLE t_new(id INTEGER PRIMARY KEY, label TEXT NOT NULL DEFAULT '', c TEXT);
    INSERT INTO t_new(id, label) SELECT id, label FROM t; DROP TABLE t; ALTER TABLE t_new RENAME TO t; COMMIT;`);
  rs.sync();
  assertSame(rs, ['t']);
  for (const id of rs.ids) assert.equal(rs.node(id).schema!.store.conflictCount(), 0, `${id}: no conflict`);
  assert.equal(rs.dump('n1', 't').length, 2);
}));

test('a change made with an index of its origin\'s own, before a column rename from elsewhere was ordered: its value follows the rename (chaos seed 202)', () => withReplicas(['n1', 'n2', 'n3'], (rs) => {
  rs.app('n1').exec("CREATE TABLE t(id INTEGER PRIMARY KEY, a TEXT); INSERT INTO t VALUES (1, 'x'), (2, 'y');");
  rs.sync();
  // n1's row is made while its own index on t is unordered; n2's rename of the column is ordered first.
  rs.app('n1').exec("CREATE INDEX t_a ON t(a); INSERT INTO t VALUES (3, 'c');");
  const late = rs.publish('n1');
  rs.app('n2').exec('ALTER TABLE t RENAME COLUMN a TO label');
  assert.equal(rs.publishSchema('n2'), 1);
  assert.equal(rs.publishSchema('n1'), 1);
  for (const id of rs.ids) rs.deliverSchema(id);
  for (const id of ['n2', 'n3']) rs.deliver(id, late);
  rs.sync();
  assertSame(rs, ['t']);
  for (const id of rs.ids) assert.deepEqual(rs.app(id).prepare('SELECT id, label FROM t ORDER BY id').raw(true).all(), [[1n, 'x'], [2n, 'y'], [3n, 'c']], id);
}));

test('a table its origin dropped and created again in entries of its own: changes to the new table are not dropped with the old one', () => withReplicas(['n1', 'n2'], (rs) => {
  rs.app('n1').exec("CREATE TABLE t(id INTEGER PRIMARY KEY, a TEXT); INSERT INTO t VALUES (1, 'x');");
  rs.sync();
  // n2's drop of the old t is ordered first; n1 drops it too, creates a new t and writes it meanwhile.
  rs.app('n2').exec('DROP TABLE t');
  assert.equal(rs.publishSchema('n2'), 1);
  rs.app('n1').exec('DROP TABLE t');
  rs.node('n1').applier.stampLocal();
  rs.app('n1').exec("CREATE TABLE t(id INTEGER PRIMARY KEY, a TEXT, b INTEGER); INSERT INTO t VALUES (7, 'new', 1);");
  const late = rs.publish('n1');
  assert.equal(rs.publishSchema('n1'), 2);
  for (const id of rs.ids) rs.deliverSchema(id);
  rs.deliver('n2', late);
  rs.sync();
  assertSame(rs, ['t']);
  assert.deepEqual(rs.app('n2').prepare('SELECT id, a, b FROM t ORDER BY id').raw(true).all(), [[7n, 'new', 1n]]);
}));

test('a table renamed elsewhere while this node holds a view SQLite cannot rewrite: the rows move with the table (simulation seed 3)', () => withReplicas(['n1', 'n2'], (rs) => {
  rs.app('n1').exec("CREATE TABLE t(id INTEGER PRIMARY KEY, a TEXT); INSERT INTO t VALUES (1, 'x'), (2, 'y');");
  rs.sync();
  // SQLite accepts a view naming a column the table lacks; a modern ALTER TABLE RENAME then fails on it.
  rs.app('n2').exec('CREATE VIEW v AS SELECT id, label FROM t');
  rs.app('n1').exec('ALTER TABLE t RENAME TO u');
  assert.equal(rs.publishSchema('n1'), 1);
  rs.deliverSchema('n2');
  rs.sync();
  assertSame(rs, ['u']);
  assert.deepEqual(rs.app('n2').prepare('SELECT id, a FROM u ORDER BY id').raw(true).all(), [[1n, 'x'], [2n, 'y']]);
}));

test('a column rename with a view in the cluster\'s schema that does not parse: the index still follows it everywhere (simulation seed 429)', () => withReplicas(['n1', 'n2', 'n3'], (rs) => {
  rs.app('n1').exec("CREATE TABLE t(id INTEGER PRIMARY KEY, a TEXT); INSERT INTO t VALUES (1, 'x');");
  rs.sync();
  rs.app('n1').exec('CREATE INDEX t_a ON t(a)');
  assert.equal(rs.publishSchema('n1'), 1);
  rs.app('n2').exec('CREATE VIEW v AS SELECT id, label FROM t'); // names the column before it exists: SQLite accepts it
  assert.equal(rs.publishSchema('n2'), 1);
  rs.app('n3').exec('ALTER TABLE t RENAME COLUMN a TO label'); // n3 has folded neither the index nor the view
  rs.sync();
  assertSame(rs, ['t']);
  for (const id of rs.ids) assert.ok(schemaOf(rs, id).includes('index t_a t: CREATE INDEX t_a ON t(label)'), `${id}: ${schemaOf(rs, id).join(' | ')}`);
  assert.equal(rs.node('n1').schema!.store.replicated().get('index\u0000t_a')?.sql, 'CREATE INDEX t_a ON t(label)');
}));

test('an entry whose one table conflicts keeps its other tables: each table fits or conflicts on its own (simulation seed 381)', () => withReplicas(['n1', 'n2'], (rs) => {
  rs.app('n1').exec('CREATE TABLE a(id INTEGER PRIMARY KEY, x TEXT)');
  assert.equal(rs.publishSchema('n1'), 1);
  rs.app('n2').exec("CREATE TABLE a(id INTEGER PRIMARY KEY, x INTEGER); CREATE TABLE b(id INTEGER PRIMARY KEY, v TEXT); INSERT INTO b VALUES (1, 'kept');");
  rs.sync();
  assertSame(rs, ['a', 'b']);
  for (const id of rs.ids) assert.deepEqual(rs.app(id).prepare('SELECT id, v FROM b').raw(true).all(), [[1n, 'kept']], id);
  assert.ok(schemaOf(rs, 'n2').includes('table a a: CREATE TABLE a(id INTEGER PRIMARY KEY, x TEXT)'));
  assert.equal(rs.node('n2').schema!.store.conflictCount(), 1, 'the conflict on a is recorded');
}));

test('a node whose own copy of a table has columns added beyond the cluster\'s: that is an ADD COLUMN, its values kept (simulation seed 645)', () => withReplicas(['n1', 'n2'], (rs) => {
  rs.app('n1').exec("CREATE TABLE t(id INTEGER PRIMARY KEY, a TEXT); INSERT INTO t VALUES (1, 'x');");
  assert.equal(rs.publishSchema('n1'), 1);
  // n2 met the cluster with its own copy, migrated one step further (as a rolling migration would).
  rs.app('n2').exec("CREATE TABLE t(id INTEGER PRIMARY KEY, a TEXT); ALTER TABLE t ADD COLUMN c TEXT DEFAULT 'd'; INSERT INTO t VALUES (2, 'y', 'mine');");
  rs.sync();
  assertSame(rs, ['t']);
  for (const id of rs.ids) assert.deepEqual(rs.app(id).prepare('SELECT id, a, c FROM t ORDER BY id').raw(true).all(), [[1n, 'x', 'd'], [2n, 'y', 'mine']], id);
  for (const id of rs.ids) assert.equal(rs.node(id).schema!.store.conflictCount(), 0, `${id}: no conflict`);
}));

test('a table rename made before another node\'s column rename was ordered applies after it; writes under both old names arrive (simulation seed 7)', () => withReplicas(['n1', 'n2', 'n3'], (rs) => {
  rs.app('n1').exec("CREATE TABLE t(id INTEGER PRIMARY KEY, a TEXT, b INTEGER); INSERT INTO t VALUES (1, 'x', 10), (2, 'y', 20);");
  rs.sync();
  rs.app('n1').exec('ALTER TABLE t RENAME COLUMN a TO label');
  assert.equal(rs.publishSchema('n1'), 1);
  rs.app('n2').exec("UPDATE t SET b = 99 WHERE id = 1; ALTER TABLE t RENAME TO t_r; UPDATE t_r SET a = 'w' WHERE id = 2;");
  rs.sync();
  assertSame(rs, ['t_r']);
  for (const id of rs.ids) {
    assert.deepEqual(rs.app(id).prepare('SELECT id, label, b FROM t_r ORDER BY id').raw(true).all(), [[1n, 'x', 99n], [2n, 'w', 20n]], id);
    assert.equal(rs.node(id).schema!.store.conflictCount(), 0, `${id}: no conflict`);
    assert.equal(rs.node(id).applier.waitingCount(), 0, `${id}: nothing waits`);
  }
}));

test('this node\'s table rename that lost (the table was dropped and created again first): its writes under the refused name reach the old name', () => withReplicas(['n1', 'n2', 'n3'], (rs) => {
  rs.app('n1').exec("CREATE TABLE t(id INTEGER PRIMARY KEY, a TEXT); INSERT INTO t VALUES (1, 'x'), (2, 'y');");
  rs.sync();
  // n1 rebuilds t (another definition, same name): n2's rename of the old t no longer fits.
  rs.app('n1').exec("BEGIN; CREATE TABLE t_new(id INTEGER PRIMARY KEY, a TEXT, c TEXT DEFAULT 'c'); INSERT INTO t_new(id, a) SELECT id, a FROM t; DROP TABLE t; ALTER TABLE t_new RENAME TO t; COMMIT;");
  assert.equal(rs.publishSchema('n1'), 1);
  rs.app('n2').exec("ALTER TABLE t RENAME TO t_r; UPDATE t_r SET a = 'w' WHERE id = 2; INSERT INTO t_r VALUES (3, 'z');");
  rs.sync();
  assertSame(rs, ['t']);
  for (const id of rs.ids) {
    assert.deepEqual(rs.app(id).prepare('SELECT id, a FROM t ORDER BY id').raw(true).all(), [[1n, 'x'], [2n, 'w'], [3n, 'z']], id);
    assert.equal(rs.app(id).prepare("SELECT count(*) FROM sqlite_schema WHERE name = 't_r'").pluck().get(), 0n, `${id} has no t_r`);
    assert.equal(rs.node(id).applier.waitingCount(), 0, `${id}: nothing waits`);
  }
  assert.equal(rs.node('n2').schema!.store.conflictCount(), 1);
}));

test('the same table renamed on two nodes: the second rename conflicts, the loser\'s rows and writes go to the winner\'s name', () => withReplicas(['n1', 'n2', 'n3'], (rs) => {
  rs.app('n1').exec("CREATE TABLE t(id INTEGER PRIMARY KEY, a TEXT); INSERT INTO t VALUES (1, 'x'), (2, 'y');");
  rs.sync();
  rs.app('n1').exec('ALTER TABLE t RENAME TO t_x');
  assert.equal(rs.publishSchema('n1'), 1);
  rs.app('n2').exec("ALTER TABLE t RENAME TO t_r; UPDATE t_r SET a = 'w' WHERE id = 2; INSERT INTO t_r VALUES (3, 'z');");
  rs.sync();
  assertSame(rs, ['t_x']);
  for (const id of rs.ids) {
    assert.deepEqual(rs.app(id).prepare('SELECT id, a FROM t_x ORDER BY id').raw(true).all(), [[1n, 'x'], [2n, 'w'], [3n, 'z']], id);
    assert.equal(rs.app(id).prepare("SELECT count(*) FROM sqlite_schema WHERE name IN ('t', 't_r')").pluck().get(), 0n, `${id} has no t, t_r`);
    assert.equal(rs.node(id).applier.waitingCount(), 0, `${id}: nothing waits`);
  }
  assert.equal(rs.node('n2').schema!.store.conflictCount(), 1);
}));

test('an ADD COLUMN on a table another node renamed first: it conflicts, this node\'s rows and writes go to the new name', () => withReplicas(['n1', 'n2', 'n3'], (rs) => {
  rs.app('n1').exec("CREATE TABLE t(id INTEGER PRIMARY KEY, a TEXT); INSERT INTO t VALUES (1, 'x'), (2, 'y');");
  rs.sync();
  rs.app('n1').exec('ALTER TABLE t RENAME TO t_x');
  assert.equal(rs.publishSchema('n1'), 1);
  rs.app('n2').exec("ALTER TABLE t ADD COLUMN c TEXT DEFAULT 'c'; UPDATE t SET a = 'w' WHERE id = 2; INSERT INTO t(id, a) VALUES (3, 'z');");
  rs.sync();
  assertSame(rs, ['t_x']);
  for (const id of rs.ids) {
    assert.deepEqual(rs.app(id).prepare('SELECT id, a FROM t_x ORDER BY id').raw(true).all(), [[1n, 'x'], [2n, 'w'], [3n, 'z']], id);
    assert.equal(rs.app(id).prepare("SELECT count(*) FROM sqlite_schema WHERE name = 't'").pluck().get(), 0n, `${id} has no t`);
    assert.equal(rs.node(id).applier.waitingCount(), 0, `${id}: nothing waits`);
  }
  assert.equal(rs.node('n2').schema!.store.conflictCount(), 1);
}));

test('a table this node created that lost to another definition keeps its rows by column name, never with NULL keys (simulation seed 23)', () => withReplicas(['n1', 'n2'], (rs) => {
  rs.app('n1').exec("CREATE TABLE t(a INTEGER, b TEXT, v, PRIMARY KEY(a, b)); INSERT INTO t VALUES (1, 'x', 'one');");
  assert.equal(rs.publishSchema('n1'), 1);
  rs.app('n2').exec("CREATE TABLE t(a INTEGER, b TEXT, v, w TEXT DEFAULT 'd', PRIMARY KEY(a, b)); INSERT INTO t VALUES (2, 'y', 'two', 'mine');");
  rs.sync();
  assertSame(rs, ['t']);
  for (const id of rs.ids) {
    assert.deepEqual(rs.app(id).prepare('SELECT a, b, v FROM t ORDER BY a').raw(true).all(), [[1n, 'x', 'one'], [2n, 'y', 'two']], id);
  }
  assert.equal(rs.node('n2').schema!.store.conflictCount(), 1);
}));

test('a restore that takes a snapshot\'s schema further than this replica folded brings the local tables to it (they are not left behind)', () => withReplicas(['n1', 'n2'], async (rs) => {
  rs.app('n1').exec("CREATE TABLE x(id INTEGER PRIMARY KEY, a TEXT); INSERT INTO x VALUES (1, 'one');");
  rs.sync();
  // An entry n1 folds and n2 does not (n2 then restores past it: it never reads it).
  rs.app('n1').exec('ALTER TABLE x ADD COLUMN b INTEGER DEFAULT 7');
  rs.publishSchema('n1');
  rs.deliverSchema('n1');
  while (rs.node('n1').applier.stampLocal().logRows > 0) { /* stamp */ }
  const snap = path.join(rs.dir, 'n1.ahead.db');
  await copySnapshot({ dbFile: rs.file('n1'), outFile: snap, shards: 4, busyTimeoutMs: 1000 });
  const n2 = rs.node('n2');
  assert.ok(n2.schema!.store.position() < rs.node('n1').schema!.store.position());
  await mergeSnapshot(n2, snap, { nodeId: 'n2', cluster: 't', shards: 4, log: silentLogger });
  assert.equal(n2.schema!.store.position(), rs.node('n1').schema!.store.position());
  assert.deepEqual(schemaOf(rs, 'n2'), schemaOf(rs, 'n1'), 'x has column b on n2 too');
  n2.applier.stampLocal();
  assert.equal(n2.schema!.store.pendingCount(), 0, 'following R is not DDL of n2');
}));

test('a restore past a rename and a drop this replica never folded takes the table away here too (chaos seed 404)', () => withReplicas(['n1', 'n2'], async (rs) => {
  rs.app('n1').exec("CREATE TABLE t(id INTEGER PRIMARY KEY, a TEXT); INSERT INTO t VALUES (1, 'one'); CREATE TABLE keep(id INTEGER PRIMARY KEY);");
  rs.sync();
  // n1 renames t and drops it; n2 folds neither (it then restores past them).
  rs.app('n1').exec('ALTER TABLE t RENAME TO t_r');
  rs.publishSchema('n1');
  rs.deliverSchema('n1');
  rs.app('n1').exec('DROP TABLE t_r');
  rs.publishSchema('n1');
  rs.deliverSchema('n1');
  while (rs.node('n1').applier.stampLocal().logRows > 0) { /* stamp */ }
  const snap = path.join(rs.dir, 'n1.past-drop.db');
  await copySnapshot({ dbFile: rs.file('n1'), outFile: snap, shards: 4, busyTimeoutMs: 1000, orderedSchema: true });
  await mergeSnapshot(rs.node('n2'), snap, { nodeId: 'n2', cluster: 't', shards: 4, log: silentLogger });
  assert.deepEqual(schemaOf(rs, 'n2'), schemaOf(rs, 'n1'), 't is gone on n2 as on n1; keep stays');
  assert.ok(schemaOf(rs, 'n2').some((o) => o.startsWith('table keep')));
  rs.node('n2').applier.stampLocal();
  assert.equal(rs.node('n2').schema!.store.pendingCount(), 0, 'following R is not DDL of n2');
}));

test('a schema entry from a node that is not a member is rejected and recorded; nothing changes', () => withReplicas(['n1', 'n2'], (rs) => {
  rs.schemaLog.push(encodeSchemaEntry({ v: schemaEntryVersion, o: 'intruder', n: 1, ops: [{ type: 'table', name: 'evil', tbl: 'evil', from: null, to: 'CREATE TABLE evil(x)' }] }));
  rs.deliverSchema('n2');
  assert.equal(rs.app('n2').prepare("SELECT count(*) FROM sqlite_schema WHERE name = 'evil'").pluck().get(), 0n);
  assert.equal(rs.node('n2').schema!.store.conflictCount(), 1);
  assert.equal(rs.node('n2').schema!.store.position(), 1, 'the stream moves on');
}));

test('a write to a table whose own ADD COLUMN is pending, after another node\'s column rename was folded here: its value reaches the renamed column everywhere (simulation seed 74)', () => withReplicas(['n1', 'n2', 'n3'], (rs) => {
  rs.app('n1').exec("CREATE TABLE t(id INTEGER PRIMARY KEY, a TEXT); INSERT INTO t VALUES (1, 'x'), (2, 'y');");
  rs.sync();
  rs.app('n2').exec('ALTER TABLE t ADD COLUMN b INTEGER DEFAULT 0');
  rs.app('n1').exec('ALTER TABLE t RENAME COLUMN a TO label');
  assert.equal(rs.publishSchema('n1'), 1);
  rs.deliverSchema('n2'); // n2's own DDL of t is pending: t stays as it is here (column a) meanwhile
  rs.app('n2').exec("UPDATE t SET a = 'w' WHERE id = 1");
  rs.sync();
  assertSame(rs, ['t']);
  for (const id of rs.ids) assert.deepEqual(rs.app(id).prepare('SELECT id, label, b FROM t ORDER BY id').raw(true).all(), [[1n, 'w', 0n], [2n, 'y', 0n]], id);
}));

test('an index made on a column another node renamed, folded while this node\'s own DDL of the table is pending: it follows once that DDL is ordered (simulation seed 65)', () => withReplicas(['n1', 'n2'], (rs) => {
  rs.app('n1').exec("CREATE TABLE t(id INTEGER PRIMARY KEY, a TEXT); INSERT INTO t VALUES (1, 'x');");
  rs.sync();
  rs.app('n2').exec('ALTER TABLE t ADD COLUMN b INTEGER DEFAULT 0');
  rs.app('n1').exec('ALTER TABLE t RENAME COLUMN a TO label; CREATE INDEX t_label ON t(label);');
  rs.publishSchema('n1');
  rs.sync();
  assertSame(rs, ['t']);
  assert.ok(schemaOf(rs, 'n2').some((o) => o.startsWith('index t_label t: CREATE INDEX t_label ON t(label)')), schemaOf(rs, 'n2').join('\n'));
  for (const id of rs.ids) assert.equal(rs.node(id).schema!.applier.stats.localErrors, 0, `${id}: every object applied`);
}));

test('a table renamed with its index, after another node renamed the indexed column: R\'s index names the renamed table and column (simulation seed 135)', () => withReplicas(['n1', 'n2'], (rs) => {
  rs.app('n1').exec("CREATE TABLE t(id INTEGER PRIMARY KEY, a TEXT); CREATE INDEX t_a ON t(a); INSERT INTO t VALUES (1, 'x');");
  rs.sync();
  rs.app('n1').exec('ALTER TABLE t RENAME COLUMN a TO label');
  rs.publishSchema('n1');
  rs.app('n2').exec('ALTER TABLE t RENAME TO t_x'); // SQLite rewrites n2's index: ON "t_x"(a)
  rs.sync();
  assertSame(rs, ['t_x']);
  assert.ok(schemaOf(rs, 'n1').includes('index t_a t_x: CREATE INDEX t_a ON "t_x"(label)'), schemaOf(rs, 'n1').join('\n'));
  for (const id of rs.ids) assert.equal(rs.node(id).schema!.applier.stats.localErrors, 0, `${id}: every object applied`);
}));

test('this node\'s lost change moves its table to the name another node gave it: views SQLite rewrote on the way stay as the cluster has them (simulation seed 141)', () => withReplicas(['n1', 'n2'], (rs) => {
  rs.app('n1').exec("CREATE TABLE t(id INTEGER PRIMARY KEY, a TEXT); INSERT INTO t VALUES (1, 'x');");
  rs.sync();
  rs.app('n2').exec('ALTER TABLE t RENAME COLUMN a TO label');
  // n1 renames t, then makes a view naming the old name (SQLite accepts it): R keeps it so.
  rs.app('n1').exec('ALTER TABLE t RENAME TO t_x; CREATE VIEW v AS SELECT id FROM t;');
  rs.publishSchema('n1');
  rs.sync();
  assertSame(rs, ['t_x']);
  assert.ok(schemaOf(rs, 'n2').includes('view v v: CREATE VIEW v AS SELECT id FROM t'), schemaOf(rs, 'n2').join('\n'));
}));
