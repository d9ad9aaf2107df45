import { spawn } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync, accessSync, constants, openSync, closeSync, rmSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import net from 'node:net';
import path from 'node:path';
import type { Config, NodeConfig } from '../config/config.ts';
import { StartupError } from '../util/errors.ts';
import { readSecret } from '../security/keys.ts';
import { memberPermissions, renderPermissions } from '../security/permissions.ts';
import type { Logger } from '../util/log.ts';

export interface NatsProcess {
  readonly pid: number;
  readonly adopted: boolean;
  readonly url: string;
}

const startTimeoutMs = 15_000;
const stopTimeoutMs = 15_000;
const watchdogIntervalMs = 500;

/**
 * The node's embedded nats-server: writes its config under the node's data folder, starts it in
 * its own process group (so Ctrl-C reaches the node first and the node stops it after flushing),
 * and adopts one left running by a node that was SIGKILLed (pid file + same config).
 */
export class NatsSupervisor {
  readonly confFile: string;
  readonly pidFile: string;
  readonly logFile: string;
  readonly storeDir: string;
  /** The system account user's password (random, 0600): the node's own door to peer removal. */
  private readonly sysPassFile: string;
  /** How many times this server rejoined JetStream as a new peer (after its removal): its name's suffix. */
  private readonly epochFile: string;
  private proc: NatsProcess | null = null;
  private watchdog: NodeJS.Timeout | null = null;
  private stopping = false;
  private restarting = false;
  /** Times the watchdog found the server gone and started a new one. */
  restarts = 0;

  constructor(private config: Config, private readonly node: NodeConfig, private readonly log: Logger) {
    this.confFile = path.join(node.dataDir, 'nats.conf');
    this.pidFile = path.join(node.dataDir, 'nats.pid');
    this.logFile = path.join(node.dataDir, 'nats.log');
    this.storeDir = path.join(node.dataDir, 'nats');
    this.sysPassFile = path.join(node.dataDir, 'nats-sys.pass');
    this.epochFile = path.join(node.dataDir, 'nats-epoch');
  }

  /** Credentials of the system account on this node's own server (peer removal, server state). */
  systemUser(): { user: string; pass: string } {
    if (!existsSync(this.sysPassFile)) {
      mkdirSync(path.dirname(this.sysPassFile), { recursive: true });
      writeFileSync(this.sysPassFile, randomBytes(24).toString('hex') + '\n', { mode: 0o600, flag: 'wx' });
    }
    return { user: 'burrow-system', pass: readFileSync(this.sysPassFile, 'utf8').trim() };
  }

  private epoch(): number {
    return existsSync(this.epochFile) ? Number(readFileSync(this.epochFile, 'utf8').trim()) || 0 : 0;
  }

  /**
   * The server's name in the JetStream cluster: the node id, then `~N` after the node rejoined as a
   * new peer N times (JetStream refuses a removed peer's name for good; `~` is not in node ids).
   */
  serverName(): string {
    const e = this.epoch();
    return e > 0 ? `${this.node.id}~${e}` : this.node.id;
  }

  renderConfig(): string {
    const n = this.node;
    if (!n.client || !n.route) throw new StartupError(`${this.config.file}: node ${n.id} needs client and route addresses for its embedded nats-server`);
    const lines = [
      '# Written by burrow for this node; changes are overwritten at start.',
      `server_name: ${JSON.stringify(this.serverName())}`,
      `listen: ${JSON.stringify(`${n.client.host}:${n.client.port}`)}`,
      `pid_file: ${JSON.stringify(this.pidFile)}`,
      `log_file: ${JSON.stringify(this.logFile)}`,
      'logfile_size_limit: 10MB',
      ...(n.natsMonitor ? [`http: ${JSON.stringify(`${n.natsMonitor.host}:${n.natsMonitor.port}`)}`] : []),
      'max_payload: 8MB',
      'jetstream {',
      `  store_dir: ${JSON.stringify(this.storeDir)}`,
      '  max_memory_store: 256MB',
      '  max_file_store: 256GB',
      '}',
      ...this.accountLines(),
      ...this.tlsLines('tls', ''),
    ];
    const peers = this.config.nodes.filter((o) => o.id !== n.id);
    if (this.config.nodes.length > 1) {
      const sec = this.config.security;
      // Routes authenticate with the cluster secret (the same file on every machine).
      const secret = sec.auth ? readSecret(sec.secretFile) : null;
      const cred = secret ? `route:${secret}@` : '';
      lines.push(
        'cluster {',
        `  name: ${JSON.stringify(this.config.cluster.name)}`,
        `  listen: ${JSON.stringify(`${n.route.host}:${n.route.port}`)}`,
        ...(secret ? [`  authorization { user: "route", password: ${JSON.stringify(secret)}, timeout: 2 }`] : []),
        ...this.tlsLines('tls', '  '),
        `  routes: [${peers.map((p) => JSON.stringify(`nats-route://${cred}${p.route!.host}:${p.route!.port}`)).join(', ')}]`,
        '}',
      );
    }
    return lines.join('\n') + '\n';
  }

