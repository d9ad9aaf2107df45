import { closeSync, existsSync, fstatSync, openSync, renameSync, writeSync } from 'node:fs';

/** Plain line logs: `<iso time> <LEVEL> <node> <message> k=v …`, to stderr. */
export type LogLevel = 'debug' | 'info' | 'warn' | 'error';
const levelRank: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 };

export interface Logger {
  debug(msg: string, fields?: Record<string, unknown>): void;
  info(msg: string, fields?: Record<string, unknown>): void;
  warn(msg: string, fields?: Record<string, unknown>): void;
  error(msg: string, fields?: Record<string, unknown>): void;
}

function fmt(v: unknown): string {
  if (typeof v === 'string') return /[\s"=]/.test(v) || v === '' ? JSON.stringify(v) : v;
  if (typeof v === 'bigint') return v.toString();
  if (v instanceof Error) return JSON.stringify(v.message);
  return JSON.stringify(v);
}

export function createLogger(name: string, level: LogLevel = (process.env.BURROW_LOG_LEVEL as LogLevel) ?? 'info',
  write: (line: string) => void = (l) => process.stderr.write(l)): Logger {
  const min = levelRank[level] ?? levelRank.info;
  const emit = (lv: LogLevel, msg: string, fields?: Record<string, unknown>) => {
    if (levelRank[lv] < min) return;
    let line = `${new Date().toISOString()} ${lv.toUpperCase().padEnd(5)} ${name} ${msg}`;
    if (fields) for (const [k, v] of Object.entries(fields)) if (v !== undefined) line += ` ${k}=${fmt(v)}`;
    write(line + '\n');
  };
  return {
    debug: (m, f) => emit('debug', m, f),
    info: (m, f) => emit('info', m, f),
    warn: (m, f) => emit('warn', m, f),
    error: (m, f) => emit('error', m, f),
  };
}

export const silentLogger: Logger = { debug() {}, info() {}, warn() {}, error() {} };

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
