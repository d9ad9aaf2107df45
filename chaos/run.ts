/**
 * Chaos runner: a real cluster (each node a `burrow start` process with its embedded
 * nats-server), writer processes writing straight into every node's SQLite file, a seeded fault
 * schedule, then heal, quiesce and check the invariants (chaos/checker.ts). Exit code 1 on any
 * violation. The seed and every fault are printed with timestamps; the same seed replays the
 * same schedule.
 *
 *   npm run chaos -- --nodes 3 --duration 60 --seed 42 [--writers 2] [--rate 20] [--keys 40] [--json out.json] [--keep]
 *                    [--quiesce-timeout 300]   (s: how long nodes may take to drain after the last heal)
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, readFileSync, readdirSync, writeFileSync, openSync, closeSync } from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import BetterSqlite3 from 'better-sqlite3';
import { TestCluster, repoRoot } from '../test/helpers/cluster.ts';
import { checkRun, type FinalRows, type Violation } from './checker.ts';
import { Observer } from './observer.ts';
import { faultSchedule, type Fault } from './schedule.ts';
import { chaosSchemaSql, chaosTables, keyColumns, keyId, keyValues, type HistoryWrite } from './workload.ts';
import type { WriterArgs } from './writer.ts';
import { ddlRowsOf, DdlWorkload, schemaOf } from './ddl.ts';

export interface ChaosOptions {
  readonly nodes: number;
  readonly durationS: number;
  readonly seed: number;
  readonly writersPerNode?: number;
  readonly txPerSecond?: number;
  readonly keys?: number;
  /** TEST ONLY: run every node with LWW inverted (the checkers must fail the run); = sabotage ['invert-lww']. */
  readonly invertLww?: boolean;
  /**
   * TEST ONLY: deliberate breakage the checkers must catch: BURROW_TEST_SABOTAGE items for every
   * node (src/util/sabotage.ts), and `uncaptured-write`, done by the runner: one row committed on
   * the first node with capture switched off, a write burrow never sees.
   */
  readonly sabotage?: readonly string[];
  readonly keep?: boolean;
  readonly quiesceTimeoutMs?: number;
  /** After quiescence, how long rows may take to become identical everywhere. */
  readonly convergeTimeoutMs?: number;
  /** Schema changes during the run (chaos/ddl.ts): every `ddlEveryMs` (default 3000; 0 = none) a DDL step on a random node. */
  readonly ddlEveryMs?: number;
  readonly log?: (line: string) => void;
}

export interface FaultRecord {
  readonly atS: number;
  readonly kind: string;
  readonly detail: string;
}

