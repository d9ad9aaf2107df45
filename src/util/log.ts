import { closeSync, existsSync, fstatSync, openSync, renameSync, writeSync } from 'node:fs';
import { pino, type Logger as PinoLogger } from 'pino';

/**
 * Logs as JSON lines (pino): {"level","time","node","component"?,"msg", …fields}, one per event,
 * to stderr or a rotating file. `child(component)` tags a component's lines. Levels from
 * BURROW_LOG_LEVEL (debug, info, warn, error); `burrow up` shows the lines readable (formatLogLine).
 */
export type LogLevel = 'debug' | 'info' | 'warn' | 'error';

export interface Logger {
  debug(msg: string, fields?: Record<string, unknown>): void;
  info(msg: string, fields?: Record<string, unknown>): void;
  warn(msg: string, fields?: Record<string, unknown>): void;
  error(msg: string, fields?: Record<string, unknown>): void;
  /** The same log, its lines tagged with a component (publisher, apply, nats, …). */
  child(component: string): Logger;
}

/** Field values JSON can carry: bigints as decimal strings, errors as their message. */
function plain(fields: Record<string, unknown> | undefined): Record<string, unknown> {
  if (!fields) return {};
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(fields)) {
    if (v === undefined) continue;
    out[k] = typeof v === 'bigint' ? v.toString() : v instanceof Error ? v.message : v;
  }
  return out;
}

function wrap(p: PinoLogger): Logger {
  return {
    debug: (m, f) => p.debug(plain(f), m),
    info: (m, f) => p.info(plain(f), m),
    warn: (m, f) => p.warn(plain(f), m),
    error: (m, f) => p.error(plain(f), m),
    child: (component) => wrap(p.child({ component })),
  };
}

export function createLogger(name: string, level: LogLevel = (process.env.BURROW_LOG_LEVEL as LogLevel) ?? 'info',
  write: (line: string) => void = (l) => process.stderr.write(l)): Logger {
  const p = pino({
    level: ['debug', 'info', 'warn', 'error'].includes(level) ? level : 'info',
    base: { node: name },
    timestamp: pino.stdTimeFunctions.isoTime,
    formatters: { level: (label) => ({ level: label }) },
  }, { write });
  return wrap(p);
}

const pad = (s: string, n: number) => (s.length >= n ? s : s + ' '.repeat(n - s.length));

/** A JSON log line as a person reads it: `<time> <LEVEL> <node>[/<component>] <msg> k=v …` (other lines as they are). */
export function formatLogLine(line: string): string {
  let o: Record<string, unknown>;
  try {
    o = JSON.parse(line) as Record<string, unknown>;
  } catch {
    return line;
  }
  if (typeof o !== 'object' || o === null || typeof o.msg !== 'string') return line;
  const { time, level, node, component, msg, pid: _pid, hostname: _host, ...rest } = o;
  const kv = Object.entries(rest).map(([k, v]) => ` ${k}=${typeof v === 'string' && !/[\s"=]/.test(v) && v !== '' ? v : JSON.stringify(v)}`).join('');
  return `${String(time ?? '')} ${pad(String(level ?? '').toUpperCase(), 5)} ${String(node ?? '')}${component ? `/${String(component)}` : ''} ${msg}${kv}`;
}

export const silentLogger: Logger = { debug() {}, info() {}, warn() {}, error() {}, child: () => silentLogger };

/**
 * A log file that rotates by size: past `maxBytes` the file becomes `<file>.1` (older ones move
 * up to `<file>.<keep>`, the oldest is dropped) and a new one is started. Lines are written
 * synchronously (a crash loses none); logs are rare enough for that.
 */
export function rotatingFile(file: string, maxBytes = 10 * 1024 * 1024, keep = 3): (line: string) => void {
  let fd = openSync(file, 'a', 0o600);
  let size = fstatSync(fd).size;
  return (line: string) => {
    const buf = Buffer.from(line);
    if (size > 0 && size + buf.length > maxBytes) {
      closeSync(fd);
      for (let i = keep - 1; i >= 1; i--) if (existsSync(`${file}.${i}`)) renameSync(`${file}.${i}`, `${file}.${i + 1}`);
      renameSync(file, `${file}.1`);
      fd = openSync(file, 'a', 0o600);
      size = 0;
    }
    writeSync(fd, buf);
    size += buf.length;
  };
}
