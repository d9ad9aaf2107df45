import assert from 'node:assert/strict';
import { test } from 'node:test';
import { decodeBatch, encodeBatch } from '../../src/codec/batch-codec.ts';
import { decodeValues, TextBytes } from '../../src/codec/value-codec.ts';
import { Replicas, type Sent } from '../helpers/replicas.ts';

/**
 * Divergences found by review (convergence issue), each reproduced on real SQLite files with the
 * real capture, stamper and applier, and outside writers. Every test fails on the code before the fix.
 */

async function withReplicas(ids: string[], fn: (rs: Replicas) => Promise<void> | void): Promise<void> {
  const rs = await Replicas.start(ids);
  try {
    await fn(rs);
  } finally {
    await rs.closeAll();
  }
}

function assertSame(rs: Replicas, table: string): string[] {
  const first = rs.dump(rs.ids[0]!, table);
  for (const id of rs.ids.slice(1)) assert.deepEqual(rs.dump(id, table), first, `${table} on ${id} differs from ${rs.ids[0]}`);
  return first;
}

test('1a: keys equal under NOCASE but different in bytes are one row: the later write wins everywhere, with its bytes', () =>
  withReplicas(['n1', 'n2'], (rs) => {
    rs.everywhere('CREATE TABLE nc(k TEXT PRIMARY KEY COLLATE NOCASE, v)');
    rs.publish('n1');
    rs.publish('n2');
    rs.app('n1').exec("INSERT INTO nc VALUES ('alpha', 'from n1')");
    const a = rs.publish('n1');
    rs.advance(5);
    rs.app('n2').exec("INSERT INTO nc VALUES ('ALPHA', 'from n2')"); // n2 did not see n1's row (down)
    const b = rs.publish('n2');
    rs.deliver('n1', b);
    rs.deliver('n2', a);
    const rows = assertSame(rs, 'nc');
    assert.equal(rows.length, 1);
    assert.equal(rs.app('n1').prepare('SELECT k || v FROM nc').pluck().get(), 'ALPHAfrom n2');
  }));

test('1b: a case-only key change under NOCASE replicates', () =>
  withReplicas(['n1', 'n2'], (rs) => {
    rs.everywhere('CREATE TABLE nc(k TEXT PRIMARY KEY COLLATE NOCASE, v)');
    rs.app('n1').exec("INSERT INTO nc VALUES ('beta', 1)");
    rs.sync();
    rs.app('n1').exec("UPDATE nc SET k = 'BETA' WHERE k = 'beta'");
    rs.sync();
    assert.equal(rs.app('n2').prepare('SELECT k FROM nc').pluck().get(), 'BETA');
    assertSame(rs, 'nc');
  }));

test('1c: an untyped key where 1 and 1.0 are one key to SQLite converges on one row', () =>
  withReplicas(['n1', 'n2'], (rs) => {
    rs.everywhere('CREATE TABLE u(k PRIMARY KEY, v)');
    rs.app('n1').exec("INSERT INTO u VALUES (1, 'int')");
    const a = rs.publish('n1');
    rs.advance(5);
    rs.app('n2').exec("INSERT INTO u VALUES (1.0, 'real')");
    const b = rs.publish('n2');
    rs.deliver('n1', b);
    rs.deliver('n2', a);
    assert.deepEqual(assertSame(rs, 'u'), [`real:${Buffer.from('1.0').toString('hex').toUpperCase()}|text:${Buffer.from('real').toString('hex').toUpperCase()}`]);
  }));