  /**
   * Accounts: BURROW holds the streams and the object store; SYS is for this node alone (peer
   * removal when a member leaves cluster.toml). With [security] auth, only the members' nkeys get
   * into BURROW, each limited to its own subjects (security/permissions.ts); without it, clients
   * without credentials land there as the user `burrow` (loopback only, see config.ts).
   */
  private accountLines(): string[] {
    const sys = this.systemUser().pass;
    const app: string[] = [];
    const { cluster } = this.config;
    if (!this.config.security.auth) app.push(`{ user: "burrow", password: ${JSON.stringify(sys + '-app')} }`);
    else {
      for (const m of this.config.nodes) {
        if (m.natsKey) app.push(`{ nkey: ${JSON.stringify(m.natsKey)}, ${renderPermissions(memberPermissions(cluster.name, m.id, cluster.shards))} }`);
      }
    }
    return [
      'accounts {',
      `  BURROW: { jetstream: enabled, users: [ ${app.join(', ')} ] }`,
      `  SYS: { users: [ { user: "burrow-system", password: ${JSON.stringify(sys)} } ] }`,
      '}',
      'system_account: SYS',
      ...(this.config.security.auth ? [] : ['no_auth_user: "burrow"']),
    ];
  }

  /** TLS for client connections (top level) or routes (in cluster {}): mutual, every side shows a certificate the CA signed. */
  private tlsLines(block: string, indent: string): string[] {
    const t = this.config.security.tls;
    if (!t) return [];
    return [`${indent}${block} { cert_file: ${JSON.stringify(t.cert)}, key_file: ${JSON.stringify(t.key)}, ca_file: ${JSON.stringify(t.ca)}, verify: true, timeout: 5 }`];
  }

  /** What a client of this node's server needs for TLS (the node's own certificate). */
  clientTls(): { certFile: string; keyFile: string; caFile: string } | undefined {
    const t = this.config.security.tls;
    return t ? { certFile: t.cert, keyFile: t.key, caFile: t.ca } : undefined;
  }

  /**
   * A reloaded cluster.toml (new or removed members): the server's config file is rewritten and the
   * server told to re-read it (SIGHUP; nats-server reloads its routes live).
   */
  reload(config: Config): void {
    this.config = config;
    const conf = this.renderConfig();
    writePrivate(this.confFile, conf);
    if (this.proc && isNatsServer(this.proc.pid)) {
      process.kill(this.proc.pid, 'SIGHUP');
      this.log.info('nats-server reloads its config (routes)', { pid: this.proc.pid });
    }
  }

  clientUrl(): string {
    return `nats://${this.node.client!.host}:${this.node.client!.port}`;
  }

  current(): NatsProcess | null {
    return this.proc;
  }

  /**
   * Start (or adopt) the server, then watch it: if it dies, start a new one (with backoff). A
   * server killed by a signal while it starts is started again (bounded); one that exits on its
   * own (bad config, port taken) is a startup error.
   */
  async start(): Promise<NatsProcess> {
    let p: NatsProcess;
    for (let attempt = 1; ; attempt++) {
      try {
        p = await this.startOnce();
        break;
      } catch (err) {
        if (!(err instanceof KilledAtStartError) || attempt >= killedAtStartRetries) throw err;
        this.log.warn('nats-server was killed while starting; starting it again', { attempt, error: err.message });
        await new Promise((r) => setTimeout(r, 250 * attempt));
      }
    }
    this.watchdog ??= setInterval(() => void this.check(), watchdogIntervalMs);
    return p;
  }

