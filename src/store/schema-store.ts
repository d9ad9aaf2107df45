import type { Database } from '../sqlite/database.ts';
import { decodeSchemaEntry, encodeSchemaEntry, type SchemaEntry, type SchemaObjectType } from '../codec/schema-codec.ts';

/** A schema object as sqlite_schema describes it. */
export interface SchemaObject {
  readonly type: SchemaObjectType;
  readonly name: string;
  readonly tbl: string;
  readonly sql: string;
  /** Local rootpage (tables; seen state only): tells a renamed table from a new one. */
  readonly root?: number | null;
}

export const schemaConflictsMax = 1000;
/** Rename/drop events kept (changes in flight older than that many events are translated no further). */
export const schemaHistoryMax = 10_000;

/** A table renamed, a column renamed or a table dropped, at a stream position, by an origin's entry. */
export interface SchemaEvent {
  readonly seq: number;
  readonly origin: string;
  readonly n: number;
  /**
   * 'entry': an entry of `origin` numbered `n` was folded at `seq`; 'create': it created table
   * `tbl` in R (a table of that name before it is another table); 'lost-rename': its rename of
   * table `a` to `b` was refused (R did not take it; its origin's changes under `b` are about `a`).
   */
  readonly kind: 'rename-table' | 'rename-column' | 'drop' | 'entry' | 'create' | 'lost-rename';
  readonly tbl: string;
  readonly a: string | null;
  readonly b: string | null;
}

const key = (type: string, name: string) => `${type}\u0000${name}`;

/**
 * Owner of the schema-replication tables (internal-schema.ts): the replicated schema R (the fold
 * of the schema stream), the seen schema L (what capture has accounted for), this node's entries
 * until they come back, per-origin entry numbers folded, the stream position, and conflicts. All
 * in the caller's transaction.
 */
export class SchemaStore {
  /** The history, newest last (read once, then kept in step by addEvent). */
  private events: SchemaEvent[] | null = null;
  /** Tables this node's unfolded entries touch, with the last such entry and the lowest q among them (cached; dropped whenever the outbox changes). */
  private ownTables: Map<string, { n: number; q: number }> | null = null;
  /** Per replicated table: the stream position of the entry that last defined it (cached). */
  private tableSeqs: Map<string, number> | null = null;
  /** Read on every applied message: cached, kept in step by the setters, dropped with a rolled-back transaction. */
  private pos: number | null = null;
  private foldedBy = new Map<string, number>();

  constructor(private readonly db: Database) {}

  addEvent(ev: SchemaEvent): void {
    this.db.prepare('INSERT INTO __burrow_schema_history(seq, origin, n, kind, tbl, a, b) VALUES (?, ?, ?, ?, ?, ?, ?)')
      .run(BigInt(ev.seq), ev.origin, BigInt(ev.n), ev.kind, ev.tbl, ev.a, ev.b);
    this.db.prepare('DELETE FROM __burrow_schema_history WHERE rowid <= (SELECT max(rowid) FROM __burrow_schema_history) - ?').run(BigInt(schemaHistoryMax));
    this.events = null;
  }

  /** Events after stream position `q`, oldest first. */
  eventsAfter(q: number): readonly SchemaEvent[] {
    this.events ??= (this.db.prepare('SELECT seq, origin, n, kind, tbl, a, b FROM __burrow_schema_history ORDER BY rowid').all() as { seq: bigint; origin: string; n: bigint; kind: SchemaEvent['kind']; tbl: string; a: string | null; b: string | null }[])
      .map((r) => ({ ...r, seq: Number(r.seq), n: Number(r.n) }));
    const last = this.events[this.events.length - 1];
    if (!last || last.seq <= q) return [];
    return this.events.filter((e) => e.seq > q);
  }

  /** A rolled-back transaction may have added events: read them again next time. */
  forgetCache(): void {
    this.events = null;
    this.ownTables = null;
    this.pos = null;
    this.foldedBy.clear();
    this.tableSeqs = null;
  }

