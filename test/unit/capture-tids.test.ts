import test from 'node:test';
import assert from 'node:assert/strict';
import { Replicas } from '../helpers/replicas.ts';

// Chaos seed 404 (35511ee): a renamed table was registered under a new id before the rename was
// known; when the rename was, that registration went but its clock table stayed, and the next new
// table got the same id — its rows looked stamped already and never left the node.
test('a rename known late: the stale registration goes with its clocks; a new table\'s rows are sent', async () => {
  const rs = await Replicas.start(['n1', 'n2']);
  try {
    rs.everywhere('CREATE TABLE a(id INTEGER PRIMARY KEY, v TEXT)');
    rs.app('n1').exec("INSERT INTO a VALUES (1, 'x'), (2, 'y'), (3, 'z')");
    rs.sync();
    const n1 = rs.node('n1');
    // The rename, seen first by a refresh (a new id for b, its rows stamped under it), then known as a rename.
    rs.everywhere('ALTER TABLE a RENAME TO b');
    rs.sync();
    n1.db.writeTx(() => n1.capture.renameTable('a', 'b'));
    rs.everywhere('CREATE TABLE c(id INTEGER PRIMARY KEY, w TEXT)');
    rs.app('n1').exec("INSERT INTO c VALUES (1, 'one'), (2, 'two')");
    rs.sync();
    assert.deepEqual(rs.app('n2').prepare('SELECT id, w FROM c ORDER BY id').raw(true).all(), [[1n, 'one'], [2n, 'two']]);
  } finally {
    await rs.closeAll();
  }
});