test('2: the HLC survives a restart: a node that saw a clock 20 s ahead stamps above it after restarting', async () => {
  const rs = new Replicas(['n1', 'n2']);
  try {
    await rs.open('n1');
    await rs.open('n2', 20_000); // runs 20 s ahead (allowed)
    rs.everywhere('CREATE TABLE t(id INTEGER PRIMARY KEY, v)');
    rs.app('n2').exec("INSERT INTO t VALUES (1, 'n2')");
    rs.sync();
    const seen = rs.node('n1').hlc.peek();
    await rs.close('n1');
    await rs.open('n1');
    assert.ok(rs.node('n1').hlc.peek() >= seen, 'the restarted clock starts at the highest timestamp seen before');
    rs.advance(10);
    rs.app('n1').exec("UPDATE t SET v = 'n1 after restart' WHERE id = 1");
    rs.sync();
    for (const id of rs.ids) assert.equal(rs.app(id).prepare('SELECT v FROM t').pluck().get(), 'n1 after restart', id);
  } finally {
    await rs.closeAll();
  }
});

test('2b: a change that waited for the schema advances the clock like any remote change', async () => {
  const rs = new Replicas(['n1', 'n2']);
  try {
    await rs.open('n1');
    await rs.open('n2', 20_000);
    rs.app('n2').exec('CREATE TABLE t(id INTEGER PRIMARY KEY, v)');
    rs.app('n2').exec("INSERT INTO t VALUES (1, 'n2')");
    rs.deliver('n1', rs.publish('n2')); // n1 has no table t yet: the change waits
    assert.equal(rs.node('n1').applier.waitingCount(), 1);
    rs.app('n1').exec('CREATE TABLE t(id INTEGER PRIMARY KEY, v)');
    // Restarted from a copy whose HLC mark is older (e.g. a restored backup): only the change's own clock tells.
    await rs.close('n1');
    rs.app('n1').exec("DELETE FROM __burrow_meta WHERE key = 'hlc'");
    await rs.open('n1');
    assert.equal(rs.node('n1').applier.retryWaiting(true).applied, 1);
    const stamped = decodeBatch(rs.node('n2').outbox.sentBatches([1], 1 << 20).batches[0]!).changes[0]!.h;
    assert.ok(rs.node('n1').hlc.peek() >= stamped, 'the unparked change advanced the clock');
    rs.app('n1').exec("UPDATE t SET v = 'n1' WHERE id = 1");
    rs.sync();
    for (const id of rs.ids) assert.equal(rs.app(id).prepare('SELECT v FROM t').pluck().get(), 'n1', id);
  } finally {
    await rs.closeAll();
  }
});

test('3: TEXT that is not valid UTF-8 replicates as its exact bytes, as a value and as a key; checksums see the bytes', () =>
  withReplicas(['n1', 'n2'], async (rs) => {
    rs.everywhere('CREATE TABLE b(k TEXT PRIMARY KEY, v TEXT)');
    rs.app('n1').exec("INSERT INTO b VALUES ('ok', CAST(X'C328FF00' AS TEXT)), (CAST(X'FF61' AS TEXT), 'odd key'), (CAST(X'FF62' AS TEXT), 'other')");
    rs.sync();
    assert.equal(rs.app('n2').prepare("SELECT hex(v) FROM b WHERE k = 'ok'").pluck().get(), 'C328FF00');
    rs.app('n1').exec("DELETE FROM b WHERE k = CAST(X'FF61' AS TEXT)");
    rs.sync();
    assert.deepEqual(rs.app('n2').prepare('SELECT hex(k) FROM b ORDER BY k').pluck().all(), ['6F6B', 'FF62']);
    assertSame(rs, 'b');
    const sent = rs.node('n1').outbox.sentBatches([1], 1 << 20).batches[0]!;
    const value = decodeValues(decodeBatch(sent).changes.find((c) => c.r)!.r!);
    assert.ok(value.some((v) => v instanceof TextBytes), 'the wire carries the bytes, not U+FFFD');
    // Replicas that differ only in invalid bytes have different checksums.
    const [c1, c2] = [await rs.node('n1').checksum(), await rs.node('n2').checksum()];
    assert.deepEqual(c1, c2);
    rs.node('n2').db.exec("UPDATE __burrow_state SET applying = 1; UPDATE b SET v = CAST(X'C328FE00' AS TEXT) WHERE k = 'ok'; UPDATE __burrow_state SET applying = 0");
    assert.notDeepEqual(await rs.node('n2').checksum(), c1);
  }));

