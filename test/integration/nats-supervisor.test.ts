import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { TestCluster } from '../helpers/cluster.ts';

let c: TestCluster | null = null;
after(async () => {
  await c?.destroy();
});

/**
 * Found by chaos seed 101: a nats-server SIGKILLed while it was still starting made `burrow
 * start` exit (startup error) instead of starting the server again. The fake binary here kills
 * itself the first time it runs, then runs the real nats-server.
 */
test('a nats-server killed while starting is started again; the node comes up', async () => {
  const dir = path.join(os.tmpdir(), `burrow-killed-nats-${process.pid}`);
  const marker = `${dir}.first-run-done`;
  const script = `${dir}.sh`;
  writeFileSync(script, `#!/bin/sh\nif [ ! -f "${marker}" ]; then touch "${marker}"; kill -9 $$; fi\nexec nats-server "$@"\n`);
  chmodSync(script, 0o755);
  try {
    c = await TestCluster.create({ nodes: 1, replicas: 1, extraToml: `[nats]\nbinary = "${script}"\n` });
    await c.start(60_000);
    assert.ok(existsSync(marker), 'the first start was killed');
    assert.match(readFileSync(c.node('n1').logFile, 'utf8'), /nats-server was killed while starting; starting it again/);
    // The server started the second time is the one the node uses: a write goes through JetStream.
    c.db('n1').exec('CREATE TABLE t(id INTEGER PRIMARY KEY); INSERT INTO t VALUES (1)');
    await c.waitFor('the write is captured and published (acknowledged by JetStream)', async () => {
      const s = await c!.status('n1');
      return s?.capture.tables.includes('t') && s.publish?.published >= 1 && s.pending.outboxBatches === 0;
    }, 20_000);
    assert.equal((await c.status('n1')).nats.restarts, 0);
  } finally {
    for (const f of [marker, script]) rmSync(f, { force: true });
  }
});