export interface ChaosResult {
  readonly ok: boolean;
  readonly seed: number;
  readonly nodes: number;
  readonly durationS: number;
  readonly faults: readonly FaultRecord[];
  readonly faultCounts: Record<string, number>;
  readonly writesCommitted: number;
  readonly transactions: number;
  readonly conflictKeys: number;
  readonly lwwSkipped: number;
  readonly observedChanges: number;
  readonly restarts: number;
  readonly convergeMs: number | null;
  readonly violations: readonly Violation[];
  readonly dir: string;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export async function runChaos(opts: ChaosOptions): Promise<ChaosResult> {
  const log = opts.log ?? ((l: string) => process.stdout.write(l + '\n'));
  const writersPerNode = opts.writersPerNode ?? 2;
  const txPerSecond = opts.txPerSecond ?? 20;
  const keys = opts.keys ?? 40;
  const durationMs = opts.durationS * 1000;
  const sabotage = [...(opts.sabotage ?? []), ...(opts.invertLww ? ['invert-lww'] : [])];
  const nodeSabotage = sabotage.filter((s) => s !== 'uncaptured-write');
  const env: Record<string, string> = nodeSabotage.length > 0 ? { BURROW_TEST_SABOTAGE: nodeSabotage.join(',') } : {};
  const c = await TestCluster.create({
    nodes: opts.nodes,
    env: Object.fromEntries(Array.from({ length: opts.nodes }, (_, i) => [`n${i + 1}`, { ...env }])),
  });
  const ids = c.nodes.map((n) => n.id);
  const schedule = faultSchedule(opts.seed, ids, durationMs);
  log(`chaos: seed=${opts.seed} nodes=${opts.nodes} duration=${opts.durationS}s writers=${writersPerNode}/node rate=${txPerSecond} tx/s/writer keys=${keys}`
    + `${sabotage.length > 0 ? ` SABOTAGE(test)=${sabotage.join(',')}` : ''} dir=${c.dir}`);
  log(`chaos: schedule: ${schedule.map((f) => `${(f.atMs / 1000).toFixed(1)}s ${f.kind}(${f.targets.join(',')})`).join(' ')}`);

  for (const n of c.nodes) {
    mkdirSync(path.dirname(n.db), { recursive: true });
    const d = new BetterSqlite3(n.db);
    d.pragma('journal_mode = WAL');
    d.exec(chaosSchemaSql);
    d.close();
  }
  const faults: FaultRecord[] = [];
  const restarts: { node: string; what: string; oldPid: number | null; newPid: number | null }[] = [];
  const writers: ChildProcess[] = [];
  const writersOf = new Map<string, ChildProcess[]>();
  // If the runner exits abruptly (Ctrl-C), its writer processes go with it (by PID).
  const killWriters = () => {
    for (const w of writers) if (w.exitCode === null && w.pid) signal(w.pid, 'SIGKILL');
  };
  process.on('exit', killWriters);
  let observer: Observer | null = null;
  let t0 = Date.now();
  const at = () => (Date.now() - t0) / 1000;
  const note = (kind: string, detail: string) => {
    faults.push({ atS: Number(at().toFixed(2)), kind, detail });
    log(`[+${at().toFixed(1).padStart(6)}s] ${kind} ${detail}`);
  };
  const paused = new Set<string>();
  const ddl = new DdlWorkload();
  const bulkHistory = path.join(c.dir, 'history-bulk.jsonl');
  let bulkSeq = 0;

  const restart = (id: string, what: string, oldPid: number | null) => {
    c.startNode(id);
    restarts.push({ node: id, what, oldPid, newPid: c.node(id).pid });
    note('restart', `${id} (pid ${oldPid} → ${c.node(id).pid})`);
  };
  const isRunning = (id: string) => {
    const p = c.node(id).proc;
    return !!p && p.exitCode === null && p.signalCode === null;
  };

  try {
    await c.start(90_000);
    observer = await Observer.start(c.nodes.map((n) => n.natsUrl), c.clusterName, 16);
    t0 = Date.now();
    for (const [ni, n] of c.nodes.entries()) {
      for (let w = 0; w < writersPerNode; w++) {
        const args: WriterArgs = {
          db: n.db, node: n.id, index: w, writersPerNode, seed: opts.seed * 1000 + ni * 10 + w, txPerSecond, keys,
          history: path.join(c.dir, `history-${n.id}-w${w}.jsonl`), maxMs: durationMs + 60_000,
        };
        const fd = openSync(path.join(c.dir, `writer-${n.id}-w${w}.log`), 'a');
        const proc = spawn(process.execPath, ['--import', 'tsx', path.join(repoRoot, 'chaos', 'writer.ts'), JSON.stringify(args)],
          { stdio: ['ignore', fd, fd], cwd: repoRoot });
        writers.push(proc);
        writersOf.set(n.id, [...(writersOf.get(n.id) ?? []), proc]);
        closeSync(fd);
      }
    }
    note('workload', `${writers.length} writer processes started`);
    const ddlLoop = runDdl();

    for (const f of schedule) {
      while (Date.now() - t0 < f.atMs) await sleep(20);
      await inject(f);
    }
    while (Date.now() - t0 < durationMs) await sleep(50);
    await ddlLoop;
    await stopWriters(writers);
    note('workload', 'writers stopped');
    if (sabotage.includes('uncaptured-write')) uncapturedWrite(c.node(ids[0]!).db, keys);

    // Heal everything, then wait for quiescence and convergence.
    for (const id of paused) signal(c.node(id).pid, 'SIGCONT');
    paused.clear();
    for (const id of ids) if (!isRunning(id)) restart(id, 'final heal', c.node(id).pid);
    const healedAt = Date.now();
    note('heal', 'all nodes running; waiting for quiescence');
    let convergeMs: number | null = null;
    let notConverged: string | null = null;
    try {
      await c.waitReady(120_000);
      let lastReport = Date.now();
      await c.waitFor('every node drained and the observer caught up', async () => {
        const s = await Promise.all(ids.map((id) => c.status(id)));
        const drained = s.every((x) => x && x.ready && x.pending.logRows === 0 && x.pending.outboxBatches === 0
          && x.pending.publishInFlight === 0 && x.pending.inboundQueued === 0);
        let observerPending: number | string = -1;
        if (drained) observerPending = await observer!.pending().catch((err: unknown) => `error: ${(err as Error).message}`);
        if (Date.now() - lastReport > 5000) {
          lastReport = Date.now();
          note('waiting', `${s.map((x, i) => `${ids[i]}:${x ? `${x.ready ? 'ready' : x.phase} log=${x.pending.logRows} outbox=${x.pending.outboxBatches} `
            + `inflight=${x.pending.publishInFlight} queued=${x.pending.inboundQueued}` : 'no status'}`).join(' | ')} observer-pending=${observerPending}`);
        }
        return drained && observerPending === 0;
      }, opts.quiesceTimeoutMs ?? 300_000, 250);
      await c.waitFor('rows identical on every node', () => {
        const f = ids.map((id) => JSON.stringify([...readFinal(c, id)].map(([t, m]) => [t, [...m].sort()])));
        const d = ids.map((id) => JSON.stringify([schemaOf(c.db(id)), ddlRowsOf(c.db(id))]));
        return f.every((x) => x === f[0]) && d.every((x) => x === d[0]);
      }, opts.convergeTimeoutMs ?? 60_000, 250);
      convergeMs = Date.now() - healedAt;
      note('converged', `${convergeMs} ms after the last heal`);
    } catch (err) {
      notConverged = (err as Error).message.split('\n')[0]!;
      note('not-converged', notConverged);
    }

    // Check.
    const history = readHistory(c.dir);
    const finals = new Map(ids.map((id) => [id, readFinal(c, id)]));
    // Published = acknowledged by JetStream at least once: what the observer read, plus each node's
    // sent log (JetStream 2.9 can lose acknowledged messages after quorum kills; nodes repair those
    // gaps from the sent logs, so the observer may never have seen them).
    let fromSentLogs = 0;
    for (const id of ids) {
      for (const p of c.query<{ payload: Buffer }>(id, 'SELECT payload FROM __burrow_sent')) {
        observer.record(p.payload);
        fromSentLogs++;
      }
    }
    note('check', `observer read ${observer.changes.length} changes; ${fromSentLogs} sent-log batches added`);
    const { violations, stats } = checkRun(history, observer.changes, finals);
    const all: Violation[] = [...violations];
    // Every node ready, drained and identical within the bounds is part of passing (liveness).
    if (notConverged !== null) all.push({ kind: 'not-converged', detail: notConverged });
    if (observer.malformed > 0) all.push({ kind: 'undecodable-batch', detail: `${observer.malformed} published message(s) could not be decoded as batches` });
    // The runner's own checks have their own kinds: the checker's findings stay distinguishable.
    const schemas = ids.map((id) => JSON.stringify(schemaOf(c.db(id))));
    if (!schemas.every((x) => x === schemas[0])) all.push({ kind: 'schema-differs', detail: ids.map((id, i) => `${id}: ${schemas[i]}`).join(' | ').slice(0, 2000) });
    const ddlRows = ids.map((id) => JSON.stringify(ddlRowsOf(c.db(id))));
    if (!ddlRows.every((x) => x === ddlRows[0])) all.push({ kind: 'ddl-rows-differ', detail: ids.map((id, i) => `${id}: ${ddlRows[i]!.slice(0, 300)}`).join(' | ') });
    note('check', `schema changes: ${ddl.applied} applied, ${ddl.failed} refused (table not on that node yet, or an earlier step undone by a conflict)`);
    const sum = c.checksum();
    if (sum.code !== 0) all.push({ kind: 'checksum-differs', detail: `burrow checksum exit ${sum.code}: differing ${JSON.stringify(sum.out?.differing)}` });
    for (const r of restarts) {
      if (r.newPid === null || r.newPid === r.oldPid) all.push({ kind: 'restart-failed', detail: `restart of ${r.node} (${r.what}) did not give a new PID` });
    }
    const statuses = await Promise.all(ids.map((id) => c.status(id)));
    const lwwSkipped = statuses.reduce((a, s) => a + (s?.apply?.changesSkipped ?? 0), 0);
    const drained = statuses.every((s) => s && s.pending.logRows === 0 && s.pending.outboxBatches === 0);
    if (!drained) all.push({ kind: 'undrained', detail: `change logs not drained: ${JSON.stringify(statuses.map((s) => s?.pending))}` });
    const faultCounts: Record<string, number> = {};
    for (const f of faults) if (!['workload', 'heal', 'healed', 'killed', 'waiting', 'skipped', 'converged', 'restart', 'not-converged', 'check', 'ddl'].includes(f.kind)) faultCounts[f.kind] = (faultCounts[f.kind] ?? 0) + 1;
    const result: ChaosResult = {
      ok: all.length === 0, seed: opts.seed, nodes: opts.nodes, durationS: opts.durationS, faults, faultCounts,
      writesCommitted: history.length, transactions: new Set(history.map((h) => `${h.node}/${h.w}/${h.tx}`)).size,
      conflictKeys: stats.conflictKeys, lwwSkipped, observedChanges: stats.observedChanges, restarts: restarts.length,
      convergeMs, violations: all, dir: c.dir,
    };
    log(`chaos: ${result.ok ? 'PASS' : 'FAIL'} seed=${opts.seed} nodes=${opts.nodes} faults=${JSON.stringify(faultCounts)} `
      + `writes=${result.writesCommitted} txs=${result.transactions} conflict-keys=${result.conflictKeys} lww-skipped=${lwwSkipped} `
      + `observed=${result.observedChanges} restarts=${result.restarts} converge=${convergeMs ?? '-'}ms`);
    for (const v of all) log(`  VIOLATION ${v.kind}: ${v.detail}`);
    if (!result.ok) log(c.logs(15));
    return result;
  } finally {
    killWriters();
    process.off('exit', killWriters);
    for (const id of paused) {
      try {
        process.kill(c.node(id).pid!, 'SIGCONT');
      } catch { /* gone */ }
    }
    await observer?.stop();
    await c.destroy(opts.keep === true);
  }

  /** Schema changes on random live nodes while the writers run (seeded: the same seed, the same choices). */
  async function runDdl(): Promise<void> {
    const every = opts.ddlEveryMs ?? 3000;
    if (every <= 0) return;
    let r = (opts.seed * 2654435761) >>> 0;
    const rand = () => ((r = (Math.imul(r ^ (r >>> 15), 2246822507) + 0x9e3779b9) >>> 0) / 2 ** 32);
    while (Date.now() - t0 < durationMs - every) {
      await sleep(every * (0.5 + rand()));
      const id = ids[Math.floor(rand() * ids.length)]!;
      if (paused.has(id)) continue;
      if (ddl.apply(c.node(id).db)) note('ddl', `step ${ddl.applied} on ${id}`);
    }
  }

  async function drained(id: string, timeoutMs: number): Promise<boolean> {
    return c.waitFor(`${id} drained`, async () => {
      const s = await c.status(id);
      return !!s && s.ready && s.pending.logRows === 0 && s.pending.outboxBatches === 0 && s.pending.publishInFlight === 0;
    }, timeoutMs, 200).then(() => true, () => false);
  }

  async function inject(f: Fault): Promise<void> {
    const [a, b] = f.targets as [string, string | undefined];
    switch (f.kind) {
      case 'kill-node': {
        const pid = c.node(a).pid;
        await c.killNode(a);
        note('kill-node', `SIGKILL ${a} burrow pid ${pid} for ${f.healAfterMs} ms (its writers keep writing)`);
        await sleep(f.healAfterMs);
        restart(a, 'kill-node', pid);
        break;
      }
      case 'kill-nats': {
        // Right after a restart the pid file may still name the old server: wait for a live one.
        await c.waitFor(`${a} has a live nats-server`, () => {
          const p = c.natsPid(a);
          return p !== null && isAlive(p);
        }, 20_000).catch(() => {});
        const pid = c.natsPid(a);
        try {
          if (pid !== null) process.kill(pid, 'SIGKILL');
        } catch { /* exited meanwhile */ }
        note('kill-nats', `SIGKILL ${a} nats-server pid ${pid} (the node must start a new one)`);
        await sleep(f.healAfterMs);
        await c.waitFor(`${a} runs a new nats-server`, () => {
          const p = c.natsPid(a);
          return p !== null && p !== pid && isAlive(p);
        }, 20_000).catch(() => {});
        restarts.push({ node: a, what: 'nats-server', oldPid: pid, newPid: c.natsPid(a) });
        note('healed', `${a} nats-server pid ${pid} → ${c.natsPid(a)}`);
        break;
      }
      case 'kill-quorum': {
        const victims = [a, b!];
        const pids = victims.map((id) => ({ id, node: c.node(id).pid, nats: c.natsPid(id) }));
        for (const p of pids) {
          for (const pid of [p.nats, p.node]) {
            try {
              if (pid !== null) process.kill(pid, 'SIGKILL');
            } catch { /* gone */ }
          }
        }
        note('kill-quorum', `SIGKILL ${victims.join(' and ')} (burrow + nats-server) at once for ${f.healAfterMs} ms`);
        await Promise.all(victims.map((id) => c.killNode(id)));
        await sleep(f.healAfterMs);
        for (const p of pids) restart(p.id, 'kill-quorum', p.node);
        break;
      }
      case 'pause': {
        if (!isRunning(a)) {
          note('skipped', `pause ${a}: not running`);
          break;
        }
        process.kill(c.node(a).pid!, 'SIGSTOP');
        paused.add(a);
        note('pause', `SIGSTOP ${a} pid ${c.node(a).pid} for ${f.healAfterMs} ms`);
        await sleep(f.healAfterMs);
        signal(c.node(a).pid, 'SIGCONT');
        paused.delete(a);
        note('healed', `SIGCONT ${a}`);
        break;
      }
      case 'kill-during-apply': {
        const target = a;
        const source = b!;
        const before = (await c.status(target))?.apply?.inbound?.received ?? 0;
        const rows = 5000;
        const d = c.db(source);
        const ins = d.prepare('INSERT INTO kv_bulk(k, v) VALUES (?, ?) ON CONFLICT(k) DO UPDATE SET v = excluded.v');
        const lines: HistoryWrite[] = [];
        const tx = ++bulkSeq;
        d.transaction(() => {
          for (let i = 0; i < rows; i++) {
            const seq = bulkSeq * 100_000 + i;
            const v = `${source}/bulk/${seq}`;
            ins.run(...keyValues('kv_bulk', i), v);
            lines.push({ t: 'kv_bulk', k: keyId(keyValues('kv_bulk', i)), op: 'u', v, node: source, w: 'bulk', seq, tx, ms: 0 });
          }
        })();
        const ms = Date.now();
        writeFileSync(bulkHistory, lines.map((l) => JSON.stringify({ ...l, ms })).join('\n') + '\n', { flag: 'a' });
        note('kill-during-apply', `${source} committed ${rows} rows in one transaction; waiting for ${target} to apply`);
        const deadline = Date.now() + 5000;
        while (Date.now() < deadline) {
          const s = await c.status(target);
          if ((s?.apply?.inbound?.received ?? 0) >= before + 8) break;
          await sleep(2);
        }
        const pid = c.node(target).pid;
        await c.killNode(target);
        note('killed', `SIGKILL ${target} pid ${pid} while applying`);
        await sleep(f.healAfterMs);
        restart(target, 'kill-during-apply', pid);
        break;
      }
      case 'wipe-rejoin': {
        // A node replaced by an empty one (a lost disk): its writers stop for good (an application
        // on a wiped machine), what they committed is published first, then the database goes.
        if (!isRunning(a) || (writersOf.get(a) ?? []).length === 0) {
          note('skipped', `wipe-rejoin ${a}: not running, or already wiped`);
          break;
        }
        await stopWriters(writersOf.get(a)!);
        writersOf.set(a, []);
        if (!(await drained(a, 60_000))) {
          note('skipped', `wipe-rejoin ${a}: did not drain within 60 s (its writers stay stopped)`);
          break;
        }
        const pid = c.node(a).pid;
        await c.stopNode(a);
        c.wipeDb(a);
        note('wipe-rejoin', `${a}: writers stopped, drained, stopped, database deleted; starting it empty`);
        restart(a, 'wipe-rejoin', pid);
        await c.waitReady(120_000, [a]).then(async () => {
          const r = (await c.status(a))?.snapshots?.restore;
          note('healed', `${a} rejoined: restore ${r?.state ?? 'none'} from ${r?.snapshot ?? '-'} (${r?.changes ?? 0} changes)`);
        }, () => note('healed', `${a} not ready within 120 s after the wipe (the final heal waits longer)`));
        break;
      }
      case 'remove-readd': {
        // Membership: removed from cluster.toml (others SIGHUP'd), stopped; its writers keep writing.
        // Re-added later the same way and started: its offline writes flow, nothing was held for it.
        const others = ids.filter((id) => id !== a && isRunning(id) && !paused.has(id));
        const pid = c.node(a).pid;
        c.writeConfig(ids.filter((id) => id !== a));
        for (const id of others) c.hup(id);
        await c.stopNode(a);
        note('remove-readd', `${a} removed from cluster.toml (SIGHUP ${others.join(',')}) and stopped for ${f.healAfterMs} ms`);
        await sleep(f.healAfterMs);
        c.writeConfig(ids);
        for (const id of ids.filter((x) => x !== a && isRunning(x) && !paused.has(x))) c.hup(id);
        restart(a, 'remove-readd', pid);
        break;
      }
      case 'clock-skew': {
        const pid = c.node(a).pid;
        await c.stopNode(a);
        c.node(a).env = { ...c.node(a).env, BURROW_CLOCK_OFFSET_MS: String(f.skewMs) };
        note('clock-skew', `${a} restarted with its clock ${f.skewMs! > 0 ? '+' : ''}${f.skewMs} ms off for ${f.healAfterMs} ms`);
        restart(a, 'clock-skew', pid);
        await sleep(f.healAfterMs);
        const pid2 = c.node(a).pid;
        await c.stopNode(a);
        c.node(a).env = { ...c.node(a).env, BURROW_CLOCK_OFFSET_MS: '0' };
        restart(a, 'clock-skew heal', pid2);
        break;
      }
    }
  }
}

/** SIGTERM writer processes and wait until each has exited. */
function stopWriters(ws: readonly ChildProcess[]): Promise<unknown> {
  return Promise.all(ws.map((w) => new Promise<void>((r) => {
    if (w.exitCode !== null || w.signalCode !== null) return r();
    w.once('exit', () => r());
    w.kill('SIGTERM');
  })));
}

function signal(pid: number | null, sig: NodeJS.Signals): void {
  try {
    if (pid !== null) process.kill(pid, sig);
  } catch { /* already gone */ }
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Every node's rows of the workload tables: table → keyId → v. */
function readFinal(c: TestCluster, id: string): FinalRows {
  const out: FinalRows = new Map();
  for (const t of chaosTables) {
    const cols = keyColumns[t];
    const rows = c.db(id).prepare(`SELECT ${cols.join(', ')}, v FROM ${t}`).raw(true).all() as unknown[][];
    out.set(t, new Map(rows.map((r) => [keyId(r.slice(0, cols.length) as Parameters<typeof keyId>[0]), r[cols.length] as string])));
  }
  return out;
}

function readHistory(dir: string): HistoryWrite[] {
  const out: HistoryWrite[] = [];
  for (const f of readdirSync(dir).filter((x) => x.startsWith('history-') && x.endsWith('.jsonl'))) {
    for (const line of readFileSync(path.join(dir, f), 'utf8').split('\n')) if (line) out.push(JSON.parse(line) as HistoryWrite);
  }
  return out;
}

/**
 * TEST ONLY (sabotage uncaptured-write): one row committed with burrow's capture switched off
 * (its echo-suppression flag set in the same transaction), on a key no writer uses.
 */
function uncapturedWrite(db: string, keys: number): void {
  const d = new BetterSqlite3(db);
  try {
    d.pragma('busy_timeout = 10000');
    d.transaction(() => {
      d.prepare('UPDATE __burrow_state SET applying = 1 WHERE id = 1').run();
      d.prepare('INSERT INTO kv_int(k, v) VALUES (?, ?)').run(keys + 1_000_000, 'sabotage/uncaptured/1');
      d.prepare('UPDATE __burrow_state SET applying = 0 WHERE id = 1').run();
    }).immediate();
  } finally {
    d.close();
  }
}

async function main(): Promise<void> {
  // Ctrl-C / SIGTERM: exit through process.exit so the cluster harness kills every node and
  // nats-server it started (by PID) in its exit handler.
  for (const sig of ['SIGINT', 'SIGTERM'] as const) process.on(sig, () => process.exit(130));
  const { values } = parseArgs({
    options: {
      nodes: { type: 'string', default: '3' },
      duration: { type: 'string', default: '60' },
      seed: { type: 'string' },
      writers: { type: 'string', default: '2' },
      rate: { type: 'string', default: '20' },
      keys: { type: 'string', default: '40' },
      json: { type: 'string' },
      keep: { type: 'boolean', default: false },
      'invert-lww': { type: 'boolean', default: false },
      sabotage: { type: 'string' },
      'quiesce-timeout': { type: 'string', default: '300' },
    },
  });
  const seed = values.seed !== undefined ? Number(values.seed) : Math.floor(Math.random() * 1e6);
  const result = await runChaos({
    nodes: Number(values.nodes), durationS: Number(values.duration), seed,
    writersPerNode: Number(values.writers), txPerSecond: Number(values.rate), keys: Number(values.keys),
    keep: values.keep, invertLww: values['invert-lww'], sabotage: values.sabotage?.split(',').filter(Boolean), quiesceTimeoutMs: Number(values['quiesce-timeout']) * 1000,
  });
  if (values.json) writeFileSync(values.json, JSON.stringify(result, (_k, v) => (typeof v === 'bigint' ? v.toString() : v), 2));
  process.exitCode = result.ok ? 0 : 1;
}

if (process.argv[1] && path.resolve(process.argv[1]) === path.resolve(repoRoot, 'chaos', 'run.ts')) {
  main().catch((err) => {
    process.stderr.write(`chaos: ${(err as Error).stack ?? String(err)}\n`);
    process.exitCode = 2;
  });
}

