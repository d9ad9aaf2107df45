import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { TestCluster } from '../helpers/cluster.ts';

/**
 * Schema changes replicate (real 3-node cluster, real files): DDL by the sqlite3 shell, Python or
 * sqlite-utils on one node reaches every node before the data that needs it; renames keep rows;
 * a table rebuilt in one transaction ends the same everywhere; DDL made while a node's burrow is
 * down is published when it starts; `burrow schema` shows drift.
 */
const hasSqliteUtils = spawnSync('sqlite-utils', ['--version']).status === 0;

describe('schema replication (3-node cluster)', () => {
  let c: TestCluster;

  before(async () => {
    c = await TestCluster.create({ nodes: 3, shards: 4 });
    await c.start();
  });

  after(async () => {
    await c?.destroy();
  });

  const objects = (id: string) => c.query<{ type: string; name: string; sql: string }>(id,
    "SELECT type, name, sql FROM sqlite_schema WHERE sql IS NOT NULL AND name NOT LIKE '\\_\\_burrow%' ESCAPE '\\' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY type, name");
  const sameSchema = (what: string, timeoutMs = 30_000) => c.waitFor(`same schema everywhere: ${what}`, () => {
    const a = JSON.stringify(objects('n1'));
    return c.nodes.every((n) => JSON.stringify(objects(n.id)) === a);
  }, timeoutMs, 50);
  const has = (id: string, name: string) => c.query<{ n: bigint }>(id, 'SELECT count(*) AS n FROM sqlite_schema WHERE name = ?', name)[0]!.n === 1n;

  test('a table created by the sqlite3 shell on n1 is written on n2 as soon as it is there; rows converge', async () => {
    c.sqlite3('n1', "CREATE TABLE people(id INTEGER PRIMARY KEY, name TEXT NOT NULL); INSERT INTO people VALUES (1, 'ann');");
    await c.waitFor('n2 has table people', () => has('n2', 'people'), 20_000, 20);
    c.sqlite3('n2', "INSERT INTO people VALUES (2, 'bob');");
    await c.waitConverged('SELECT * FROM people ORDER BY id', 30_000);
    await sameSchema('people');
    assert.deepEqual(c.query('n3', 'SELECT id, name FROM people ORDER BY id'), [{ id: 1n, name: 'ann' }, { id: 2n, name: 'bob' }]);
  });

  test('ADD COLUMN and an UPDATE of it in one transaction (python); then rename table and column, an index and a view', async () => {
    execFileSync('python3', ['-c', `
import sqlite3
db = sqlite3.connect(${JSON.stringify(c.node('n3').db)}, timeout=10, isolation_level=None)
db.execute('BEGIN')
db.execute('ALTER TABLE people ADD COLUMN email TEXT')
db.execute("UPDATE people SET email = 'ann@x' WHERE id = 1")
db.execute('COMMIT')
`]);
    await c.waitConverged('SELECT id, name, email FROM people ORDER BY id', 30_000);
    assert.equal(c.query<{ email: string }>('n1', 'SELECT email FROM people WHERE id = 1')[0]!.email, 'ann@x');
    c.sqlite3('n2', 'ALTER TABLE people RENAME TO persons; ALTER TABLE persons RENAME COLUMN name TO full_name; CREATE INDEX persons_email ON persons(email); CREATE VIEW person_names AS SELECT full_name FROM persons;');
    await sameSchema('rename, index, view');
    await c.waitConverged('SELECT id, full_name, email FROM persons ORDER BY id', 30_000);
    assert.deepEqual(c.query('n1', 'SELECT full_name FROM person_names ORDER BY 1'), [{ full_name: 'ann' }, { full_name: 'bob' }]);
    c.sqlite3('n1', "INSERT INTO persons(id, full_name) VALUES (3, 'cy');");
    await c.waitConverged('SELECT id, full_name, email FROM persons ORDER BY id', 30_000);
  });

  test('a table rebuilt in one transaction (sqlite-utils transform) while another node writes it: same definition and rows everywhere', { skip: hasSqliteUtils ? false : 'sqlite-utils is not installed (Debian package sqlite-utils)' }, async () => {
    c.sqlite3('n1', "CREATE TABLE items(id INTEGER PRIMARY KEY, label TEXT, qty TEXT); WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 200) INSERT INTO items SELECT i, 'item ' || i, CAST(i AS TEXT) FROM n;");
    await c.waitConverged('SELECT count(*) n, sum(id) s FROM items', 30_000);
    // n2's application writes under the old column name until the new schema reaches n2 (then its
    // statement fails, as it would for any app that has not been migrated).
    let written = 0;
    const writer = (async () => {
      for (let i = 1000; i < 1040; i++) {
        try {
          c.sqlite3('n2', `INSERT INTO items(id, label) VALUES (${i}, 'from n2');`);
          written++;
        } catch {
          break;
        }
        await new Promise((r) => setTimeout(r, 10));
      }
    })();
    execFileSync('sqlite-utils', ['transform', c.node('n1').db, 'items', '--rename', 'label', 'title', '--type', 'qty', 'integer'], { encoding: 'utf8' });
    await writer;
    await sameSchema('items transformed', 60_000);
    assert.ok(objects('n3').some((o) => o.name === 'items' && /\[title\] TEXT/.test(o.sql) && /\[qty\] INTEGER/.test(o.sql)), JSON.stringify(objects('n3')));
    await c.waitConverged('SELECT id, title, qty FROM items ORDER BY id', 60_000);
    assert.equal(c.query<{ n: bigint }>('n3', 'SELECT count(*) AS n FROM items WHERE title IS NULL')[0]!.n, 0n);
    assert.ok(written > 0, 'n2 wrote under the old schema');
    assert.equal(c.query<{ n: bigint }>('n1', 'SELECT count(*) AS n FROM items')[0]!.n, BigInt(200 + written));
  });

  test('a dropped table stays dropped; created again it starts clean everywhere', async () => {
    c.sqlite3('n1', "CREATE TABLE scratch(id INTEGER PRIMARY KEY, v TEXT); INSERT INTO scratch VALUES (1, 'old');");
    await c.waitConverged('SELECT * FROM scratch', 30_000);
    c.sqlite3('n2', 'DROP TABLE scratch;');
    await c.waitFor('scratch gone everywhere', () => c.nodes.every((n) => !has(n.id, 'scratch')), 30_000, 50);
    c.sqlite3('n3', "CREATE TABLE scratch(id INTEGER PRIMARY KEY, v TEXT, extra INTEGER); INSERT INTO scratch VALUES (2, 'new', 1);");
    await sameSchema('scratch recreated');
    await c.waitConverged('SELECT * FROM scratch ORDER BY id', 30_000);
    assert.deepEqual(c.query('n1', 'SELECT id, v FROM scratch'), [{ id: 2n, v: 'new' }]);
  });

  test('DDL made while a node\'s burrow is down is published when it starts', async () => {
    await c.stopNode('n3');
    c.sqlite3('n3', "CREATE TABLE offline(id INTEGER PRIMARY KEY, v TEXT); INSERT INTO offline VALUES (1, 'made while down');");
    c.startNode('n3');
    await c.waitReady(60_000, ['n3']);
    await sameSchema('offline');
    await c.waitConverged('SELECT * FROM offline', 30_000);
    assert.equal(c.query<{ v: string }>('n1', 'SELECT v FROM offline')[0]!.v, 'made while down');
  });

  test('concurrent conflicting DDL on two nodes ends in one schema (the stream order decides, the loser is recorded); a node behind keeps writing the old shape', async () => {
    c.sqlite3('n1', "CREATE TABLE clash(id INTEGER PRIMARY KEY, v TEXT); INSERT INTO clash VALUES (1, 'one');");
    await c.waitConverged('SELECT * FROM clash', 30_000);
    // n2 is paused: its application changes the table the other way, and keeps writing the old shape.
    await c.whilePaused('n2', async () => {
      c.sqlite3('n2', "ALTER TABLE clash ADD COLUMN x INTEGER DEFAULT 7; INSERT INTO clash(id, v) VALUES (2, 'from n2');");
      c.sqlite3('n1', "ALTER TABLE clash ADD COLUMN x TEXT DEFAULT 'n1'; INSERT INTO clash VALUES (3, 'three', 'set');");
      await c.waitFor('n3 has n1\'s column', () => c.query<{ sql: string }>('n3', "SELECT sql FROM sqlite_schema WHERE name = 'clash'")[0]!.sql.includes("x TEXT DEFAULT 'n1'"), 20_000, 20);
    });
    await sameSchema('clash after the conflict');
    assert.match(objects('n2').find((o) => o.name === 'clash')!.sql, /x TEXT DEFAULT 'n1'/);
    await c.waitConverged('SELECT id, v, x FROM clash ORDER BY id', 30_000);
    assert.deepEqual(c.query('n3', 'SELECT id, x FROM clash ORDER BY id'), [{ id: 1n, x: 'n1' }, { id: 2n, x: 'n1' }, { id: 3n, x: 'set' }]);
    await c.waitFor('every node recorded the losing entry', async () => (await Promise.all(c.nodes.map((n) => c.status(n.id))))
      .every((st) => (st?.schema?.conflicts ?? 0) >= 1), 20_000, 100);
  });

  test('burrow migrate runs statements as written on every node, in order; with a node down it says so (exit 1) and that node applies it at start', async () => {
    const file = `${c.dir}/m1.sql`;
    writeFileSync(file, "CREATE TABLE settings(k TEXT PRIMARY KEY, v TEXT);\nCREATE INDEX settings_v ON settings(v);\nINSERT INTO settings VALUES ('mode', 'strict');\n");
    const ok = c.cli(['migrate', file]);
    assert.equal(ok.code, 0, ok.stdout + ok.stderr);
    assert.match(ok.stdout, /applied on all 3 nodes/);
    for (const n of c.nodes) assert.deepEqual(c.query(n.id, 'SELECT k, v FROM settings'), [{ k: 'mode', v: 'strict' }], `settings on ${n.id}`);
    await sameSchema('settings');
    await c.stopNode('n3');
    writeFileSync(file, 'ALTER TABLE settings ADD COLUMN note TEXT;\n');
    const down = c.cli(['migrate', file, '--timeout', '20']);
    assert.equal(down.code, 1, down.stdout + down.stderr);
    assert.match(down.stderr, /n3 did not answer \(a node that is down applies it when it starts\)/);
    const bad = c.cli(['migrate', `${c.dir}/missing.sql`]);
    assert.equal(bad.code, 2, bad.stderr);
    assert.match(bad.stderr, /cannot read .*missing\.sql: ENOENT/);
    c.startNode('n3');
    await c.waitReady(60_000, ['n3']);
    await sameSchema('settings.note after n3 restarted');
  });

  test('burrow schema: exit 0 when every node agrees; a schema change that cannot apply on one node is drift (exit 1, naming the table)', async () => {
    const ok = c.cli(['schema']);
    assert.equal(ok.code, 0, ok.stdout + ok.stderr);
    assert.match(ok.stdout, /all 3 nodes have the same schema/);
    assert.match(c.cli(['status']).stdout, /^n1 +ready .* schema \d+/m, 'burrow status shows the schema position');
    // n3 is paused while its application writes a duplicate; the UNIQUE index n1 creates cannot be built there.
    c.sqlite3('n1', "CREATE TABLE tags(id INTEGER PRIMARY KEY, tag TEXT); INSERT INTO tags VALUES (1, 'red');");
    await c.waitConverged('SELECT * FROM tags', 30_000);
    await c.whilePaused('n3', async () => {
      c.sqlite3('n3', "INSERT INTO tags VALUES (2, 'red');");
      c.sqlite3('n1', 'CREATE UNIQUE INDEX tags_tag ON tags(tag);');
      await c.waitFor('n2 has tags_tag', () => has('n2', 'tags_tag'), 20_000, 20);
    });
    await c.waitFor('n3 folded the index entry', async () => ((await c.status('n3'))?.schema?.fold?.localErrors ?? 0) > 0, 30_000, 100);
    const drift = c.cli(['schema']);
    assert.equal(drift.code, 1, drift.stdout + drift.stderr);
    assert.match(drift.stdout, /schema differs in: tags/);
    const j = JSON.parse(c.cli(['schema', '--json']).stdout) as { drift: string[]; driftObjects: string[] };
    assert.deepEqual(j.drift, ['tags']);
    assert.deepEqual(j.driftObjects, ['index tags_tag']);
  });

  test('a schema entry the stream acknowledged but lost is published again: the table reaches every node', async () => {
    // The next entry n1 makes is "lost by the server" (sabotage: acknowledged, never stored).
    const next = Number(c.query<{ n: bigint }>('n1', 'SELECT own_n AS n FROM __burrow_schema_state')[0]!.n) + 1;
    await c.stopNode('n1');
    c.node('n1').env = { ...c.node('n1').env, BURROW_TEST_SABOTAGE: `lose-schema-entry:${next}` };
    c.startNode('n1');
    await c.waitReady(60_000, ['n1']);
    c.sqlite3('n1', "CREATE TABLE lost_once(id INTEGER PRIMARY KEY, v TEXT); INSERT INTO lost_once VALUES (1, 'kept');");
    await c.waitFor('n2 and n3 have lost_once', () => has('n2', 'lost_once') && has('n3', 'lost_once'), 60_000, 100);
    await c.waitConverged('SELECT * FROM lost_once', 30_000);
    const st = await c.status('n1');
    assert.equal(st?.schema?.lostEntriesRepublished, 1, JSON.stringify(st?.schema));
  });
});
