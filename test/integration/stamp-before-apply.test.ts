import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import BetterSqlite3 from 'better-sqlite3';
import { TestCluster, stringify } from '../helpers/cluster.ts';
import { keyOf, publishedChanges, winners } from '../helpers/published.ts';

/**
 * n2's and n3's tailers poll only every 60 s here, so their local writes are stamped by the apply transactions
 * (stamp-before-apply) — and must still be published at once, and converge with remote writes
 * to the same rows.
 */
describe('stamp-before-apply with an idle tailer', () => {
  let c: TestCluster;

  before(async () => {
    c = await TestCluster.create({ nodes: 3, env: { n2: { BURROW_POLL_INTERVAL_MS: '60000' }, n3: { BURROW_POLL_INTERVAL_MS: '60000' } } });
    // Tables exist before the nodes start (capture is installed at start, not by a later poll).
    for (const n of c.nodes) {
      mkdirSync(path.dirname(n.db), { recursive: true });
      const d = new BetterSqlite3(n.db);
      d.exec('CREATE TABLE a(id INTEGER PRIMARY KEY, v TEXT); CREATE TABLE b(id INTEGER PRIMARY KEY, v TEXT)');
      d.close();
    }
    await c.start();
  });

  after(async () => {
    await c?.destroy();
  });

  test('a local change stamped by an apply transaction is published without waiting for the tailer', async () => {
    c.db('n2').prepare("INSERT INTO a VALUES (1, 'local on n2')").run();
    c.db('n1').prepare("INSERT INTO b VALUES (1, 'remote from n1')").run();
    // n2's write can only leave n2 through the apply transaction (of n1's change) that stamps it:
    // it arrives long before n2's tailer would run (60 s), whatever the machine's load.
    await c.waitFor('n2 has n1\'s row', () => c.query('n2', 'SELECT * FROM b').length === 1, 20_000);
    await c.waitFor('n1 has n2\'s row, well before n2\'s tailer runs', () => c.query('n1', 'SELECT * FROM a').length === 1, 20_000);
  });

  test('a local and a remote write to the same row converge to one winner everywhere', async () => {
    for (let i = 0; i < 5; i++) {
      c.db('n3').prepare('INSERT INTO a VALUES (?, ?) ON CONFLICT(id) DO UPDATE SET v = excluded.v').run(BigInt(100 + i), `n3 ${i}`);
      c.db('n1').prepare('INSERT INTO a VALUES (?, ?) ON CONFLICT(id) DO UPDATE SET v = excluded.v').run(BigInt(100 + i), `n1 ${i}`);
      c.db('n1').prepare('INSERT INTO b VALUES (?, ?) ON CONFLICT(id) DO UPDATE SET v = excluded.v').run(BigInt(100 + i), 'nudge');
    }
    await c.waitConverged('SELECT * FROM a WHERE id >= 100 ORDER BY id', 15_000);
    await c.waitDrained();
    // The winner of each row, from what was published, by a comparator of the test's own.
    const won = winners(publishedChanges(c), 'a');
    for (let i = 0; i < 5; i++) {
      const w = won.get(keyOf(BigInt(100 + i)));
      assert.ok(w && !w.deleted, `row ${100 + i} was published`);
      for (const n of c.nodes) {
        assert.deepEqual(c.query(n.id, 'SELECT v FROM a WHERE id = ?', BigInt(100 + i)), [{ v: w.row!.v }], `${n.id}: row ${100 + i} holds the winner (hlc ${w.hlc}, ${w.node})`);
      }
    }
    const clocks = c.nodes.map((n) => stringify(c.clocks(n.id, 'a')));
    assert.equal(clocks[1], clocks[0]);
    assert.equal(clocks[2], clocks[0]);
    // Each row holds the value of the node its clock names.
    for (const n of c.nodes) {
      const clock = new Map(c.clocks(n.id, 'a').map((r) => [String(r.key), r.node]));
      const rows = c.query<{ id: bigint; v: string }>(n.id, 'SELECT id, v FROM a WHERE id >= 100');
      assert.equal(rows.length, 5, n.id);
      for (const r of rows) assert.equal(r.v.split(' ')[0], clock.get(String(r.id)), `${n.id}: row ${r.id} holds the value of its clock's node`);
    }
  });
});
