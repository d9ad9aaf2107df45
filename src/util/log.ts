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
