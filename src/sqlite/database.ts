import BetterSqlite3 from 'better-sqlite3';
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import type { Synchronous } from '../config/config.ts';
import { assert } from '../util/assert.ts';
import { internalSchemaSql } from './internal-schema.ts';

export type Statement = BetterSqlite3.Statement<unknown[], unknown>;
export type Connection = BetterSqlite3.Database;

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

  private constructor(readonly file: string, readonly options: DatabaseOptions) {
    mkdirSync(path.dirname(file), { recursive: true });
    const conn = new BetterSqlite3(file, { timeout: options.busyTimeoutMs });
    this.conn = conn;
    conn.defaultSafeIntegers(true);
    conn.pragma('journal_mode = WAL');
    conn.pragma(`synchronous = ${options.synchronous}`);
    conn.pragma(`busy_timeout = ${options.busyTimeoutMs}`);
    conn.pragma('foreign_keys = OFF');
    conn.pragma('recursive_triggers = OFF');
    conn.exec(internalSchemaSql);
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

  /** BEGIN IMMEDIATE … COMMIT around fn; ROLLBACK if it throws. */
  writeTx<T>(fn: () => T): T {
    assert(!this.conn.inTransaction, 'nested write transaction');
    this.conn.exec('BEGIN IMMEDIATE');
    try {
      const result = fn();
      this.conn.exec('COMMIT');
      return result;
    } catch (err) {
      if (this.conn.inTransaction) this.conn.exec('ROLLBACK');
      throw err;
    }
  }

  dataVersion(): bigint {
    return this.conn.pragma('data_version', { simple: true }) as bigint;
  }

  schemaVersion(): bigint {
    return this.conn.pragma('schema_version', { simple: true }) as bigint;
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

export function quoteIdent(name: string): string {
  return `"${name.replaceAll('"', '""')}"`;
}
