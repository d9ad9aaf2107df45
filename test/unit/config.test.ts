import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { membershipDiff, reloadProblem } from '../../src/config/reload.ts';
import { parseConfig, loadConfig, nodeById, type Config } from '../../src/config/config.ts';
import { ConfigError } from '../../src/util/errors.ts';

const DIR = path.resolve('/srv/burrow');
const FILE = path.join(DIR, 'cluster.toml');

const CLUSTER = `
[cluster]
name = "demo"
`;

function node(i: number, extra = ''): string {
  return `
[[nodes]]
id = "n${i}"
db = "data/n${i}/app.db"
client = "127.0.0.1:${4221 + i}"
route = "127.0.0.1:${6221 + i}"
http = "127.0.0.1:${7000 + i}"
${extra}`;
}

const THREE_NODES = CLUSTER + 'replicas = 3\n' + node(1) + node(2) + node(3);

function parse(text: string): Config {
  return parseConfig(text, FILE);
}

/** parseConfig must throw a ConfigError (exit code 2) whose message matches. */
function fails(text: string, message: RegExp): void {
  assert.throws(() => parse(text), (err: unknown) => {
    assert.ok(err instanceof ConfigError, `expected ConfigError, got ${String(err)}`);
    assert.equal(err.exitCode, 2);
    assert.equal(err.name, 'ConfigError');
    assert.match(err.message, message);
    assert.ok(!err.message.includes('\n'), 'one-line message');
    return true;
  });
}