  private async check(): Promise<void> {
    if (this.stopping || this.restarting || !this.proc || isNatsServer(this.proc.pid)) return;
    this.restarting = true;
    const lost = this.proc.pid;
    this.log.error('nats-server is gone; starting a new one', { pid: lost });
    let delay = 250;
    while (!this.stopping) {
      try {
        await this.startOnce();
        this.restarts++;
        break;
      } catch (err) {
        this.log.error('could not restart nats-server; retrying', { error: (err as Error).message, retryInMs: delay });
        await new Promise((r) => setTimeout(r, delay));
        delay = Math.min(delay * 2, 5000);
      }
    }
    this.restarting = false;
  }

  private async startOnce(): Promise<NatsProcess> {
    const binary = resolveBinary(this.config.nats.binary);
    if (!binary) {
      throw new StartupError(`nats-server binary "${this.config.nats.binary}" not found on PATH: install it `
        + '(apt-get install -y nats-server) or set [nats] binary in ' + this.config.file);
    }
    mkdirSync(this.storeDir, { recursive: true });
    const conf = this.renderConfig();
    const oldPid = readPid(this.pidFile);
    if (oldPid !== null && isNatsServer(oldPid, this.confFile)) {
      const sameConf = existsSync(this.confFile) && readFileSync(this.confFile, 'utf8') === conf;
      if (sameConf && (await canConnect(this.node.client!.host, this.node.client!.port, 1000))) {
        this.log.info('adopting nats-server left running by an earlier run', { pid: oldPid });
        this.proc = { pid: oldPid, adopted: true, url: this.clientUrl() };
        return this.proc;
      }
      this.log.warn('stopping nats-server left running with another config', { pid: oldPid });
      await stopPid(oldPid, stopTimeoutMs);
    }
    for (const [key, hp] of [['client', this.node.client!], ['route', this.node.route!]] as const) {
      if (this.config.nodes.length === 1 && key === 'route') continue;
      if (!(await portFree(hp.host, hp.port))) {
        throw new StartupError(`${hp.host}:${hp.port} (node ${this.node.id} ${key} in ${this.config.file}) is in use by another process: `
          + 'stop it or choose another port');
      }
    }
    writePrivate(this.confFile, conf);
    const out = openSync(path.join(this.node.dataDir, 'nats.stdout.log'), 'a');
    // Its working folder is the node's data folder: nats-server 2.9 wrote consumer state files
    // (meta.inf, meta.sum) into its working folder, which was wherever burrow was started.
    const child = spawn(binary, ['-c', this.confFile], { cwd: this.node.dataDir, detached: true, stdio: ['ignore', out, out] });
    closeSync(out);
    let exited: string | null = null;
    let signalled = false;
    child.on('exit', (code, sig) => {
      exited = `exit code ${code ?? ''}${sig ?? ''}`;
      signalled = sig !== null;
    });
    child.on('error', (err) => {
      exited = err.message;
    });
    const deadline = Date.now() + startTimeoutMs;
    while (!(await canConnect(this.node.client!.host, this.node.client!.port, 500))) {
      if (exited !== null) {
        if (signalled) throw new KilledAtStartError(`nats-server for node ${this.node.id} was killed while starting (${exited})`);
        throw new StartupError(`nats-server for node ${this.node.id} stopped at start (${exited}); see ${this.logFile}: ${tail(this.logFile)}`);
      }
      if (Date.now() > deadline) throw new StartupError(`nats-server for node ${this.node.id} did not listen within ${startTimeoutMs} ms; see ${this.logFile}`);
      await new Promise((r) => setTimeout(r, 50));
    }
    child.unref();
    this.proc = { pid: child.pid!, adopted: false, url: this.clientUrl() };
    this.log.info('nats-server started', { pid: child.pid, client: this.clientUrl() });
    return this.proc;
  }