test('4: NULL in a non-integer PRIMARY KEY is refused with a clear error, and an old NULL-key row is reported, never sent as a delete', () =>
  withReplicas(['n1', 'n2'], async (rs) => {
    rs.everywhere('CREATE TABLE nk(k TEXT PRIMARY KEY, v)');
    rs.publish('n1');
    assert.throws(() => rs.app('n1').exec("INSERT INTO nk VALUES (NULL, 'x')"), /burrow: NULL in PRIMARY KEY column k of table nk cannot be replicated/);
    rs.app('n1').exec("INSERT INTO nk VALUES ('a', 1)");
    assert.throws(() => rs.app('n1').exec("UPDATE nk SET k = NULL WHERE k = 'a'"), /NULL in PRIMARY KEY/);
    rs.sync();
    assertSame(rs, 'nk');
    // A NULL-key row written before burrow captured the table: reported, not replicated as anything.
    rs.app('n2').exec("CREATE TABLE old(k TEXT PRIMARY KEY, v); INSERT INTO old VALUES (NULL, 'pre-capture'), ('x', 1)");
    rs.app('n1').exec('CREATE TABLE old(k TEXT PRIMARY KEY, v)');
    const sent = rs.publish('n2');
    const changes = sent.flatMap((s) => decodeBatch(s.data).changes);
    assert.equal(changes.length, 1, 'only the row with a key is sent');
    assert.equal(changes[0]!.d, 0);
    assert.deepEqual(rs.node('n2').capture.refusedRows().map((r) => [r.table, r.rows]), [['old', 1]]);
  }));

/** n1 inserts X(1,'a'); n2, cut off, inserts Y(2,'a') then moves Y to 'b': three stamped versions. */
async function uniqueScenario(rs: Replicas): Promise<{ x: Sent[]; ya: Sent[]; yb: Sent[] }> {
  rs.everywhere('CREATE TABLE q(id INTEGER PRIMARY KEY, u TEXT UNIQUE, v)');
  rs.app('n1').exec("INSERT INTO q VALUES (1, 'a', 'X')");
  const x = rs.publish('n1');
  rs.advance(5);
  rs.app('n2').exec("INSERT INTO q VALUES (2, 'a', 'Y')");
  const ya = rs.publish('n2');
  rs.advance(5);
  rs.app('n2').exec("UPDATE q SET u = 'b' WHERE id = 2");
  const yb = rs.publish('n2');
  return { x, ya, yb };
}

test('5: a UNIQUE clash resolves the same in every arrival order (the loser is shadowed, back when the value is free)', () =>
  withReplicas(['n1', 'n2', 'n3', 'n4'], async (rs) => {
    const { x, ya, yb } = await uniqueScenario(rs);
    rs.deliver('n1', [...ya, ...yb]); // n1 sees Y(a) clash with X, then Y move away
    rs.deliver('n3', [...x, ...ya]); // X and Y(a) together…
    rs.deliver('n3', yb); // …then Y(b)
    rs.deliver('n4', [...yb, ...x, ...ya]); // Y(b) first
    rs.deliver('n2', x);
    const want = assertSame(rs, 'q');
    assert.equal(want.length, 2, 'X and Y(b) both exist: they no longer clash');
    assert.equal(rs.app('n3').prepare("SELECT v FROM q WHERE u = 'a'").pluck().get(), 'X');
    assert.ok(rs.node('n3').applier.unique.stats.restored >= 1, 'X was shadowed by Y(a) on n3 and came back');
  }));