describe('valid config', () => {
  test('a 3-node config parses with defaults', () => {
    const c = parse(THREE_NODES);
    assert.equal(c.file, FILE);
    assert.equal(c.cluster.name, 'demo');
    assert.equal(c.cluster.shards, 16);
    assert.equal(c.cluster.replicas, 3);
    assert.equal(c.cluster.replicasConfigured, 3);
    assert.equal(c.cluster.hlcSkewMsMax, 60_000);
    assert.equal(c.cluster.streamBytesMax, 1024 ** 3);
    assert.equal(c.cluster.streamAgeMaxS, 86_400);
    assert.deepEqual(c.sqlite, { synchronous: 'NORMAL', busyTimeoutMs: 200 });
    assert.equal(c.replication.batchChangesMax, 2000);
    assert.equal(c.replication.applyMessagesMax, 256);
    assert.deepEqual(c.nats, { urls: null, binary: 'nats-server' });
    assert.deepEqual(c.nodes.map((n) => n.id), ['n1', 'n2', 'n3']);
  });

  test('relative db paths resolve against the config file folder; dataDir defaults to the db folder', () => {
    const c = parse(THREE_NODES);
    const n1 = c.nodes[0]!;
    assert.equal(n1.db, path.join(DIR, 'data', 'n1', 'app.db'));
    assert.equal(n1.dataDir, path.join(DIR, 'data', 'n1'));
    assert.equal(c.nodes[2]!.db, path.join(DIR, 'data', 'n3', 'app.db'));
  });

  test('a db next to the config file gets the config folder as dataDir; explicit data resolves too', () => {
    const c = parse(CLUSTER + `
[[nodes]]
id = "a"
db = "a.db"
data = "state/a"
client = "127.0.0.1:4222"
route = "127.0.0.1:6222"
http = "127.0.0.1:7001"
[[nodes]]
id = "b"
db = "b.db"
client = "127.0.0.1:4223"
route = "127.0.0.1:6223"
http = "127.0.0.1:7002"
`);
    assert.equal(c.nodes[0]!.dataDir, path.join(DIR, 'state', 'a'));
    assert.equal(c.nodes[1]!.db, path.join(DIR, 'b.db'));
    assert.equal(c.nodes[1]!.dataDir, DIR);
  });

  test('absolute db paths are kept', () => {
    const abs = path.resolve('/var/lib/burrow/n1.db');
    const c = parse(CLUSTER + `
[[nodes]]
id = "n1"
db = ${JSON.stringify(abs)}
client = "127.0.0.1:4222"
route = "127.0.0.1:6222"
http = "127.0.0.1:7001"
`);
    assert.equal(c.nodes[0]!.db, abs);
    assert.equal(c.nodes[0]!.dataDir, path.dirname(abs));
  });

  test('addresses are parsed into host and port', () => {
    const n1 = parse(THREE_NODES).nodes[0]!;
    assert.deepEqual(n1.client, { host: '127.0.0.1', port: 4222 });
    assert.deepEqual(n1.route, { host: '127.0.0.1', port: 6222 });
    assert.deepEqual(n1.http, { host: '127.0.0.1', port: 7001 });
  });

  test('replicas are capped at the node count', () => {
    const c = parse(CLUSTER + 'replicas = 3\n' + node(1) + node(2));
    assert.equal(c.cluster.replicas, 2);
    assert.equal(c.cluster.replicasConfigured, 3);
  });

  test('explicit values override defaults; synchronous is case-insensitive', () => {
    const c = parse(`
[cluster]
name = "prod_eu-1"
shards = 64
replicas = 1
hlc_skew_ms_max = 5000
[sqlite]
synchronous = "full"
busy_timeout_ms = 100
[replication]
batch_changes_max = 10
[nats]
binary = "/opt/nats/nats-server"
` + node(1) + node(2));
    assert.equal(c.cluster.name, 'prod_eu-1');
    assert.equal(c.cluster.shards, 64);
    assert.equal(c.cluster.replicas, 1);
    assert.equal(c.cluster.hlcSkewMsMax, 5000);
    assert.equal(c.sqlite.synchronous, 'FULL');
    assert.equal(c.sqlite.busyTimeoutMs, 100);
    assert.equal(c.replication.batchChangesMax, 10);
    assert.equal(c.replication.ingestChangesMax, 20_000);
    assert.equal(c.nats.binary, '/opt/nats/nats-server');
  });

  test('[nats] urls makes client/route optional', () => {
    const c = parse(CLUSTER + `
[nats]
urls = ["nats://10.0.0.1:4222", "10.0.0.2:4222"]
[[nodes]]
id = "n1"
db = "n1/app.db"
http = "127.0.0.1:7001"
[[nodes]]
id = "n2"
db = "n2/app.db"
http = "127.0.0.1:7002"
`);
    assert.deepEqual(c.nats.urls, ['nats://10.0.0.1:4222', '10.0.0.2:4222']);
    assert.equal(c.nodes[0]!.client, null);
    assert.equal(c.nodes[0]!.route, null);
    assert.deepEqual(c.nodes[1]!.http, { host: '127.0.0.1', port: 7002 });
  });

  test('the returned config is deeply frozen', () => {
    const c = parse(THREE_NODES);
    for (const [name, obj] of Object.entries({
      config: c, cluster: c.cluster, sqlite: c.sqlite, replication: c.replication, nats: c.nats,
      nodes: c.nodes, node: c.nodes[0], client: c.nodes[0]!.client,
    })) {
      assert.ok(Object.isFrozen(obj), `${name} must be frozen`);
    }
    assert.throws(() => {
      (c.cluster as { shards: number }).shards = 1;
    }, TypeError);
    assert.equal(c.cluster.shards, 16);
  });

  test('nodeById finds a node, or names the known ids', () => {
    const c = parse(THREE_NODES);
    assert.equal(nodeById(c, 'n2').id, 'n2');
    assert.throws(() => nodeById(c, 'n9'), (err: unknown) => err instanceof ConfigError
      && /cluster\.toml: no node "n9" in \[\[nodes\]\] \(known: n1, n2, n3\)/.test(err.message));
  });
});

