import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { SqliteOutbox } from '../../src/capture/outbox.ts';
import { Database } from '../../src/sqlite/database.ts';
import { internalSchemaSql } from '../../src/sqlite/internal-schema.ts';

/**
 * The sent log (__burrow_sent) keeps acknowledged batches for gap repair, bounded by age, count
 * and bytes: the oldest go first, as a prefix, and its byte total is kept without re-reading it.
 */

function withOutbox(fn: (db: Database, ob: SqliteOutbox) => void): void {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'burrow-sent-'));
  const db = Database.open(path.join(dir, 'n1.db'), { synchronous: 'NORMAL', busyTimeoutMs: 1000 });
  try {
    db.conn.exec(internalSchemaSql);
    fn(db, new SqliteOutbox(db));
  } finally {
    db.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Batches numbered `from`..`to` of `bytes` each, acknowledged (outbox → sent log). */
function sendBatches(db: Database, ob: SqliteOutbox, from: number, to: number, bytes: number): void {
  const ins = db.conn.prepare('INSERT INTO __burrow_outbox(shard, msg_id, changes, payload, bseq) VALUES (0, ?, 1, zeroblob(?), ?) RETURNING id').pluck();
  const ids = db.writeTx(() => Array.from({ length: to - from + 1 }, (_, i) => Number(ins.get(`m${from + i}`, bytes, BigInt(from + i)) as bigint)));
  ob.remove(ids);
}

const kept = (db: Database) => (db.conn.prepare('SELECT bseq FROM __burrow_sent ORDER BY bseq').pluck().all() as bigint[]).map(Number);
const exactBytes = (db: Database) => Number((db.conn.prepare('SELECT coalesce(sum(length(payload)), 0) FROM __burrow_sent').pluck().get() as bigint));

test('the sent log keeps the newest countMax batches and at most bytesMax bytes, dropping the oldest first', () => withOutbox((db, ob) => {
  sendBatches(db, ob, 1, 1200, 100);
  assert.equal(ob.sentLogBytes(), 120_000);
  assert.equal(ob.pruneSent(60_000, 1000), 200, 'by count: 1200 − 1000');
  assert.deepEqual([kept(db)[0], kept(db).length], [201, 1000]);
  assert.equal(ob.pruneSent(60_000, 1000, 50_050), 500, 'by bytes: down to 500 batches of 100 B');
  assert.deepEqual([kept(db)[0], kept(db).length], [701, 500]);
  sendBatches(db, ob, 1201, 1300, 1000);
  assert.equal(ob.sentLogBytes(), exactBytes(db), 'the byte total follows what remove adds');
  assert.equal(ob.pruneSent(60_000, 1000, 50_050), 550, 'the new, larger batches push the oldest out');
  assert.equal(ob.sentLogBytes(), exactBytes(db), 'and what pruning takes out');
  assert.ok(ob.sentLogBytes() <= 50_050);
  assert.equal(ob.pruneSent(60_000, 1000, 50_050), 0, 'within every bound: nothing more');
}));

test('the sent log drops batches older than retainMs, oldest first, and stops at the first one it keeps', () => withOutbox((db, ob) => {
  sendBatches(db, ob, 1, 10, 10);
  db.writeTx(() => db.conn.prepare('UPDATE __burrow_sent SET at_ms = at_ms - 120000 WHERE bseq <= 4 OR bseq = 7').run());
  assert.equal(ob.pruneSent(60_000, 1000), 4);
  // Batch 7 is as old, but 5 and 6 before it stay: the log is cut as a prefix, and 7 goes once they do.
  assert.deepEqual(kept(db), [5, 6, 7, 8, 9, 10]);
  assert.equal(ob.sentLogBytes(), 60);
}));

test('a fresh outbox over an existing sent log sums it once, then prunes from it', () => withOutbox((db, ob) => {
  sendBatches(db, ob, 1, 700, 10);
  const again = new SqliteOutbox(db);
  assert.equal(again.sentLogBytes(), 7000);
  assert.equal(again.pruneSent(60_000, 100), 600, '600 batches in one pass');
  assert.deepEqual([kept(db)[0], kept(db).length], [601, 100]);
  assert.equal(again.sentLogBytes(), exactBytes(db));
}));