test('5b: while the stronger version holds the value, the weaker stays out everywhere, whatever the order', () =>
  withReplicas(['n1', 'n2', 'n3'], async (rs) => {
    rs.everywhere('CREATE TABLE q(id INTEGER PRIMARY KEY, u TEXT UNIQUE, v)');
    rs.app('n1').exec("INSERT INTO q VALUES (1, 'a', 'X')");
    const x = rs.publish('n1');
    rs.advance(5);
    rs.app('n2').exec("INSERT INTO q VALUES (2, 'a', 'Y')");
    const y = rs.publish('n2');
    rs.deliver('n1', y);
    rs.deliver('n2', x);
    rs.deliver('n3', [...y, ...x]);
    assert.deepEqual(assertSame(rs, 'q').length, 1);
    assert.equal(rs.app('n1').prepare('SELECT v FROM q').pluck().get(), 'Y');
    // Y is deleted: X (shadowed, not lost) comes back on every node.
    rs.app('n3').exec('DELETE FROM q WHERE id = 2');
    rs.sync();
    assertSame(rs, 'q');
    assert.equal(rs.app('n2').prepare('SELECT v FROM q').pluck().get(), 'X');
  }));

test('6: a migration committed before a stamp pass is read inside its transaction: the batch has the new column', () =>
  withReplicas(['n1', 'n2'], (rs) => {
    rs.everywhere("CREATE TABLE m(id INTEGER PRIMARY KEY, v); INSERT INTO m VALUES (1, 'a')");
    rs.sync();
    // No schema refresh between the app's commit and the stamp (as when it lands during the wait for the lock).
    rs.app('n1').exec('ALTER TABLE m ADD COLUMN c INTEGER DEFAULT 0; UPDATE m SET c = 42 WHERE id = 1');
    const sent = rs.publish('n1');
    const b = decodeBatch(sent[0]!.data);
    assert.deepEqual(b.tables[0]!.c, ['id', 'v', 'c']);
    rs.app('n2').exec('ALTER TABLE m ADD COLUMN c INTEGER DEFAULT 0');
    rs.deliver('n2', sent);
    assert.equal(rs.app('n2').prepare('SELECT c FROM m').pluck().get(), 42n);
  }));

test('7: a table created right after a schema refresh is captured by the next stamp pass', () =>
  withReplicas(['n1', 'n2'], (rs) => {
    rs.everywhere('CREATE TABLE a(id INTEGER PRIMARY KEY)');
    rs.node('n1').applier.stampLocal();
    rs.app('n1').exec('CREATE TABLE late(id INTEGER PRIMARY KEY, v); INSERT INTO late VALUES (1, 2)');
    rs.node('n1').applier.stampLocal();
    assert.ok(rs.node('n1').capture.byName('late'));
    rs.app('n1').exec('INSERT INTO late VALUES (2, 3)');
    rs.app('n2').exec('CREATE TABLE late(id INTEGER PRIMARY KEY, v)');
    rs.sync();
    assert.equal(rs.app('n2').prepare('SELECT count(*) FROM late').pluck().get(), 2n);
  }));

test('8: rolling ADD COLUMN converges: a change without the column sets it to its DEFAULT everywhere', () =>
  withReplicas(['n1', 'n2', 'n3'], (rs) => {
    rs.everywhere("CREATE TABLE r(id INTEGER PRIMARY KEY, v); INSERT INTO r VALUES (1, 'a')");
    rs.sync();
    rs.app('n1').exec('ALTER TABLE r ADD COLUMN c INTEGER DEFAULT 0');
    rs.app('n2').exec('ALTER TABLE r ADD COLUMN c INTEGER DEFAULT 0');
    rs.app('n1').exec('UPDATE r SET c = 7 WHERE id = 1');
    rs.sync(); // n3 parks n1's change (no column c yet)
    rs.advance(5);
    rs.app('n3').exec("UPDATE r SET v = 'n3' WHERE id = 1"); // n3 not migrated: writes the row later
    rs.sync();
    rs.app('n3').exec('ALTER TABLE r ADD COLUMN c INTEGER DEFAULT 0');
    rs.node('n3').applier.stampLocal();
    rs.node('n3').applier.retryWaiting(true);
    rs.sync();
    const rows = assertSame(rs, 'r');
    assert.equal(rows.length, 1);
    assert.equal(rs.app('n1').prepare('SELECT c FROM r').pluck().get(), 0n);
  }));