describe('invalid config → ConfigError naming file and key', () => {
  test('invalid TOML', () => {
    fails('[cluster\nname = "x"', /cluster\.toml: not valid TOML: /);
    fails('[cluster]\nname = ', /cluster\.toml: not valid TOML: /);
  });

  test('unknown top-level key', () => {
    fails(THREE_NODES + '\n[logging]\nlevel = "debug"\n', /cluster\.toml: logging: unknown key \(allowed here: cluster, sqlite, replication, snapshot, nats, security, nodes\)/);
    fails('shard = 3\n' + THREE_NODES, /cluster\.toml: shard: unknown key/);
  });

  test('unknown key inside [cluster]', () => {
    fails(CLUSTER + 'shard_count = 4\n' + node(1), /cluster\.toml: cluster\.shard_count: unknown key \(allowed here: name, shards,/);
  });

  test('unknown key inside [[nodes]]', () => {
    fails(CLUSTER + node(1) + node(2, 'port = 9000'), /cluster\.toml: nodes\[1\]\.port: unknown key/);
  });

  test('unknown key inside [sqlite], [replication], [nats]', () => {
    fails(THREE_NODES + '\n[sqlite]\nwal = true\n', /cluster\.toml: sqlite\.wal: unknown key/);
    fails(THREE_NODES + '\n[replication]\nbatch_size = 1\n', /cluster\.toml: replication\.batch_size: unknown key/);
    fails(THREE_NODES + '\n[nats]\nurl = "nats://x:4222"\n', /cluster\.toml: nats\.url: unknown key/);
  });

  test('missing [cluster]', () => {
    fails(node(1), /cluster\.toml: cluster: missing \(required section\)/);
  });

  test('[cluster] that is not a table', () => {
    fails('cluster = "demo"\n' + node(1), /cluster\.toml: cluster: must be a table/);
  });

  test('missing cluster.name', () => {
    fails('[cluster]\nshards = 4\n' + node(1), /cluster\.toml: cluster\.name: missing \(required\)/);
  });

  test('bad cluster.name characters', () => {
    fails('[cluster]\nname = "my cluster"\n' + node(1), /cluster\.toml: cluster\.name: "my cluster" must be 1-32 characters of A-Z a-z 0-9 _ -/);
    fails('[cluster]\nname = "a.b"\n' + node(1), /cluster\.toml: cluster\.name: "a\.b" must be/);
    fails(`[cluster]\nname = "${'x'.repeat(33)}"\n` + node(1), /cluster\.toml: cluster\.name: "x+" must be 1-32 characters/);
    fails('[cluster]\nname = ""\n' + node(1), /cluster\.toml: cluster\.name: must be a non-empty string/);
    fails('[cluster]\nname = 5\n' + node(1), /cluster\.toml: cluster\.name: must be a non-empty string, got 5/);
  });

  test('shards = 0 and shards too large', () => {
    fails(CLUSTER + 'shards = 0\n' + node(1), /cluster\.toml: cluster\.shards: must be between 1 and 1024, got 0/);
    fails(CLUSTER + 'shards = 1025\n' + node(1), /cluster\.toml: cluster\.shards: must be between 1 and 1024, got 1025/);
  });

  test('shards = "16" (a string) and a fractional value', () => {
    fails(CLUSTER + 'shards = "16"\n' + node(1), /cluster\.toml: cluster\.shards: must be an integer, got "16"/);
    fails(CLUSTER + 'shards = 1.5\n' + node(1), /cluster\.toml: cluster\.shards: must be an integer, got 1\.5/);
  });

  test('replicas out of range', () => {
    fails(CLUSTER + 'replicas = 0\n' + node(1), /cluster\.toml: cluster\.replicas: must be between 1 and 5/);
    fails(CLUSTER + 'replicas = 6\n' + node(1), /cluster\.toml: cluster\.replicas: must be between 1 and 5/);
  });

  test('duplicate node ids', () => {
    const dup = node(2).replace('id = "n2"', 'id = "n1"');
    fails(CLUSTER + node(1) + dup, /cluster\.toml: nodes\[1\]\.id: duplicate node id "n1" \(also nodes\[0\]\.id\)/);
  });

  test('bad node id', () => {
    fails(CLUSTER + node(1).replace('id = "n1"', 'id = "node 1"'), /cluster\.toml: nodes\[0\]\.id: "node 1" must be/);
    fails(CLUSTER + node(1).replace('id = "n1"\n', ''), /cluster\.toml: nodes\[0\]\.id: missing \(required\)/);
  });

  test('missing db or http', () => {
    fails(CLUSTER + node(1).replace('db = "data/n1/app.db"\n', ''), /cluster\.toml: nodes\[0\]\.db: missing \(required\)/);
    fails(CLUSTER + node(1).replace('http = "127.0.0.1:7001"\n', ''), /cluster\.toml: nodes\[0\]\.http: missing \(required\)/);
  });

  test('duplicate ports: the same client address on two nodes', () => {
    const clash = node(2).replace('client = "127.0.0.1:4223"', 'client = "127.0.0.1:4222"');
    fails(CLUSTER + node(1) + clash, /cluster\.toml: nodes\[1\]\.client: address 127\.0\.0\.1:4222 is already used by nodes\[0\]\.client/);
  });

  test('duplicate ports: the client of one node equals the route of another', () => {
    const clash = node(2).replace('client = "127.0.0.1:4223"', 'client = "127.0.0.1:6222"');
    fails(CLUSTER + node(1) + clash, /cluster\.toml: nodes\[1\]\.client: address 127\.0\.0\.1:6222 is already used by nodes\[0\]\.route/);
  });

  test('duplicate ports: one node reusing its own address', () => {
    const clash = node(1).replace('http = "127.0.0.1:7001"', 'http = "127.0.0.1:4222"');
    fails(CLUSTER + clash, /cluster\.toml: nodes\[0\]\.http: address 127\.0\.0\.1:4222 is already used by nodes\[0\]\.client/);
  });

  test('the same port on different hosts is fine', () => {
    const other = node(2).replace('127.0.0.1:4223', '10.0.0.2:4222');
    const c = parse(CLUSTER + node(1) + other + '\n[security]\nallow_insecure = true\n');
    assert.deepEqual(c.nodes[1]!.client, { host: '10.0.0.2', port: 4222 });
  });

  test('two nodes sharing a db path', () => {
    const clash = node(2).replace('data/n2/app.db', 'data/n1/app.db');
    fails(CLUSTER + node(1) + clash, /cluster\.toml: nodes\[1\]\.db: path .*app\.db is already used by nodes\[0\]\.db/);
  });

  test('bad address without a port', () => {
    fails(CLUSTER + node(1).replace('client = "127.0.0.1:4222"', 'client = "127.0.0.1"'),
      /cluster\.toml: nodes\[0\]\.client: "127\.0\.0\.1" is not a host:port address/);
    fails(CLUSTER + node(1).replace('http = "127.0.0.1:7001"', 'http = "http://127.0.0.1:7001"'),
      /cluster\.toml: nodes\[0\]\.http: "http:\/\/127\.0\.0\.1:7001" is not a host:port address/);
  });

  test('port out of range', () => {
    fails(CLUSTER + node(1).replace('route = "127.0.0.1:6222"', 'route = "127.0.0.1:70000"'),
      /cluster\.toml: nodes\[0\]\.route: "127\.0\.0\.1:70000": port must be 1-65535/);
    fails(CLUSTER + node(1).replace('route = "127.0.0.1:6222"', 'route = "127.0.0.1:0"'),
      /cluster\.toml: nodes\[0\]\.route: "127\.0\.0\.1:0": port must be 1-65535/);
  });

  test('without [nats] urls, client and route are required', () => {
    fails(CLUSTER + node(1).replace('client = "127.0.0.1:4222"\n', ''), /cluster\.toml: nodes\[0\]\.client: missing \(required\)/);
    fails(CLUSTER + node(1).replace('route = "127.0.0.1:6222"\n', ''), /cluster\.toml: nodes\[0\]\.route: missing \(required\)/);
  });

  test('empty or missing nodes', () => {
    fails('nodes = []\n' + CLUSTER, /cluster\.toml: nodes: must be one or more \[\[nodes\]\] tables/);
    fails(CLUSTER, /cluster\.toml: nodes: missing: add at least one \[\[nodes\]\] table/);
    fails('nodes = "n1"\n' + CLUSTER, /cluster\.toml: nodes: must be one or more/);
    fails('nodes = [1]\n' + CLUSTER, /cluster\.toml: nodes\[0\]: must be a table/);
  });

  test('[nats] urls not a list, empty, or not NATS URLs', () => {
    fails(THREE_NODES + '\n[nats]\nurls = "nats://10.0.0.1:4222"\n', /cluster\.toml: nats\.urls: must be a non-empty list of NATS URLs/);
    fails(THREE_NODES + '\n[nats]\nurls = []\n', /cluster\.toml: nats\.urls: must be a non-empty list/);
    fails(THREE_NODES + '\n[nats]\nurls = [4222]\n', /cluster\.toml: nats\.urls: must be a non-empty list/);
    fails(THREE_NODES + '\n[nats]\nurls = ["nats://ok:4222", "http://x:4222"]\n', /cluster\.toml: nats\.urls\[1\]: "http:\/\/x:4222" is not a NATS URL/);
  });

  test('sqlite.synchronous = "SOMETIMES"', () => {
    fails(THREE_NODES + '\n[sqlite]\nsynchronous = "SOMETIMES"\n', /cluster\.toml: sqlite\.synchronous: must be "NORMAL" or "FULL" \(or "OFF"\), got "SOMETIMES"/);
  });

  test('replication limits out of range', () => {
    fails(THREE_NODES + '\n[replication]\nbatch_bytes_max = 10\n', /cluster\.toml: replication\.batch_bytes_max: must be between 1024 and 8388608, got 10/);
    fails(THREE_NODES + '\n[replication]\nrow_bytes_max = 8388608\n', /cluster\.toml: replication\.row_bytes_max: must be between 1024 and 7340032, got 8388608/);
    assert.equal(parseConfig(THREE_NODES, '/x/cluster.toml').replication.rowBytesMax, 4 * 1024 * 1024);
  });

  test('the message names the file passed in', () => {
    assert.throws(() => parseConfig('[cluster]\n', '/etc/other/burrow.toml'), /^ConfigError: \/etc\/other\/burrow\.toml: cluster\.name: missing/);
  });
});

describe('loadConfig', () => {
  test('reads a file and resolves paths against its folder', () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'burrow-config-'));
    try {
      const file = path.join(dir, 'cluster.toml');
      writeFileSync(file, THREE_NODES);
      const c = loadConfig(file);
      assert.equal(c.file, file);
      assert.equal(c.nodes[0]!.db, path.join(dir, 'data', 'n1', 'app.db'));
      assert.equal(c.nodes[0]!.dataDir, path.join(dir, 'data', 'n1'));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('a missing file → ConfigError naming the file', () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'burrow-config-'));
    try {
      const file = path.join(dir, 'nope.toml');
      assert.throws(() => loadConfig(file), (err: unknown) => {
        assert.ok(err instanceof ConfigError);
        assert.equal(err.exitCode, 2);
        assert.ok(err.message.startsWith(`${file}: cannot read config file (ENOENT)`), err.message);
        return true;
      });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('errors in a loaded file name its path', () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'burrow-config-'));
    try {
      const file = path.join(dir, 'cluster.toml');
      writeFileSync(file, CLUSTER + 'shards = 0\n' + node(1));
      assert.throws(() => loadConfig(file), (err: unknown) => err instanceof ConfigError
        && err.message === `${file}: cluster.shards: must be between 1 and 1024, got 0`);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

test('cluster.stream_age_max_s: set, and out of range names the key and file', () => {
  assert.equal(parse(THREE_NODES.replace('[cluster]\n', '[cluster]\nstream_age_max_s = 3600\n')).cluster.streamAgeMaxS, 3600);
  fails(THREE_NODES.replace('[cluster]\n', '[cluster]\nstream_age_max_s = 5\n'), /cluster\.stream_age_max_s/);
});

test('cluster.history_s: at least twice the stream age, by default a week or that', () => {
  const withCluster = (lines: string) => THREE_NODES.replace('[cluster]\n', `[cluster]\n${lines}\n`);
  assert.equal(parse(THREE_NODES).cluster.historyS, 7 * 86_400);
  assert.equal(parse(withCluster('stream_age_max_s = 432000')).cluster.historyS, 10 * 86_400);
  assert.equal(parse(withCluster('stream_age_max_s = 3600\nhistory_s = 7200')).cluster.historyS, 7200);
  fails(withCluster('stream_age_max_s = 3600\nhistory_s = 7199'), /cluster\.toml: cluster\.history_s: 7199 is less than twice cluster\.stream_age_max_s \(3600\)/);
});

describe('[snapshot] and reload rules', () => {
  test('defaults, values, and bounds', () => {
    assert.deepEqual(parse(THREE_NODES).snapshot, { intervalS: 3600, keep: 3 });
    assert.deepEqual(parse(THREE_NODES + '\n[snapshot]\ninterval_s = 0\nkeep = 10\n').snapshot, { intervalS: 0, keep: 10 });
    fails(THREE_NODES + '\n[snapshot]\nkeep = 0\n', /cluster\.toml: snapshot\.keep: must be between 1 and 100, got 0/);
    fails(THREE_NODES + '\n[snapshot]\nevery = 5\n', /cluster\.toml: snapshot\.every: unknown key \(allowed here: interval_s, keep\)/);
    fails(THREE_NODES + '\n[snapshot]\ninterval_s = 100000\n', /snapshot\.interval_s: 100000 is longer than cluster\.stream_age_max_s \(86400\)/);
  });

  test('a reload may change members and [snapshot], nothing that needs a restart', () => {
    const running = parse(THREE_NODES);
    const added = parse(THREE_NODES + node(4));
    assert.equal(reloadProblem(running, added, 'n1'), null);
    assert.deepEqual(membershipDiff(running, added), { added: ['n4'], removed: [] });
    const removed = parse(CLUSTER + 'replicas = 3\n' + node(1) + node(2));
    assert.equal(reloadProblem(running, removed, 'n1'), null);
    assert.deepEqual(membershipDiff(running, removed), { added: [], removed: ['n3'] });
    assert.equal(reloadProblem(running, parse(THREE_NODES + '\n[snapshot]\nkeep = 9\n'), 'n1'), null);
    assert.match(reloadProblem(running, removed, 'n3')!, /node n3 is not in the new \[\[nodes\]\]/);
    assert.match(reloadProblem(running, parse(CLUSTER + 'shards = 8\nreplicas = 3\n' + node(1) + node(2) + node(3)), 'n1')!, /cluster\.shards changed: restart the node/);
    assert.match(reloadProblem(running, parse(THREE_NODES + '\n[sqlite]\nbusy_timeout_ms = 300\n'), 'n1')!, /sqlite changed/);
  });
});

test('the shipped configs parse: cluster.toml with signing and auth on, cluster.docker.toml with the monitoring ports', () => {
  const root = path.resolve(import.meta.dirname, '..', '..');
  const c = loadConfig(path.join(root, 'cluster.toml'));
  assert.deepEqual({ sign: c.security.sign, auth: c.security.auth }, { sign: true, auth: true });
  assert.equal(c.security.secretFile, path.join(root, 'data', 'cluster.secret'));
  const d = loadConfig(path.join(root, 'cluster.docker.toml'));
  assert.deepEqual(d.nodes.map((n) => n.natsMonitor), [{ host: 'n1', port: 8222 }, { host: 'n2', port: 8222 }, { host: 'n3', port: 8222 }]);
});
