import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, openSync, closeSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadConfig, type NodeConfig } from '../src/config/config.ts';
import { nodeProcessFlags } from '../src/node/process-flags.ts';
import { getJson } from './node-client.ts';
import { formatStatusLine } from './status.ts';
import { keygen, keysNeeded } from './keygen.ts';
import { formatLogLine } from '../src/util/log.ts';

const binPath = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', 'bin', 'burrow.js');
const stopTimeoutMs = 30_000;

interface Child {
  readonly node: NodeConfig;
  readonly proc: ChildProcess;
  readonly logFile: string;
  exit: string | null;
  line: string;
}

/** `burrow up`: every node of the config as a child process, a live status line per node; Ctrl-C stops all. */
export async function runUp(configFile: string): Promise<number> {
  let config = loadConfig(configFile);
  if (keysNeeded(config)) {
    // First use with [security] on: every node's keys made here (all nodes run on this machine).
    const r = keygen(configFile);
    process.stdout.write(`burrow up: keys made for ${r.results.map((k) => k.node).join(', ')} (burrow keygen)${r.configUpdated ? `; public keys written into ${config.file}` : ''}\n`);
    config = loadConfig(configFile);
  }
  const startedAt = Date.now();
  const children: Child[] = config.nodes.map((node) => {
    mkdirSync(node.dataDir, { recursive: true, mode: 0o700 });
    const logFile = path.join(node.dataDir, 'burrow.log');
    const fd = openSync(logFile, 'a');
    const proc = spawn(process.execPath, [...nodeProcessFlags, binPath, 'start', '--config', config.file, '--node', node.id], {
      // The node writes burrow.log itself, rotated at 10 MB (3 kept); its stdout/stderr (a crash's
      // last words) are appended to the same file.
      env: { ...process.env, BURROW_LOG_FILE: logFile },
      stdio: ['ignore', fd, fd],
      detached: true, // own process group: Ctrl-C reaches `up`, which stops the nodes in order
    });
    closeSync(fd);
    const c: Child = { node, proc, logFile, exit: null, line: `${node.id.padEnd(6)} starting` };
    proc.on('exit', (code, sig) => {
      c.exit = sig ? `signal ${sig}` : `exit code ${code}`;
    });
    return c;
  });
  const tty = process.stdout.isTTY === true;
  process.stdout.write(`burrow up: ${children.length} nodes from ${config.file} (logs: ${children.map((c) => path.relative(process.cwd(), c.logFile)).join(', ')})\n`);
  let drawn = 0;
  let allReadyReported = false;
  let lastPrinted = '';
  const refresh = async () => {
    await Promise.all(children.map(async (c) => {
      if (c.exit !== null) {
        c.line = `${c.node.id.padEnd(6)} EXITED (${c.exit}) — last log: ${lastLogLine(c.logFile)}`;
        return;
      }
      const r = await getJson(c.node, '/status', 1000);
      c.line = r.ok ? formatStatusLine({ up: true, ...r.body }) : `${c.node.id.padEnd(6)} starting   pid ${c.proc.pid}`;
      (c as { ready?: boolean }).ready = r.ok && r.body.ready === true;
    }));
    const lines = children.map((c) => c.line);
    if (tty) {
      if (drawn > 0) process.stdout.write(`\x1b[${drawn}A`);
      for (const l of lines) process.stdout.write(`\x1b[2K${l.slice(0, (process.stdout.columns ?? 200) - 1)}\n`);
      drawn = lines.length;
    } else {
      const summary = lines.map((l) => l.replace(/hlc \S+/, '').replace(/pid \d+/, '')).join('\n');
      if (summary !== lastPrinted) {
        lastPrinted = summary;
        process.stdout.write(lines.join('\n') + '\n');
      }
    }
    if (!allReadyReported && children.every((c) => (c as { ready?: boolean }).ready)) {
      allReadyReported = true;
      const msg = `all ${children.length} nodes ready in ${((Date.now() - startedAt) / 1000).toFixed(1)} s — write to any replica, e.g. sqlite3 ${path.relative(process.cwd(), children[0]!.node.db)}; Ctrl-C stops the cluster (burrow up: pid ${process.pid})`;
      process.stdout.write(msg + '\n');
      drawn = 0;
    }
  };
  const timer = setInterval(() => void refresh(), 500);
  await refresh();

  return new Promise<number>((resolve) => {
    let stopping = false;
    const stop = async (why: string) => {
      if (stopping) return;
      stopping = true;
      clearInterval(timer);
      process.stdout.write(`\nburrow up: ${why}; stopping ${children.length} nodes…\n`);
      for (const c of children) if (c.exit === null) c.proc.kill('SIGTERM');
      const deadline = Date.now() + stopTimeoutMs;
      while (children.some((c) => c.exit === null) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
      for (const c of children) {
        if (c.exit === null) {
          process.stdout.write(`${c.node.id}: did not stop within ${stopTimeoutMs} ms; killing\n`);
          c.proc.kill('SIGKILL');
        }
      }
      for (const c of children) process.stdout.write(`${c.node.id}: stopped (${c.exit ?? 'killed'})\n`);
      resolve(0);
    };
    process.on('SIGINT', () => void stop('interrupted'));
    process.on('SIGTERM', () => void stop('terminated'));
    // Passed on: every running node re-reads the config (a node added to the file is not started by this).
    process.on('SIGHUP', () => {
      for (const c of children) if (c.exit === null) c.proc.kill('SIGHUP');
    });
    const launcherGone = npmLauncherWatch();
    const watch = setInterval(() => {
      if (children.every((c) => c.exit !== null)) {
        clearInterval(watch);
        void stop('every node exited');
      } else if (launcherGone()) {
        clearInterval(watch);
        void stop('the npx/npm process that started it is gone');
      }
    }, 500);
  });
}

/**
 * Started through npx or npm run, burrow up runs under `npm → sh -c → burrow`. npm passes SIGTERM to
 * the shell, which exits without passing it on, and npm itself dies of SIGHUP: either way burrow up
 * and its nodes were left running with nobody to stop them. Returns a check that is true once the
 * shell or npm is gone. Outside npm it is always false: `nohup burrow up &` from a shell that
 * exits must go on.
 */
function npmLauncherWatch(): () => boolean {
  if (process.env.npm_command === undefined) return () => false;
  const shell = process.ppid;
  const npm = parentOf(shell);
  return () => process.ppid !== shell || (npm !== null && parentOf(shell) !== npm);
}

/** The parent pid of `pid` (Linux /proc), or null when it cannot be read. */
function parentOf(pid: number): number | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after the command name (which may hold spaces, in parentheses): state, ppid, …
    const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
    return Number.isInteger(ppid) && ppid > 0 ? ppid : null;
  } catch {
    return null;
  }
}

function lastLogLine(file: string): string {
  try {
    const lines = readFileSync(file, 'utf8').trim().split('\n');
    return formatLogLine(lines[lines.length - 1] ?? '').slice(0, 200);
  } catch {
    return '(no log)';
  }
}