test('9: a table dropped and created again between two passes is a new table: its rows and deletions replicate', () =>
  withReplicas(['n1', 'n2'], (rs) => {
    rs.everywhere('CREATE TABLE d(id INTEGER PRIMARY KEY, v)');
    rs.app('n1').exec("INSERT INTO d VALUES (1, 'old'), (3, 'old three')");
    rs.sync();
    rs.app('n1').exec("DROP TABLE d; CREATE TABLE d(id INTEGER PRIMARY KEY, v); INSERT INTO d VALUES (1, 'new'), (2, 'two')");
    rs.sync();
    assert.deepEqual(rs.app('n2').prepare('SELECT id, v FROM d ORDER BY id').raw().all(), [[1n, 'new'], [2n, 'two']]);
    assertSame(rs, 'd');
  }));

test('10: a failed apply transaction (disk full) rolls back batch numbers and never autocommits remote rows as local', () =>
  withReplicas(['n1', 'n2'], (rs) => {
    rs.everywhere('CREATE TABLE f(id INTEGER PRIMARY KEY, v BLOB)');
    rs.sync();
    rs.app('n1').exec('INSERT INTO f VALUES (1, zeroblob(100))');
    const small = rs.publish('n1');
    rs.app('n1').exec('INSERT INTO f VALUES (2, randomblob(200000))');
    const big = rs.publish('n1');
    const n2 = rs.node('n2');
    const pages = n2.db.conn.pragma('page_count', { simple: true }) as bigint;
    n2.db.conn.pragma(`max_page_count = ${Number(pages) + 2}`);
    const contiguous = () => n2.gaps.snapshot().find((o) => o.origin === 'n1')?.contiguous ?? 0;
    for (const order of [[...small, ...big], [...big, ...small]]) {
      assert.throws(() => rs.deliver('n2', order), /SQLITE_FULL|full/i);
      assert.equal(n2.db.conn.prepare('SELECT count(*) FROM __burrow_log').pluck().get(), 0n, 'nothing applied was captured as a local write');
      assert.equal(n2.db.conn.prepare('SELECT count(*) FROM f').pluck().get(), 0n);
      assert.equal(contiguous(), 0, 'both batches are still due');
    }
    n2.db.conn.pragma('max_page_count = 1073741823');
    rs.deliver('n2', [...small, ...big]);
    assert.equal(contiguous(), 2);
    assertSame(rs, 'f');
  }));

test("10b: an application trigger's RAISE(ROLLBACK) cannot make the applier autocommit remote rows; the change is dead-lettered", () =>
  withReplicas(['n1', 'n2'], (rs) => {
    rs.everywhere('CREATE TABLE p(id INTEGER PRIMARY KEY, v)');
    rs.app('n2').exec("CREATE TRIGGER app_guard BEFORE INSERT ON p WHEN NEW.v = 'poison' BEGIN SELECT RAISE(ROLLBACK, 'app says no'); END");
    rs.app('n1').exec("INSERT INTO p VALUES (1, 'poison')");
    const a = rs.publish('n1');
    rs.app('n1').exec("INSERT INTO p VALUES (2, 'fine')");
    const b = rs.publish('n1');
    rs.deliver('n2', [...a, ...b]);
    assert.equal(rs.node('n2').db.conn.prepare('SELECT count(*) FROM __burrow_log').pluck().get(), 0n, 'no remote row was captured as local');
    assert.deepEqual(rs.app('n2').prepare('SELECT id FROM p').pluck().all(), [2n]);
    assert.match(rs.app('n2').prepare('SELECT reason FROM __burrow_dead').pluck().get() as string, /rolled the whole transaction back/);
    assert.equal(rs.node('n2').gaps.snapshot().find((o) => o.origin === 'n1')!.contiguous, 2);
  }));

