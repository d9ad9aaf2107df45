/**
 * Errors the user can act on. Each carries a one-line message naming what is wrong
 * (file, key, table, message) and, where known, the fix. The CLI prints `message` only
 * and exits with `exitCode`.
 */
export class BurrowError extends Error {
  override name = 'BurrowError';
  readonly exitCode: number;
  constructor(message: string, opts: { exitCode?: number; cause?: unknown } = {}) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.exitCode = opts.exitCode ?? 1;
  }
}

/** cluster.toml is wrong: file, key and problem in one line; exit code 2. */
export class ConfigError extends BurrowError {
  override name = 'ConfigError';
  constructor(message: string) {
    super(message, { exitCode: 2 });
  }
}

/** The node cannot start as asked (unknown node id, missing binary, port taken …); exit code 2. */
export class StartupError extends BurrowError {
  override name = 'StartupError';
  constructor(message: string, cause?: unknown) {
    super(message, { exitCode: 2, cause });
  }
}

export function errorMessage(err: unknown): string {
  if (err instanceof Error) return err.message;
  return String(err);
}
