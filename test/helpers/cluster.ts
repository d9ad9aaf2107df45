import { spawn, spawnSync, execFileSync, type ChildProcess } from 'node:child_process';
import { ensureSecret, ensureSeed, keyFiles } from '../../src/security/keys.ts';
import { mkdirSync, mkdtempSync, openSync, closeSync, readFileSync, writeFileSync, existsSync, rmSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import BetterSqlite3 from 'better-sqlite3';
import { nodeProcessFlags } from '../../src/node/process-flags.ts';

/**
 * Test harness: a real burrow cluster — each node a `burrow start` process with its embedded
 * nats-server — on free loopback ports in a temp folder. Processes are stopped by PID; every
 * wait polls with a deadline and, on failure, throws with the tail of every node's logs.
 */
/** Clusters not destroyed yet: if the test process exits without cleanup, their processes are SIGKILLed by PID. */
const liveClusters = new Set<TestCluster>();
process.on('exit', () => {
  for (const c of liveClusters) c.killAllSync();
});

export const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const binPath = path.join(repoRoot, 'bin', 'burrow.js');

/** Ports handed out by this process: the OS may offer a just-released port again. */
const portsGiven = new Set<number>();

export async function freePort(): Promise<number> {
  for (let attempt = 0; attempt < 100; attempt++) {
    const port = await osFreePort();
    if (portsGiven.has(port)) continue;
    portsGiven.add(port);
    return port;
  }
  throw new Error('no free port found in 100 attempts');
}

function osFreePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const port = (srv.address() as net.AddressInfo).port;
      srv.close(() => resolve(port));
    });
  });
}

export interface TestNode {
  readonly id: string;
  readonly db: string;
  readonly dataDir: string;
  readonly http: string;
  /** nats://127.0.0.1:<client port> of the node's embedded nats-server. */
  readonly natsUrl: string;
  readonly logFile: string;
  proc: ChildProcess | null;
  pid: number | null;
  env: Record<string, string>;
  /** Extra Node.js flags for this node's process (e.g. --cpu-prof). */
  execArgv: string[];
}

export interface ClusterOptions {
  readonly nodes?: number;
  readonly shards?: number;
  readonly replicas?: number;
  /** Extra TOML appended to the config. */
  readonly extraToml?: string;
  /** Extra keys of the [cluster] table (TOML lines). */
  readonly clusterToml?: string;
  /** Per-node extra environment (e.g. BURROW_CLOCK_OFFSET_MS). */
  readonly env?: Record<string, Record<string, string>>;
  /** Per-node database file somewhere else (e.g. on a small filesystem); the node's data folder stays in the test folder. */
  readonly dbFile?: Record<string, string>;
  /**
   * An external NATS cluster of this many nats-servers (JetStream on) that the test starts: the
   * config gets `[nats] urls`, the nodes run no embedded server. Node i uses server i mod count.
   */
  readonly externalNats?: number;
  /**
   * [security] sign + auth with keys made like `burrow keygen` does (each node's in its folder,
   * public keys in cluster.toml); `tls`: certificate, key and CA files for clients and routes.
   */
  readonly security?: { readonly tls?: { readonly cert: string; readonly key: string; readonly ca: string } };
}

export class TestCluster {
  readonly nodes: TestNode[] = [];
  private readonly openDbs = new Map<string, BetterSqlite3.Database>();

  readonly clusterName = `t${process.pid}`;

  private constructor(readonly dir: string, readonly configFile: string) {}