test('a row image whose key differs from the change key is dead-lettered, not applied', () =>
  withReplicas(['n1', 'n2'], (rs) => {
    rs.everywhere('CREATE TABLE k(id INTEGER PRIMARY KEY, v)');
    rs.app('n1').exec("INSERT INTO k VALUES (1, 'one')");
    const [s] = rs.publish('n1');
    const b = decodeBatch(s!.data);
    const forged = { ...b, changes: [{ ...b.changes[0]!, k: Buffer.from([1, 0, 0, 0, 0, 0, 0, 0, 9]) }] };
    rs.deliver('n2', [{ ...s!, data: encodeBatch(forged) }]);
    assert.equal(rs.app('n2').prepare('SELECT count(*) FROM k').pluck().get(), 0n);
    assert.match(rs.app('n2').prepare('SELECT reason FROM __burrow_dead').pluck().get() as string, /different key/);
  }));

test('INSERT OR REPLACE that deletes a row holding a UNIQUE value replicates the deletion', () =>
  withReplicas(['n1', 'n2'], (rs) => {
    rs.everywhere('CREATE TABLE o(id INTEGER PRIMARY KEY, u TEXT UNIQUE)');
    rs.app('n1').exec("INSERT INTO o VALUES (1, 'a')");
    rs.sync();
    rs.app('n1').exec("INSERT OR REPLACE INTO o VALUES (3, 'a')"); // deletes row 1, no delete trigger fires
    rs.sync();
    assert.deepEqual(rs.app('n2').prepare('SELECT id FROM o').pluck().all(), [3n]);
    assert.equal(rs.node('n2').clocks.shadowCount(rs.node('n2').capture.byName('o')!.tid), 0, 'row 1 is deleted, not shadowed');
  }));

test("a user trigger whose name only looks like burrow's under LIKE is left alone", () =>
  withReplicas(['n1'], (rs) => {
    rs.everywhere("CREATE TABLE a(id INTEGER PRIMARY KEY); CREATE TABLE audit(x); CREATE TRIGGER __burrowXtrgXaudit AFTER INSERT ON a BEGIN INSERT INTO audit VALUES (NEW.id); END");
    rs.node('n1').applier.stampLocal();
    rs.app('n1').exec('CREATE TABLE more(id INTEGER PRIMARY KEY)');
    rs.node('n1').applier.stampLocal();
    assert.equal(rs.app('n1').prepare("SELECT count(*) FROM sqlite_master WHERE name = '__burrowXtrgXaudit'").pluck().get(), 1n);
  }));

test('a row larger than row_bytes_max is kept on its node, dead-lettered with the reason and not sent; a large row under it replicates', () =>
  withReplicas(['n1', 'n2'], (rs) => {
    rs.everywhere('CREATE TABLE big(id INTEGER PRIMARY KEY, v BLOB)');
    rs.node('n1').applier.stampLocal(); // capture installs its triggers
    rs.app('n1').exec('INSERT INTO big VALUES (1, zeroblob(5000000))');
    rs.app('n1').exec('INSERT INTO big VALUES (2, randomblob(3000000))');
    rs.sync();
    assert.equal(rs.app('n2').prepare('SELECT length(v) FROM big').pluck().get(), 3000000n);
    assert.equal(rs.app('n2').prepare('SELECT count(*) FROM big').pluck().get(), 1n);
    assert.equal(rs.node('n1').stamper.oversizedRowsSkipped, 1);
    assert.match(rs.app('n1').prepare('SELECT reason FROM __burrow_dead').pluck().get() as string, /larger than replication\.row_bytes_max/);
  }));

test('a row too large to replicate that was written before capture is reported on its node, not sent', () =>
  withReplicas(['n1'], (rs) => {
    rs.app('n1').exec('CREATE TABLE pre(id INTEGER PRIMARY KEY, v BLOB); INSERT INTO pre VALUES (1, zeroblob(5000000)), (2, zeroblob(10))');
    const sent = rs.publish('n1');
    assert.equal(sent.flatMap((s) => decodeBatch(s.data).changes).length, 1);
    assert.equal(rs.node('n1').stamper.oversizedRowsSkipped, 1);
    assert.match(rs.app('n1').prepare('SELECT reason FROM __burrow_dead').pluck().get() as string, /row_bytes_max/);
  }));