  /**
   * This server was removed from the JetStream cluster (its node left cluster.toml, was peer-removed,
   * and is a member again): JetStream stays disabled for its name. Start it again under the next
   * name with an empty store; the streams then place their replicas on it again.
   */
  async rejoinAsNewPeer(): Promise<void> {
    if (this.stopping || this.restarting || !this.proc) return;
    this.restarting = true;
    try {
      const old = this.serverName();
      await stopPid(this.proc.pid, stopTimeoutMs);
      rmSync(this.storeDir, { recursive: true, force: true });
      writeFileSync(this.epochFile, `${this.epoch() + 1}\n`);
      this.log.warn('nats-server rejoins the JetStream cluster as a new peer with an empty store', { was: old, now: this.serverName() });
      await this.startOnce();
    } finally {
      this.restarting = false;
    }
  }

  /** Stop and start this node's server, its store kept (a stale view of a stream re-syncs at start). */
  async restartKeepingStore(why: string): Promise<void> {
    if (this.stopping || this.restarting || !this.proc) return;
    this.restarting = true;
    try {
      this.log.warn('restarting nats-server', { why });
      await stopPid(this.proc.pid, stopTimeoutMs);
      await this.startOnce();
      this.restarts++;
    } finally {
      this.restarting = false;
    }
  }

  async stop(): Promise<void> {
    this.stopping = true;
    if (this.watchdog) clearInterval(this.watchdog);
    this.watchdog = null;
    if (!this.proc) return;
    const pid = this.proc.pid;
    this.proc = null;
    await stopPid(pid, stopTimeoutMs);
    this.log.info('nats-server stopped', { pid });
  }
}

/** The server was killed by a signal before it listened (not its own failure): worth another try. */
class KilledAtStartError extends StartupError {
  override name = 'KilledAtStartError';
}

const killedAtStartRetries = 5;

function resolveBinary(bin: string): string | null {
  if (bin.includes('/')) return existsSync(bin) ? bin : null;
  for (const dir of (process.env.PATH ?? '').split(':')) {
    const p = path.join(dir, bin);
    try {
      accessSync(p, constants.X_OK);
      return p;
    } catch { /* next */ }
  }
  return null;
}

function readPid(file: string): number | null {
  try {
    const pid = Number(readFileSync(file, 'utf8').trim());
    return Number.isInteger(pid) && pid > 0 ? pid : null;
  } catch {
    return null;
  }
}

/** The process runs (a zombie — exited, not yet reaped by its parent — does not). */
export function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  try {
    return !/\) Z /.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return true; // no /proc here: kill(0) is all we know
  }
}

/**
 * A live (not zombie) nats-server — with `confFile`, one started with exactly that config file
 * (`-c <path>`): a pid file naming some other process (the pid reused since) is never trusted.
 */
function isNatsServer(pid: number, confFile?: string): boolean {
  if (!pidAlive(pid)) return false;
  try {
    const argv = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter((a) => a !== '');
    if (argv.length === 0) return false;
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    if (/\) Z /.test(stat)) return false;
    if (!path.basename(argv[0]!).includes('nats-server')) return false;
    if (confFile === undefined) return true;
    const at = argv.indexOf('-c');
    return at >= 0 && argv[at + 1] === confFile;
  } catch {
    return false;
  }
}

async function stopPid(pid: number, timeoutMs: number): Promise<void> {
  try {
    process.kill(pid, 'SIGTERM');
  } catch {
    return;
  }
  const deadline = Date.now() + timeoutMs;
  while (isNatsServer(pid) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  if (isNatsServer(pid)) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch { /* gone */ }
  }
}

/** A file only this user reads (the server config holds the route secret and account passwords). */
function writePrivate(file: string, text: string): void {
  writeFileSync(file, text, { mode: 0o600 });
  chmodSync(file, 0o600);
}

function canConnect(host: string, port: number, timeoutMs: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect({ host, port });
    const done = (ok: boolean) => {
      s.destroy();
      resolve(ok);
    };
    s.setTimeout(timeoutMs, () => done(false));
    s.once('connect', () => done(true));
    s.once('error', () => done(false));
  });
}

function portFree(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const srv = net.createServer();
    srv.once('error', () => resolve(false));
    srv.listen({ host, port, exclusive: true }, () => srv.close(() => resolve(true)));
  });
}

function tail(file: string): string {
  try {
    const lines = readFileSync(file, 'utf8').trim().split('\n');
    return lines.slice(-3).join(' | ');
  } catch {
    return '(no log)';
  }
}