  /** This node's last entry not folded yet that touches table `name` (its name before or after), or 0. */
  ownPendingFor(name: string): number {
    return this.ownPending().get(name)?.n ?? 0;
  }

  /** Per table name own pending entries touch: the last one's number, and the lowest position q any of them was made at. */
  private ownPending(): Map<string, { n: number; q: number }> {
    if (!this.ownTables) {
      this.ownTables = new Map();
      for (const p of this.pendingOwn()) {
        for (const op of p.entry.ops) {
          for (const t of [op.tbl, ...(op.renamedFrom !== undefined ? [op.renamedFrom] : [])]) {
            const q = Math.min(this.ownTables.get(t)?.q ?? Infinity, p.entry.q ?? Infinity);
            this.ownTables.set(t, { n: p.n, q });
          }
        }
      }
    }
    return this.ownTables;
  }

  /** The stream position of the entry that last defined table `name` in R (0: not in R). */
  tableSeq(name: string): number {
    this.tableSeqs ??= new Map((this.db.prepare("SELECT name, seq FROM __burrow_schema WHERE type = 'table'").raw(true).all() as [string, bigint][]).map(([n, q]) => [n, Number(q)]));
    return this.tableSeqs.get(name) ?? 0;
  }

  /**
   * The schema position a change of table `name` made here now is made under (its q): where R last
   * defined the table — or, while this node's own DDL of it is pending, where the first of that DDL
   * was made, if lower: the fold leaves such a table as it is meanwhile, so renames others made
   * since are not in it (simulation seed 74: a column another node renamed was dropped from this
   * node's writes on every other node).
   */
  changePosition(name: string): number {
    return Math.min(this.tableSeq(name), this.ownPending().get(name)?.q ?? Infinity);
  }

  /** Replicated schema: every object, keyed by type and name. */
  replicated(): Map<string, SchemaObject> {
    return this.objects('__burrow_schema');
  }

  seen(): Map<string, SchemaObject> {
    return this.objects('__burrow_schema_seen');
  }

  private objects(table: string): Map<string, SchemaObject> {
    const out = new Map<string, SchemaObject>();
    const hasRoot = table === '__burrow_schema_seen';
    for (const r of this.db.prepare(`SELECT type, name, tbl_name, sql${hasRoot ? ', root' : ''} FROM ${table}`).all() as { type: SchemaObjectType; name: string; tbl_name: string; sql: string; root?: bigint | null }[]) {
      out.set(key(r.type, r.name), { type: r.type, name: r.name, tbl: r.tbl_name, sql: r.sql, root: r.root === undefined || r.root === null ? null : Number(r.root) });
    }
    return out;
  }

  static key(type: string, name: string): string {
    return key(type, name);
  }

  /** R's object (type, name) becomes `sql` (null: gone), defined by the entry at stream position `seq`. */
  setReplicated(type: SchemaObjectType, name: string, tbl: string, sql: string | null, seq: number): void {
    if (sql === null) this.db.prepare('DELETE FROM __burrow_schema WHERE type = ? AND name = ?').run(type, name);
    else {
      this.db.prepare('INSERT INTO __burrow_schema(type, name, tbl_name, sql, seq) VALUES (?, ?, ?, ?, ?) ON CONFLICT(type, name) DO UPDATE SET tbl_name = excluded.tbl_name, sql = excluded.sql, seq = excluded.seq')
        .run(type, name, tbl, sql, BigInt(seq));
    }
    this.tableSeqs = null;
  }

  /** The seen schema becomes exactly `objects` (the local schema now). */
  replaceSeen(objects: Iterable<SchemaObject>): void {
    this.db.prepare('DELETE FROM __burrow_schema_seen').run();
    const ins = this.db.prepare('INSERT INTO __burrow_schema_seen(type, name, tbl_name, sql, root) VALUES (?, ?, ?, ?, ?)');
    for (const o of objects) ins.run(o.type, o.name, o.tbl, o.sql, o.root === undefined || o.root === null ? null : BigInt(o.root));
  }