  static async create(opts: ClusterOptions = {}): Promise<TestCluster> {
    const n = opts.nodes ?? 3;
    const dir = mkdtempSync(path.join(os.tmpdir(), 'burrow-test-'));
    const configFile = path.join(dir, 'cluster.toml');
    const c = new TestCluster(dir, configFile);
    let toml = `[cluster]\nname = "${c.clusterName}"\nshards = ${opts.shards ?? 16}\nreplicas = ${opts.replicas ?? 3}\n${opts.clusterToml ?? ''}\n`;
    const external = opts.externalNats ? await c.startExternalNats(opts.externalNats) : null;
    if (external) toml += `[nats]\nurls = [${external.map((u) => JSON.stringify(u)).join(', ')}]\n\n`;
    if (opts.security) {
      const t = opts.security.tls;
      toml += `[security]\nsign = true\nauth = true\nsecret_file = "cluster.secret"\n`
        + (t ? `tls_cert = ${JSON.stringify(t.cert)}\ntls_key = ${JSON.stringify(t.key)}\ntls_ca = ${JSON.stringify(t.ca)}\n` : '') + '\n';
      ensureSecret(path.join(dir, 'cluster.secret'));
    }
    for (let i = 1; i <= n; i++) {
      const id = `n${i}`;
      const [client, route, http] = [await freePort(), await freePort(), await freePort()];
      const dbFile = opts.dbFile?.[id];
      const dbToml = dbFile ? `db = ${JSON.stringify(dbFile)}\ndata = "${id}"` : `db = "${id}/app.db"`;
      const natsToml = external ? '' : `client = "127.0.0.1:${client}"\nroute = "127.0.0.1:${route}"\n`;
      const files = keyFiles(path.join(dir, id));
      const keysToml = opts.security ? `public_key = "${ensureSeed(files.sign).publicKey}"\nnats_key = "${ensureSeed(files.nats).publicKey}"\n` : '';
      c.nodeToml.set(id, `[[nodes]]\nid = "${id}"\n${dbToml}\n${natsToml}http = "127.0.0.1:${http}"\n${keysToml}\n`);
      c.nodes.push({
        id, db: dbFile ?? path.join(dir, id, 'app.db'), dataDir: path.join(dir, id), http: `http://127.0.0.1:${http}`,
        natsUrl: external ? external[(i - 1) % external.length]! : `nats://127.0.0.1:${client}`, logFile: path.join(dir, `${id}.log`), proc: null, pid: null, env: opts.env?.[id] ?? {}, execArgv: [],
      });
    }
    c.head = toml;
    c.tail = opts.extraToml ?? '';
    c.writeConfig(c.nodes.map((x) => x.id));
    return c;
  }

  /** PIDs of the external nats-servers this cluster started (stopped by PID in destroy). */
  private readonly externalPids: number[] = [];

  /** Start `count` clustered nats-servers with JetStream, each with its own store; their client URLs. */
  private async startExternalNats(count: number): Promise<string[]> {
    const ports = [];
    for (let i = 0; i < count; i++) ports.push({ client: await freePort(), route: await freePort() });
    const urls: string[] = [];
    for (const [i, p] of ports.entries()) {
      const dir = path.join(this.dir, `nats-${i + 1}`);
      mkdirSync(dir, { recursive: true });
      const routes = ports.filter((_, k) => k !== i).map((o) => `"nats-route://127.0.0.1:${o.route}"`).join(', ');
      const conf = path.join(dir, 'nats.conf');
      writeFileSync(conf, `server_name: "ext${i + 1}"\nlisten: "127.0.0.1:${p.client}"\nmax_payload: 8MB\n`
        + `jetstream { store_dir: ${JSON.stringify(path.join(dir, 'js'))} }\n`
        + `cluster { name: "ext", listen: "127.0.0.1:${p.route}", routes: [${routes}] }\n`);
      const fd = openSync(path.join(dir, 'nats.log'), 'a');
      const proc = spawn('nats-server', ['-c', conf], { cwd: dir, stdio: ['ignore', fd, fd], detached: true });
      closeSync(fd);
      if (proc.pid) this.externalPids.push(proc.pid);
      urls.push(`nats://127.0.0.1:${p.client}`);
    }
    liveClusters.add(this);
    return urls;
  }

  private head = '';
  private tail = '';
  private readonly nodeToml = new Map<string, string>();

  /** Rewrite cluster.toml with only these members (membership changes: then SIGHUP the running nodes). */
  writeConfig(ids: readonly string[], extra = ''): void {
    writeFileSync(this.configFile, this.head + ids.map((id) => this.nodeToml.get(id)!).join('') + this.tail + extra);
  }

