import BetterSqlite3 from 'better-sqlite3';
import { chmodSync, existsSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import type { Synchronous } from '../config/config.ts';
import { assert } from '../util/assert.ts';
import { internalSchemaSql } from './internal-schema.ts';

export type Statement = BetterSqlite3.Statement<unknown[], unknown>;
export type Connection = BetterSqlite3.Database;

/** A problem the node's writes keep hitting, until a write succeeds again. */
export interface DbTrouble {
  readonly kind: 'busy' | 'io';
  readonly sinceMs: number;
  errors: number;
  lastError: string;
}

/** Lock contention (another connection holds the write lock): wait and retry. */
export function isBusyError(err: unknown): boolean {
  const code = String((err as { code?: unknown })?.code ?? '');
  return code.startsWith('SQLITE_BUSY') || code.startsWith('SQLITE_LOCKED');
}

/** Disk full or I/O trouble: keep everything, report, retry. */
export function isIoError(err: unknown): boolean {
  const code = String((err as { code?: unknown })?.code ?? '');
  return code === 'SQLITE_FULL' || code.startsWith('SQLITE_IOERR') || code.startsWith('SQLITE_READONLY') || code === 'SQLITE_CANTOPEN';
}

export interface DatabaseOptions {
  readonly synchronous: Synchronous;
  readonly busyTimeoutMs: number;
}

/**
 * The only owner of SQLite connections. A node has exactly one writer connection (this object):
 * WAL, the configured synchronous level, busy_timeout, safe integers (every INTEGER is a bigint),
 * foreign keys OFF (shards arrive in any order). Applications keep writing through their own
 * connections; the triggers burrow installs capture those writes.
 */
export class Database {
  readonly conn: Connection;
  private readonly stmts = new Map<string, Statement>();
  private lastDataVersion: bigint;
  private lastSchemaVersion: bigint;
  /** Current write trouble (busy / disk), cleared by the next successful write transaction. */
  trouble: DbTrouble | null = null;
  /** Called when trouble starts or ends (the node logs it). */
  onTrouble: (t: DbTrouble | null, ended: DbTrouble | null) => void = () => {};

  private constructor(readonly file: string, readonly options: DatabaseOptions) {
    mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
    const created = !existsSync(file);
    const conn = new BetterSqlite3(file, { timeout: options.busyTimeoutMs });
    // A database burrow creates is its user's alone (SQLite gives -wal/-shm the same mode); an
    // existing one keeps the mode its owner chose (applications of another user may share it).
    if (created && existsSync(file)) chmodSync(file, 0o600);
    this.conn = conn;
    conn.defaultSafeIntegers(true);
    conn.pragma('journal_mode = WAL');
    conn.pragma(`synchronous = ${options.synchronous}`);
    conn.pragma(`busy_timeout = ${options.busyTimeoutMs}`);
    conn.pragma('foreign_keys = OFF');
    conn.pragma('recursive_triggers = OFF');
    conn.exec(internalSchemaSql);
    // Databases from before batch numbers: add the column (NULL = not tracked).
    if (!(conn.prepare('PRAGMA table_info(__burrow_outbox)').all() as { name: string }[]).some((c) => c.name === 'bseq')) {
      conn.exec('ALTER TABLE __burrow_outbox ADD COLUMN bseq INTEGER');
    }
    this.lastDataVersion = this.dataVersion();
    this.lastSchemaVersion = this.schemaVersion();
  }

  static open(file: string, options: DatabaseOptions): Database {
    return new Database(file, options);
  }

  /** A cached prepared statement. */
  prepare(sql: string): Statement {
    let s = this.stmts.get(sql);
    if (!s) {
      s = this.conn.prepare(sql);
      this.stmts.set(sql, s);
    }
    return s;
  }

  /** Forget cached statements (after a schema change). */
  clearStatements(): void {
    this.stmts.clear();
  }

  exec(sql: string): void {
    this.conn.exec(sql);
  }

  /**
   * BEGIN IMMEDIATE … COMMIT around fn; ROLLBACK if it throws. A busy database (another
   * connection holds the write lock longer than busy_timeout) or a disk/I-O error is recorded in
   * `trouble` until a write transaction succeeds again; the caller retries later.
   */
  writeTx<T>(fn: () => T): T {
    assert(!this.conn.inTransaction, 'nested write transaction');
    try {
      this.conn.exec('BEGIN IMMEDIATE');
      let result: T;
      try {
        result = fn();
        this.conn.exec('COMMIT');
      } catch (err) {
        if (this.conn.inTransaction) {
          try {
            this.conn.exec('ROLLBACK');
          } catch { /* SQLite rolled back already (e.g. after SQLITE_FULL) */ }
        }
        throw err;
      }
      if (this.trouble) {
        const ended = this.trouble;
        this.trouble = null;
        this.onTrouble(null, ended);
      }
      return result;
    } catch (err) {
      const kind = isBusyError(err) ? 'busy' : isIoError(err) ? 'io' : null;
      if (kind) {
        if (this.trouble?.kind !== kind) {
          this.trouble = { kind, sinceMs: Date.now(), errors: 0, lastError: '' };
          this.onTrouble(this.trouble, null);
        }
        this.trouble.errors++;
        this.trouble.lastError = `${String((err as { code?: unknown }).code)}: ${(err as Error).message}`;
      }
      throw err;
    }
  }

  // Polled every few ms: prepared once (conn.pragma() compiles its statement on every call, which
  // took 5.9 µs a call, the cached statement 2.3 µs).
  dataVersion(): bigint {
    return this.prepare('PRAGMA data_version').pluck().get() as bigint;
  }

  schemaVersion(): bigint {
    return this.prepare('PRAGMA schema_version').pluck().get() as bigint;
  }

  /** True when another connection committed since the last call (a hint: checkpoints bump it too). */
  dataChanged(): boolean {
    const v = this.dataVersion();
    if (v === this.lastDataVersion) return false;
    this.lastDataVersion = v;
    return true;
  }

  /** True when the schema changed since the last call (by any connection, including this one). */
  schemaChanged(): boolean {
    const v = this.schemaVersion();
    if (v === this.lastSchemaVersion) return false;
    this.lastSchemaVersion = v;
    return true;
  }

  /** Attach another database file to the writer connection under `alias` (outside any transaction); burrow only reads it. */
  attach(file: string, alias: string): void {
    this.conn.prepare(`ATTACH DATABASE ? AS ${quoteIdent(alias)}`).run(file);
  }

  detach(alias: string): void {
    this.conn.prepare(`DETACH DATABASE ${quoteIdent(alias)}`).run();
  }

  /** A separate read-only connection (checksums, inspection); caller closes it. */
  openReader(): Connection {
    const r = new BetterSqlite3(this.file, { readonly: true, timeout: this.options.busyTimeoutMs });
    r.defaultSafeIntegers(true);
    return r;
  }

  close(): void {
    this.stmts.clear();
    if (this.conn.open) this.conn.close();
  }
}

/** A read-only connection to a file that is not the node's replica (a downloaded snapshot); caller closes it. */
export function openReadOnly(file: string): Connection {
  const c = new BetterSqlite3(file, { readonly: true, fileMustExist: true });
  c.defaultSafeIntegers(true);
  return c;
}

export function quoteIdent(name: string): string {
  return `"${name.replaceAll('"', '""')}"`;
}

/** A table's stored columns as SQLite declares them. */
export interface DeclaredColumn {
  readonly name: string;
  readonly type: string;
  readonly pk: number;
}

/**
 * The stored columns a CREATE TABLE statement declares, read by running it in a scratch in-memory
 * database (SQLite parses it exactly as it would here); null when it does not run there.
 */
export function declaredColumns(createSql: string): DeclaredColumn[] | null {
  const scratch = new BetterSqlite3(':memory:');
  try {
    scratch.exec(createSql);
    const name = (scratch.prepare("SELECT name FROM sqlite_schema WHERE type = 'table' LIMIT 1").pluck().get()) as string | undefined;
    if (!name) return null;
    return (scratch.prepare(`PRAGMA table_xinfo(${quoteIdent(name)})`).all() as { name: string; type: string; pk: number; hidden: number }[])
      .filter((c) => c.hidden === 0).map((c) => ({ name: c.name, type: c.type, pk: c.pk }));
  } catch {
    return null;
  } finally {
    scratch.close();
  }
}