  /** Replace the whole replicated schema (a restore takes the snapshot's). */
  replaceReplicated(objects: Iterable<SchemaObject & { seq: number }>): void {
    this.db.prepare('DELETE FROM __burrow_schema').run();
    for (const o of objects) this.setReplicated(o.type, o.name, o.tbl, o.sql, o.seq);
  }

  position(): number {
    this.pos ??= Number(this.db.prepare('SELECT seq FROM __burrow_schema_state WHERE id = 1').pluck().get() as bigint);
    return this.pos;
  }

  setPosition(seq: number): void {
    this.db.prepare('UPDATE __burrow_schema_state SET seq = max(seq, ?) WHERE id = 1').run(BigInt(seq));
    this.pos = null;
  }

  ownNumber(): number {
    return Number(this.db.prepare('SELECT own_n FROM __burrow_schema_state WHERE id = 1').pluck().get() as bigint);
  }

  /** Queue this node's next entry (numbered here) for publishing; returns its number. */
  queueOwn(make: (n: number) => Buffer): number {
    const n = this.ownNumber() + 1;
    this.db.prepare('UPDATE __burrow_schema_state SET own_n = ? WHERE id = 1').run(BigInt(n));
    this.db.prepare('INSERT INTO __burrow_schema_out(n, payload) VALUES (?, ?)').run(BigInt(n), make(n));
    this.ownTables = null;
    return n;
  }

  /** Raise this node's entry number (a restore: the snapshot saw entries of this node the replica forgot). */
  raiseOwnNumber(n: number): void {
    this.db.prepare('UPDATE __burrow_schema_state SET own_n = max(own_n, ?) WHERE id = 1').run(BigInt(n));
  }

  /** Own entries not folded yet, oldest first. */
  pendingOwn(): { n: number; entry: SchemaEntry; published: boolean }[] {
    return (this.db.prepare('SELECT n, payload, published FROM __burrow_schema_out ORDER BY n').all() as { n: bigint; payload: Buffer; published: bigint }[])
      .map((r) => ({ n: Number(r.n), entry: decodeSchemaEntry(r.payload), published: r.published === 1n }));
  }

  /** This node's entry n, exactly these bytes, is still waiting to come back through the stream (this replica made it). */
  isPendingOwn(n: number, payload: Uint8Array): boolean {
    const have = this.db.prepare('SELECT payload FROM __burrow_schema_out WHERE n = ?').pluck().get(BigInt(n)) as Buffer | undefined;
    return have !== undefined && have.equals(Buffer.from(payload));
  }

  /**
   * An entry of this node numbered n came through the stream that this replica did not make (it
   * was made before the database was replaced): this node's numbering continues above it, and its
   * pending entries numbered at or below it are numbered again above it (re-encoded, published
   * again) — otherwise every node would take them for that older entry — followed by the
   * unpublished ones above it, so the order they were made in is kept (a later entry may build on
   * an earlier one). Returns the tables the renumbered entries touch: their rows were stamped
   * under the old numbers and are stamped again.
   */
  renumberOwnAbove(n: number): string[] {
    this.raiseOwnNumber(n);
    const own = this.pendingOwn();
    const moved = [...own.filter((p) => p.n <= n), ...own.filter((p) => p.n > n && !p.published)];
    if (!own.some((p) => p.n <= n)) return [];
    for (const p of moved) this.removeOwn(p.n);
    for (const p of moved) this.queueOwn((num) => encodeSchemaEntry({ ...p.entry, n: num }));
    this.ownTables = null;
    return [...new Set(moved.flatMap((p) => p.entry.ops.map((op) => op.tbl)))];
  }