  /** Send SIGHUP to a running node (re-read cluster.toml). */
  hup(id: string): void {
    const proc = this.node(id).proc;
    if (!proc || proc.exitCode !== null || proc.signalCode !== null) throw new Error(`${id} is not running`);
    proc.kill('SIGHUP');
  }

  /** Start every node and wait until all report ready. */
  async start(timeoutMs = 60_000): Promise<void> {
    for (const node of this.nodes) this.startNode(node.id);
    await this.waitReady(timeoutMs);
  }

  node(id: string): TestNode {
    const n = this.nodes.find((x) => x.id === id);
    if (!n) throw new Error(`no node ${id}`);
    return n;
  }

  startNode(id: string): void {
    const node = this.node(id);
    if (node.proc && node.proc.exitCode === null && node.proc.signalCode === null) throw new Error(`${id} already running`);
    const fd = openSync(node.logFile, 'a');
    const proc = spawn(process.execPath, [...nodeProcessFlags, ...node.execArgv, binPath, 'start', '--config', this.configFile, '--node', id], {
      stdio: ['ignore', fd, fd], env: { ...process.env, BURROW_LOG_LEVEL: 'info', ...node.env }, detached: true,
    });
    closeSync(fd);
    node.proc = proc;
    node.pid = proc.pid ?? null;
    liveClusters.add(this);
  }

  async waitReady(timeoutMs = 60_000, ids = this.nodes.map((n) => n.id)): Promise<void> {
    await this.waitFor(`nodes ${ids.join(',')} ready`, async () => {
      const r = await Promise.all(ids.map((id) => this.status(id).then((s) => s?.ready === true)));
      return r.every(Boolean);
    }, timeoutMs);
  }

  async status(id: string): Promise<any | null> {
    try {
      const res = await fetch(`${this.node(id).http}/status`, { signal: AbortSignal.timeout(2000) });
      return await res.json();
    } catch {
      return null;
    }
  }

  /** SIGTERM the node and wait for its exit (clean stop: flushes, stops its nats-server). */
  async stopNode(id: string, timeoutMs = 30_000): Promise<void> {
    const node = this.node(id);
    const proc = node.proc;
    if (!proc || proc.exitCode !== null || proc.signalCode !== null) return;
    const exited = new Promise<void>((r) => proc.once('exit', () => r()));
    proc.kill('SIGTERM');
    await Promise.race([exited, new Promise((_, rej) => setTimeout(() => rej(new Error(`${id} did not stop in ${timeoutMs} ms\n${this.logs()}`)), timeoutMs))]);
  }

  /** SIGKILL the node process only (its nats-server keeps running, to be adopted). */
  async killNode(id: string): Promise<void> {
    const node = this.node(id);
    const proc = node.proc;
    if (!proc || proc.exitCode !== null || proc.signalCode !== null) return;
    const exited = new Promise<void>((r) => proc.once('exit', () => r()));
    proc.kill('SIGKILL');
    await exited;
  }