  /**
   * Before this node publishes anything: when an unpublished own entry has a number the stream
   * already folded for this node (made after its database was replaced, numbered from 1 again),
   * every unpublished entry is numbered again above `folded`, in the same order — numbering only
   * the colliding ones would put them behind later entries that build on them. Returns the
   * tables the renumbered entries touched (their rows are stamped again under the new numbers).
   */
  renumberUnpublishedAbove(folded: number): string[] {
    this.raiseOwnNumber(folded);
    const unpublished = this.pendingOwn().filter((p) => !p.published);
    if (!unpublished.some((p) => p.n <= folded)) return [];
    for (const p of unpublished) this.removeOwn(p.n);
    for (const p of unpublished) this.queueOwn((num) => encodeSchemaEntry({ ...p.entry, n: num }));
    return [...new Set(unpublished.flatMap((p) => p.entry.ops.map((op) => op.tbl)))];
  }

  /** The oldest own entry not published yet (published one at a time, in order). */
  nextToPublish(): { n: number; payload: Buffer } | null {
    const r = this.db.prepare('SELECT n, payload FROM __burrow_schema_out WHERE published = 0 ORDER BY n LIMIT 1').get() as { n: bigint; payload: Buffer } | undefined;
    return r ? { n: Number(r.n), payload: r.payload } : null;
  }

  markPublished(n: number): void {
    this.db.prepare('UPDATE __burrow_schema_out SET published = 1 WHERE n = ?').run(BigInt(n));
  }

  /** Own entries the schema stream acknowledged that have not come back through it yet. */
  publishedPending(): number[] {
    return (this.db.prepare('SELECT n FROM __burrow_schema_out WHERE published = 1 ORDER BY n').pluck().all() as bigint[]).map(Number);
  }

  /** Own entries to be published again (the stream lost them after acknowledging them). */
  unpublish(ns: readonly number[]): void {
    const st = this.db.prepare('UPDATE __burrow_schema_out SET published = 0 WHERE n = ?');
    for (const n of ns) st.run(BigInt(n));
  }

  removeOwn(n: number): void {
    this.db.prepare('DELETE FROM __burrow_schema_out WHERE n = ?').run(BigInt(n));
    this.ownTables = null;
  }

  pendingCount(): number {
    return Number(this.db.prepare('SELECT count(*) FROM __burrow_schema_out').pluck().get() as bigint);
  }

  /** The last entry number of `origin` folded here (0: none). */
  folded(origin: string): number {
    let n = this.foldedBy.get(origin);
    if (n === undefined) {
      n = Number((this.db.prepare('SELECT n FROM __burrow_schema_from WHERE origin = ?').pluck().get(origin) as bigint | undefined) ?? 0n);
      this.foldedBy.set(origin, n);
    }
    return n;
  }

  foldedAll(): Map<string, number> {
    return new Map((this.db.prepare('SELECT origin, n FROM __burrow_schema_from').raw(true).all() as [string, bigint][]).map(([o, n]) => [o, Number(n)]));
  }

  setFolded(origin: string, n: number): void {
    this.db.prepare('INSERT INTO __burrow_schema_from(origin, n) VALUES (?, ?) ON CONFLICT(origin) DO UPDATE SET n = max(n, excluded.n)').run(origin, BigInt(n));
    this.foldedBy.delete(origin);
  }

  /** An entry that could not apply (bounded: the oldest go beyond schemaConflictsMax). */
  conflict(seq: number, origin: string, n: number, objects: string, problem: string): void {
    this.db.prepare('INSERT INTO __burrow_schema_conflicts(at_ms, seq, origin, n, objects, problem) VALUES (?, ?, ?, ?, ?, ?)')
      .run(BigInt(Date.now()), BigInt(seq), origin, BigInt(n), objects, problem);
    this.db.prepare('DELETE FROM __burrow_schema_conflicts WHERE id <= (SELECT max(id) FROM __burrow_schema_conflicts) - ?').run(BigInt(schemaConflictsMax));
  }

  conflictCount(): number {
    return Number(this.db.prepare('SELECT count(*) FROM __burrow_schema_conflicts').pluck().get() as bigint);
  }

  recentConflicts(limit: number): unknown[] {
    return this.db.prepare('SELECT seq, at_ms AS atMs, origin, n, objects, problem FROM __burrow_schema_conflicts ORDER BY id DESC LIMIT ?').all(BigInt(limit));
  }
}