  /** SIGKILL every node process and nats-server of this cluster, by PID (exit handler). */
  killAllSync(): void {
    for (const pid of this.externalPids) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch { /* gone */ }
    }
    for (const n of this.nodes) {
      for (const pid of [n.proc && n.proc.exitCode === null && n.proc.signalCode === null ? n.pid : null, this.natsPid(n.id)]) {
        if (pid === null || (pid !== n.pid && !this.ownsPid(pid))) continue;
        try {
          process.kill(pid, 'SIGKILL');
        } catch { /* gone */ }
      }
    }
  }

  /** True when `pid` is a nats-server running from this cluster's folder. */
  ownsPid(pid: number): boolean {
    try {
      const cmd = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
      return cmd.includes('nats-server') && cmd.includes(this.dir);
    } catch {
      return false;
    }
  }

  natsPid(id: string): number | null {
    const f = path.join(this.node(id).dataDir, 'nats.pid');
    if (!existsSync(f)) return null;
    const pid = Number(readFileSync(f, 'utf8').trim());
    return pid > 0 ? pid : null;
  }

  /** An outside connection (not burrow) to a node's replica, opened lazily and cached. */
  db(id: string): BetterSqlite3.Database {
    let d = this.openDbs.get(id);
    if (!d) {
      d = new BetterSqlite3(this.node(id).db, { timeout: 10_000 });
      d.defaultSafeIntegers(true);
      d.pragma('journal_mode = WAL');
      this.openDbs.set(id, d);
    }
    return d;
  }

  /** Delete a stopped node's replica (database, WAL, shared memory): it starts again with no data. */
  wipeDb(id: string): void {
    this.openDbs.get(id)?.close();
    this.openDbs.delete(id);
    for (const suffix of ['', '-wal', '-shm']) rmSync(this.node(id).db + suffix, { force: true });
  }

  /**
   * Run SQL on every node's replica, as a migration run per node: each node's copy in one
   * write transaction (burrow cannot apply between its statements). Schema changes replicate, so
   * a later node may already have the DDL from an earlier one: its copy then fails with "already
   * exists" / "duplicate column", is rolled back, and that node has what the earlier one sent.
   */
  execAll(sql: string): void {
    for (const n of this.nodes) {
      const db = this.db(n.id);
      db.exec('BEGIN IMMEDIATE');
      try {
        db.exec(sql);
        db.exec('COMMIT');
      } catch (err) {
        if (db.inTransaction) db.exec('ROLLBACK');
        if (!/already exists|duplicate column name/.test((err as Error).message)) throw err;
      }
    }
  }

  /** Run SQL through the sqlite3 shell (an outside writer that is not burrow, not even Node). */
  sqlite3(id: string, sql: string): string {
    return execFileSync('sqlite3', ['-cmd', '.timeout 10000', this.node(id).db, sql], { encoding: 'utf8' });
  }

  query<T = Record<string, unknown>>(id: string, sql: string, ...params: unknown[]): T[] {
    return this.db(id).prepare(sql).all(...params) as T[];
  }

  /**
   * The per-row clocks burrow keeps for `table` on a node (single-column keys), ordered by key:
   * the table's `__burrow_clock_<tid>` read through SQL, as an operator would.
   */
  clocks(id: string, table: string): { key: unknown; hlc: bigint; node: string; deleted: bigint; shadowed: bigint }[] {
    const tid = this.db(id).prepare('SELECT tid FROM __burrow_tables WHERE name = ?').pluck().get(table);
    if (tid === undefined) throw new Error(`${id}: ${table} is not captured`);
    return this.query(id, `SELECT k0 AS key, hlc, node, deleted, shadow IS NOT NULL AS shadowed FROM __burrow_clock_${tid} ORDER BY k0`);
  }

  /** Poll `fn` until it returns true; on timeout throw with `what` and every node's log tail. */
  async waitFor(what: string, fn: () => boolean | Promise<boolean>, timeoutMs = 20_000, intervalMs = 25): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    let lastErr: unknown = null;
    for (;;) {
      try {
        if (await fn()) return;
      } catch (err) {
        lastErr = err;
      }
      if (Date.now() > deadline) {
        throw new Error(`timed out after ${timeoutMs} ms waiting for: ${what}${lastErr ? ` (last error: ${String(lastErr)})` : ''}\n${this.logs()}`);
      }
      await new Promise((r) => setTimeout(r, intervalMs));
    }
  }

  /** Wait until every node has stamped, published and applied everything it has (status `pending` all zero). */
  /** Run `fn` while the node's burrow process is paused (SIGSTOP; its nats-server keeps running); resumed whatever happens. */
  async whilePaused<T>(id: string, fn: () => Promise<T>): Promise<T> {
    process.kill(this.node(id).pid!, 'SIGSTOP');
    try {
      return await fn();
    } finally {
      process.kill(this.node(id).pid!, 'SIGCONT');
    }
  }

  /** Every node has its schema entries ordered and has folded the schema stream as far as the others. */
  async waitSchemaSettled(timeoutMs = 30_000, ids = this.nodes.map((n) => n.id)): Promise<void> {
    await this.waitFor(`schema settled on ${ids.join(',')}`, async () => {
      const st = await Promise.all(ids.map((id) => this.status(id)));
      return st.every((s) => s?.schema && s.schema.pending === 0 && s.schema.position === st[0]!.schema.position);
    }, timeoutMs, 50);
  }

  async waitDrained(timeoutMs = 30_000, ids = this.nodes.map((n) => n.id)): Promise<void> {
    await this.waitFor(`every node drained (${ids.join(',')})`, async () => {
      const s = await Promise.all(ids.map((id) => this.status(id)));
      return s.every((x) => x && x.pending.logRows === 0 && x.pending.outboxBatches === 0 && x.pending.publishInFlight === 0 && x.pending.inboundQueued === 0);
    }, timeoutMs, 100);
  }

  /** Wait until `sql` returns the same rows (as JSON) on every node, and return them. */
  async waitConverged(sql: string, timeoutMs = 20_000, ids = this.nodes.map((n) => n.id)): Promise<unknown[]> {
    let rows: string[] = [];
    try {
      await this.waitFor(`rows of [${sql}] equal on ${ids.join(',')}`, () => {
        rows = ids.map((id) => stringify(this.query(id, sql)));
        return rows.every((r) => r === rows[0]);
      }, timeoutMs);
    } catch (err) {
      const detail = ids.map((id, i) => `${id}: ${(rows[i] ?? '').slice(0, 2000)}`).join('\n');
      throw new Error(`${(err as Error).message}\n----- rows per node -----\n${detail}`);
    }
    return JSON.parse(rows[0]!);
  }

  /** Run a `burrow` command on this cluster's config (appended), as a user would. */
  cli(args: readonly string[], timeoutMs = 120_000): { code: number | null; stdout: string; stderr: string } {
    const r = spawnSync(process.execPath, [binPath, ...args, '--config', this.configFile], { encoding: 'utf8', timeout: timeoutMs });
    return { code: r.status, stdout: r.stdout, stderr: r.stderr };
  }

  /** `burrow checksum --json` over the cluster. */
  checksum(): { code: number; out: any } {
    try {
      const out = execFileSync(process.execPath, [binPath, 'checksum', '--config', this.configFile, '--json'], { encoding: 'utf8' });
      return { code: 0, out: JSON.parse(out) };
    } catch (err) {
      const e = err as { status: number; stdout: string };
      return { code: e.status, out: e.stdout ? JSON.parse(e.stdout) : null };
    }
  }

  logs(lines = 40): string {
    return this.nodes.map((n) => {
      let text = '';
      try {
        text = readFileSync(n.logFile, 'utf8').trim().split('\n').slice(-lines).join('\n');
      } catch {
        text = '(no log)';
      }
      return `----- ${n.id} (${n.logFile}) -----\n${text}`;
    }).join('\n');
  }

  /** Stop every node by PID (SIGTERM, then SIGKILL), then any nats-server left behind, then remove the folder. */
  async destroy(keepDir = false): Promise<void> {
    for (const d of this.openDbs.values()) d.close();
    this.openDbs.clear();
    await Promise.all(this.nodes.map((n) => this.stopNode(n.id, 20_000).catch(() => this.killNode(n.id))));
    for (const n of this.nodes) {
      const pid = this.natsPid(n.id);
      if (pid !== null && this.ownsPid(pid)) {
        try {
          process.kill(pid, 'SIGKILL');
        } catch { /* not running */ }
      }
    }
    for (const pid of this.externalPids) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch { /* not running */ }
    }
    liveClusters.delete(this);
    if (!keepDir && !process.env.BURROW_KEEP_TEST_DIRS) rmSync(this.dir, { recursive: true, force: true });
  }
}

export function stringify(v: unknown): string {
  return JSON.stringify(v, (_k, x) => (typeof x === 'bigint' ? `${x}n` : x instanceof Uint8Array || (x && x.type === 'Buffer') ? Buffer.from(x.data ?? x).toString('hex') : x));
}
