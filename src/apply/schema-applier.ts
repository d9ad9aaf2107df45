import { declaredColumns, quoteIdent, type Database } from '../sqlite/database.ts';
import { decodeSchemaEntry, type SchemaEntry, type SchemaObjectType, type SchemaOp } from '../codec/schema-codec.ts';
import { SchemaStore, type SchemaEvent, type SchemaObject } from '../store/schema-store.ts';
import type { Capture } from '../capture/capture.ts';
import { diffSchema, localObjects } from '../capture/schema-capture.ts';
import { rebaseDependent, rewriteDependents, spelledQuoted, type Rename } from './schema-dependents.ts';
import { alterFor, asAddColumn, independentGroups, rebaseTableOp, renamedColumns, type ColumnRename } from './schema-ops.ts';
import { errorMessage } from '../util/errors.ts';
import type { Logger } from '../util/log.ts';

export type FoldOutcome = 'applied' | 'conflict' | 'duplicate' | 'rejected';

const typeRank: Record<SchemaObjectType, number> = { table: 0, view: 1, index: 2, trigger: 3 };

/** What this node's own lost change leaves to copy (see SchemaApplier.lostChange). */
interface LostChange {
  /** Local columns that carry values (those of the definition the change was made on, as named here). */
  readonly columns: ReadonlySet<string>;
  /** Local column name → its name in R, where they differ. */
  readonly renames: ReadonlyMap<string, string>;
}
const rebuildName = '__burrow_rebuild';

/** The renames an entry's table ops make, in the order the fold records them (a table's name, then its columns). */
function tableRenames(ops: readonly SchemaOp[]): Rename[] {
  const out: Rename[] = [];
  for (const op of ops) {
    if (op.type !== 'table') continue;
    if (op.renamedFrom !== undefined) out.push({ kind: 'table', from: op.renamedFrom, to: op.name });
    if (op.from !== null && op.to !== null) for (const [a, b] of renamedColumns(op.from, op.to)) out.push({ kind: 'column', table: op.name, from: a, to: b, quoted: spelledQuoted(op.to, b) });
  }
  return out;
}

/** Keys plus those of R's indexes and triggers on the tables among them. */
function withDependents(keys: readonly string[], r: ReadonlyMap<string, SchemaObject>): string[] {
  const tables = new Set(keys.filter((k) => k.startsWith(SchemaStore.key('table', ''))).map((k) => k.slice(SchemaStore.key('table', '').length)));
  const deps = [...r.values()].filter((o) => (o.type === 'index' || o.type === 'trigger') && tables.has(o.tbl)).map((o) => SchemaStore.key(o.type, o.name));
  return [...keys, ...deps];
}

/** Objects an entry touches, as store keys (a renamed table's old name included). */
function touched(e: SchemaEntry): string[] {
  const out: string[] = [];
  for (const op of e.ops) {
    if (op.renamedFrom !== undefined) out.push(SchemaStore.key('table', op.renamedFrom));
    out.push(SchemaStore.key(op.type, op.name));
  }
  return out;
}

/**
 * Folds schema entries in stream order (one cluster-wide order): the replicated schema R is a
 * deterministic fold — an entry applies when every object it touches is, in R, what the entry
 * says it was before (or already what it says after); otherwise it is a conflict, recorded, and R
 * stays. The local schema is then brought to R for the objects the entry touched, except those
 * this node's own unfolded entries touch (they converge when those come back). Runs inside the
 * node's apply transaction (echo suppression on: rows burrow copies are not captured).
 */
export class SchemaApplier {
  readonly stats = { entries: 0, applied: 0, conflicts: 0, rejected: 0, duplicates: 0, rebuilds: 0, localErrors: 0, migrations: 0 };
  /** Tables whose rows must be restamped once capture follows the new schema (takeRestamp). */
  private readonly restamp = new Set<string>();
  /** This node's tables its lost renames moved (during one converge): R's name → the name it had here. */
  private readonly movedHome = new Map<string, string>();

  constructor(private readonly db: Database, private readonly store: SchemaStore, private readonly capture: Capture,
    private readonly nodeId: string,
    /** Node ids accepted as origins (members and former members): entries of any other origin are rejected (updated in place on a config reload). */
    private readonly members: ReadonlySet<string>,
    private readonly log: Logger) {}

  /** An entry whose signature did not verify: recorded, skipped (the schema stays). */
  refuse(seq: number, reason: string): FoldOutcome {
    this.stats.entries++;
    this.stats.rejected++;
    this.store.conflict(seq, '?', 0, '', `rejected schema entry: ${reason}`);
    this.log.warn('schema entry rejected: its signature does not verify', { seq, reason });
    this.store.setPosition(seq);
    return 'rejected';
  }

  /** Fold one entry; `signer`: the node that signed it, or (signing off) whose subject it was published on; null: unknown. */
  fold(seq: number, data: Uint8Array, signer: string | null = null): FoldOutcome {
    this.stats.entries++;
    let e: SchemaEntry;
    try {
      e = decodeSchemaEntry(data);
    } catch (err) {
      this.stats.rejected++;
      this.store.conflict(seq, '?', 0, '', `rejected schema entry: ${errorMessage(err)}`);
      this.store.setPosition(seq);
      return 'rejected';
    }
    if (signer !== null && signer !== e.o) return this.refuse(seq, `entry says origin ${e.o} but comes from ${signer}`);
    if (!this.members.has(e.o)) {
      this.stats.rejected++;
      this.store.conflict(seq, e.o, e.n, e.ops.map((op) => `${op.type} ${op.name}`).join(', '), `rejected schema entry: origin node "${e.o}" is not a member of this cluster`);
      this.log.warn('schema entry rejected: its origin is not a member', { origin: e.o, n: e.n });
      this.store.setPosition(seq);
      return 'rejected';
    }
    if (e.n <= this.store.folded(e.o)) {
      // An entry of ours the stream has under a number already folded (numbered again after a
      // database replacement): it goes out again under a fresh number.
      if (e.o === this.nodeId && this.store.isPendingOwn(e.n, data)) this.renumberOwnAbove(this.store.folded(e.o));
      this.stats.duplicates++;
      this.store.setPosition(seq);
      return 'duplicate';
    }
    if (e.sql !== undefined) return this.foldMigration(seq, e, data);
    const made = e;
    e = this.rebased(e);
    // Each table (with its indexes and triggers, and names a rename links) fits or conflicts on its
    // own: an entry that also creates other tables does not lose them with it (simulation seed 381).
    const r = this.store.replicated();
    const fits: SchemaOp[] = [];
    const lost: SchemaOp[] = [];
    const problems: string[] = [];
    for (const ops of independentGroups(e.ops)) {
      const why = this.check({ ...e, ops }, r);
      if (why === null) fits.push(...ops);
      else {
        lost.push(...ops);
        problems.push(why);
      }
    }
    const problem = problems.length > 0 ? problems.join('; ') : null;
    const implied = fits.length > 0 ? this.foldIntoReplicated({ ...e, ops: fits }, seq) : [];
    if (problem === null) this.stats.applied++;
    else {
      this.stats.conflicts++;
      this.store.conflict(seq, e.o, e.n, lost.map((op) => `${op.type} ${op.name}`).join(', '), problem);
      // Changes the origin made under a table name its refused rename gave are about the old name.
      for (const op of lost) if (op.renamedFrom !== undefined) this.store.addEvent({ seq, origin: e.o, n: e.n, kind: 'lost-rename', tbl: op.name, a: op.renamedFrom, b: op.name });
      this.log.warn('schema entry not applied (conflict): every node keeps the schema as the stream ordered it', { origin: e.o, n: e.n, problem, applied: fits.map((op) => `${op.type} ${op.name}`).join(', ') || undefined });
    }
    this.store.addEvent({ seq, origin: e.o, n: e.n, kind: 'entry', tbl: '', a: null, b: null });
    // Ours and still pending here: this replica made it (its schema has it). Ours but not pending:
    // this node made it before its database was replaced — the local schema follows R like for
    // anyone's entry, and new entries are numbered above it.
    const mine = e.o === this.nodeId && this.store.isPendingOwn(e.n, data);
    if (mine) this.store.removeOwn(e.n);
    else if (e.o === this.nodeId) this.renumberOwnAbove(e.n);
    if (!mine) this.converge(e);
    else {
      if (lost.length > 0) this.converge({ ...e, ops: lost });
      // What stood may differ here from R still: rebased through others' renames, or rewritten
      // here by a rename folded while it was pending (simulation seed 7: SQLite rewrote this
      // node's view, R has it as made). Brought to R like anyone's change (ALTER where it gets there).
      // Indexes and triggers others made on its tables while it was pending waited for it (below).
      if (fits.length > 0) {
        const r = this.store.replicated();
        this.convergeObjects(withDependents(touched({ ...e, ops: fits }), r), this.ownBusy(), r, null);
      }
    }
    // Dependents the renames rewrote in R: every node brings its own copy there, the origin too
    // (it may not have had them when it made the entry).
    this.convergeObjects(implied, this.ownBusy(), this.store.replicated(), null);
    this.store.setFolded(e.o, e.n);
    this.store.setPosition(seq);
    return problem === null ? 'applied' : 'conflict';
  }

  /**
   * `burrow migrate`: the statements run here as written, in this entry's place in the order, in
   * one savepoint with echo suppression on (every node runs them; their row changes are not sent).
   * The objects they changed go into R and the history like captured DDL. A failure is a conflict
   * recorded on this node (nothing of it stays).
   */
  private foldMigration(seq: number, e: SchemaEntry, data: Uint8Array): FoldOutcome {
    const before = new Map(localObjects(this.db.conn).map((o) => [SchemaStore.key(o.type, o.name), o]));
    this.db.exec('SAVEPOINT burrow_migration');
    let problem: string | null = null;
    try {
      this.db.exec(e.sql!);
      this.db.exec('RELEASE burrow_migration');
    } catch (err) {
      this.db.exec('ROLLBACK TO burrow_migration');
      this.db.exec('RELEASE burrow_migration');
      problem = `migration failed here: ${errorMessage(err)}`;
    }
    if (problem === null) {
      const ops = diffSchema(before, localObjects(this.db.conn));
      this.foldIntoReplicated({ ...e, ops }, seq);
      for (const op of ops) if (op.renamedFrom !== undefined) this.capture.renameTable(op.renamedFrom, op.name);
      this.stats.applied++;
      this.stats.migrations++;
    } else {
      this.stats.conflicts++;
      this.store.conflict(seq, e.o, e.n, 'migration', problem);
      this.log.error('a migration (burrow migrate) failed on this node; its schema may differ now (burrow schema)', { origin: e.o, n: e.n, problem });
    }
    this.store.addEvent({ seq, origin: e.o, n: e.n, kind: 'entry', tbl: '', a: null, b: null });
    if (e.o === this.nodeId && this.store.isPendingOwn(e.n, data)) this.store.removeOwn(e.n);
    else if (e.o === this.nodeId) this.renumberOwnAbove(e.n);
    this.store.setFolded(e.o, e.n);
    this.store.setPosition(seq);
    return problem === null ? 'applied' : 'conflict';
  }

  /** Own pending entries at or below n numbered again (store.renumberOwnAbove); their tables' rows are stamped again. */
  private renumberOwnAbove(n: number): void {
    for (const t of this.store.renumberOwnAbove(n)) this.restamp.add(t);
  }

  /** Tables to restamp whole (this node's own DDL on them lost): taken by the caller after capture syncs. */
  takeRestamp(): string[] {
    const out = [...this.restamp];
    this.restamp.clear();
    return out;
  }

  /**
   * The entry as it applies to R now: a table its origin created that R already has, defined as
   * R's plus added columns, is that ADD COLUMN (a node that first met the cluster with its own
   * copy migrated further: simulation seed 645 — its columns are not dropped); and its indexes,
   * triggers and views rewritten through the renames others made that were ordered after what
   * its origin had folded (e.q) — as SQLite rewrites them — so R never defines one on a column or
   * table that no longer has that name. Unchanged: `e` itself.
   */
  private rebased(e: SchemaEntry): SchemaEntry {
    const r = this.store.replicated();
    const tables = e.ops.map((op) => (op.type === 'table' ? rebaseTableOp(asAddColumn(op, r), r, this.othersColumnRenames(e, op.renamedFrom ?? op.name, r)) : op));
    const ops = this.rebaseDependents(e, tables, r);
    return ops.every((op, i) => op === e.ops[i]) ? e : { ...e, ops };
  }

  /** Column renames of table `name` other nodes made that were ordered after what e's origin had folded (e.q). */
  private othersColumnRenames(e: SchemaEntry, name: string, r: ReadonlyMap<string, SchemaObject>): ColumnRename[] {
    if (e.q === undefined) return [];
    const quotedIn = r.get(SchemaStore.key('table', name))?.sql ?? '';
    return this.store.eventsAfter(e.q).filter((ev) => ev.origin !== e.o && ev.kind === 'rename-column' && ev.tbl === name)
      .map((ev) => ({ from: ev.a!, to: ev.b!, quoted: spelledQuoted(quotedIn, ev.b!) }));
  }

  private rebaseDependents(e: SchemaEntry, ops: readonly SchemaOp[], r: ReadonlyMap<string, SchemaObject>): readonly SchemaOp[] {
    if (e.q === undefined || ops.every((op) => op.type === 'table')) return ops;
    const renames: Rename[] = [];
    for (const ev of this.store.eventsAfter(e.q)) {
      if (ev.origin === e.o) continue;
      if (ev.kind === 'rename-table') renames.push({ kind: 'table', from: ev.a!, to: ev.b! });
      else if (ev.kind === 'rename-column') renames.push({ kind: 'column', table: ev.tbl, from: ev.a!, to: ev.b!, quoted: spelledQuoted(r.get(SchemaStore.key('table', ev.tbl))?.sql ?? '', ev.b!) });
    }
    if (renames.length === 0) return ops;
    const own = { made: tableRenames(e.ops), rebased: tableRenames(ops) };
    return ops.map((op) => {
      if (op.type === 'table') return op;
      const from = op.from === null ? null : rebaseDependent(r, renames, op.from, op.tbl);
      const to = op.to === null ? null : rebaseDependent(r, renames, op.to, op.tbl, own);
      const next = { ...op, tbl: to?.tbl ?? from?.tbl ?? op.tbl, from: from?.sql ?? null, to: to?.sql ?? null };
      return next.from !== op.from || next.to !== op.to || next.tbl !== op.tbl ? next : op;
    });
  }

  /** Objects this node's own unfolded entries touch (store keys): they converge when those come back. */
  private ownBusy(): Set<string> {
    return new Set(this.store.pendingOwn().flatMap((p) => touched(p.entry)));
  }

  /** Why the entry does not apply to R, or null. */
  private check(e: SchemaEntry, r: ReadonlyMap<string, SchemaObject>): string | null {
    const sqlOf = (type: string, name: string) => r.get(SchemaStore.key(type, name))?.sql ?? null;
    for (const op of e.ops) {
      if (op.renamedFrom !== undefined) {
        const fits = sqlOf('table', op.renamedFrom) === op.from && sqlOf('table', op.name) === null;
        const done = sqlOf('table', op.renamedFrom) === null && sqlOf('table', op.name) === op.to;
        if (!fits && !done) return `table ${op.renamedFrom} renamed to ${op.name}: the cluster's schema has ${op.renamedFrom} ${sqlOf('table', op.renamedFrom) === null ? 'absent' : 'defined otherwise'} and ${op.name} ${sqlOf('table', op.name) === null ? 'absent' : 'present'}`;
        continue;
      }
      const cur = sqlOf(op.type, op.name);
      if (cur !== op.from && cur !== op.to) {
        return `${op.type} ${op.name}: ${op.from === null ? 'created here, but it already exists' : op.to === null ? 'dropped here' : 'changed here'} `
          + `while the cluster's schema has it ${cur === null ? 'absent' : `as: ${cur}`}`;
      }
    }
    return null;
  }

  /**
   * R takes the entry; renames and drops of tables go into the history (changes made before them
   * are translated). Indexes, triggers and views a rename rewrites (as SQLite does) are rewritten in
   * R too (schema-dependents.ts); returns their keys.
   */
  private foldIntoReplicated(e: SchemaEntry, seq: number): string[] {
    const event = (kind: SchemaEvent['kind'], tbl: string, a: string | null, b: string | null) => this.store.addEvent({ seq, origin: e.o, n: e.n, kind, tbl, a, b });
    const renames = tableRenames(e.ops);
    const before = this.store.replicated();
    const dependents = rewriteDependents(before, renames, new Set(touched(e)));
    for (const op of e.ops) {
      if (op.renamedFrom !== undefined) {
        this.store.setReplicated('table', op.renamedFrom, op.renamedFrom, null, seq);
        event('rename-table', op.renamedFrom, op.renamedFrom, op.name);
        if (op.from !== null && op.to !== null) for (const [a, b] of renamedColumns(op.from, op.to)) event('rename-column', op.name, a, b);
      } else if (op.type === 'table' && op.from !== null && op.to === null) {
        event('drop', op.name, null, null);
      } else if (op.type === 'table' && op.from === null && op.to !== null && !before.has(SchemaStore.key('table', op.name))) {
        event('create', op.name, null, null);
      } else if (op.type === 'table' && op.from !== null && op.to !== null) {
        for (const [a, b] of renamedColumns(op.from, op.to)) event('rename-column', op.name, a, b);
      }
      this.store.setReplicated(op.type, op.name, op.tbl, op.to, seq);
    }
    for (const o of dependents.values()) this.store.setReplicated(o.type, o.name, o.tbl, o.sql, seq);
    return [...dependents.keys()];
  }

  /** Bring the local objects the entry touched to R (skipping those own unfolded entries touch). */
  private converge(e: SchemaEntry): void {
    const busy = this.ownBusy();
    const r = this.store.replicated();
    const keys = touched(e);
    this.movedHome.clear();
    for (const op of e.ops) {
      if (op.type !== 'table') continue;
      const k = SchemaStore.key('table', op.name);
      if (op.renamedFrom !== undefined && busy.has(SchemaStore.key('table', op.renamedFrom))) {
        // The old table is this node's own pending DDL's: it moves when that is ordered, not now
        // (creating the new name empty here would leave this node's rows behind).
        busy.add(k);
        continue;
      }
      if (busy.has(k)) continue;
      const target = r.get(k)?.sql ?? null;
      if (op.renamedFrom !== undefined && target !== null && this.localSql('table', op.renamedFrom) === op.from && this.localSql('table', op.name) === null) {
        this.guarded(`rename table ${op.renamedFrom} to ${op.name}`, () => {
          this.renameTable(op.renamedFrom!, op.name);
          this.capture.renameTable(op.renamedFrom!, op.name);
        });
      } else if (e.o === this.nodeId && op.to !== null && target === null && this.localSql('table', op.name) !== null) {
        // Our own change of a table lost in the stream order, and R has no table of that name:
        // the table goes, with its rows, to where R has the table the change was made on — its
        // old name, or the name another node's rename gave it — then to R's definition, and its
        // rows are sent again under that name.
        const home = this.whereNow(op.renamedFrom ?? op.name, e.q ?? 0, r);
        if (home === null || home === op.name || busy.has(SchemaStore.key('table', home)) || this.localSql('table', home) !== null) continue;
        this.guarded(`rename table ${op.name} back to ${home}`, () => {
          // SQLite rewrites views and triggers naming the old name; R has them as the stream
          // ordered them (simulation seed 141): those it rewrote here are brought to R too.
          const views = () => new Map(localObjects(this.db.conn).filter((o) => o.type === 'view' || o.type === 'trigger').map((o) => [SchemaStore.key(o.type, o.name), o.sql]));
          const before = views();
          this.renameTable(op.name, home);
          for (const [k, sql] of views()) if (before.get(k) !== sql) keys.push(k);
          this.capture.renameTable(op.name, home);
          this.restamp.add(home);
          this.movedHome.set(home, op.name);
          keys.push(SchemaStore.key('table', home));
        });
      }
    }
    this.convergeObjects(e.o === this.nodeId ? withDependents(keys, r) : keys, busy, r, e);
  }

  /** Where R has table `name` of position q now: followed through the table renames since; null: dropped. */
  private whereNow(name: string, q: number, r: ReadonlyMap<string, SchemaObject>): string | null {
    let cur = name;
    for (const ev of this.store.eventsAfter(q)) {
      if (ev.kind === 'rename-table' && ev.a === cur) cur = ev.b!;
      else if (ev.kind === 'drop' && ev.tbl === cur) return null;
    }
    return r.has(SchemaStore.key('table', cur)) ? cur : null;
  }

  /**
   * ALTER TABLE … RENAME TO; when SQLite refuses because another object no longer parses against
   * the schema (a view naming a column this table lacks), the legacy rename, which leaves other
   * objects alone — the rows must move with the table, never be dropped with its old name.
   */
  private renameTable(from: string, to: string): void {
    const sql = `ALTER TABLE main.${quoteIdent(from)} RENAME TO ${quoteIdent(to)}`;
    this.db.exec('SAVEPOINT burrow_rename');
    try {
      this.db.exec(sql);
    } catch {
      this.db.exec('ROLLBACK TO burrow_rename');
      this.legacyAlter(() => this.db.exec(sql));
    } finally {
      this.db.exec('RELEASE burrow_rename');
    }
  }

  /**
   * After a restore (merge): every object R has that is different here, as capture last saw it
   * (local = seen: not DDL of this node capture has yet to send), is brought to R — except those
   * this node's own unfolded DDL touches and `skip` (objects the merge just created from the
   * snapshot). When the snapshot's R replaced this replica's (`jumped`: positions it never folded),
   * objects R lacks that capture has seen and no own entry touches were renamed or dropped in that
   * history: they go too (chaos seed 404: a table the cluster had renamed and dropped stayed on
   * the restored node with its rows, and a later snapshot of it spread it again).
   */
  convergeToReplicated(skip: ReadonlySet<string>, jumped = false): void {
    const r = this.store.replicated();
    const seen = this.store.seen();
    const busy = new Set([...skip, ...this.ownBusy()]);
    const differ = [...r.values()].filter((o) => {
      const local = this.localSql(o.type, o.name);
      return local !== o.sql && local === (seen.get(SchemaStore.key(o.type, o.name))?.sql ?? null);
    }).map((o) => SchemaStore.key(o.type, o.name));
    const gone = jumped ? localObjects(this.db.conn).filter((o) => {
      const k = SchemaStore.key(o.type, o.name);
      return !r.has(k) && seen.get(k)?.sql === o.sql;
    }).map((o) => SchemaStore.key(o.type, o.name)) : [];
    this.convergeObjects([...differ, ...gone], busy, r, null);
  }

  /** Local objects (store keys) brought to R, tables first; `e`: the entry, when its own lost change may be in them. */
  private convergeObjects(keys: readonly string[], busy: ReadonlySet<string>, r: ReadonlyMap<string, SchemaObject>, e: SchemaEntry | null): void {
    // An index or trigger on a table this node's own pending DDL touches waits with that table (it
    // may name a column the table has only once that DDL is ordered: simulation seed 65).
    const objs = [...new Set(keys)].filter((k) => !busy.has(k)).map((k) => {
      const [type, name] = k.split('\u0000') as [SchemaObjectType, string];
      return { type, name, target: r.get(k) ?? null };
    }).filter((o) => o.type === 'table' || o.type === 'view' || !o.target || !busy.has(SchemaStore.key('table', o.target.tbl)))
      .sort((a, b) => typeRank[a.type] - typeRank[b.type]);
    for (const o of objs) {
      const local = this.localSql(o.type, o.name);
      const target = o.target?.sql ?? null;
      if (local === target) continue;
      const lost = e && e.o === this.nodeId ? this.lostChange(e, o.name) : null;
      this.guarded(`${o.type} ${o.name}`, () => (o.type === 'table' ? this.makeTable(o.name, local, target, r, lost) : this.makeObject(o.type, o.name, target)));
    }
  }

  /**
   * This node's own entry lost in the stream order and touched table `name`: its table holds its
   * own change on top of the definition it had seen (the op's `from`, at position e.q). Only the
   * columns of that definition carry values into the cluster's definition — through the column
   * renames folded since e.q — and its rows are restamped afterwards, so every node ends with
   * this node's rows as they are after the change (its own lost columns gone, their defaults
   * as everywhere else).
   */
  private lostChange(e: SchemaEntry, name: string): LostChange | null {
    const op = e.ops.find((x) => x.type === 'table' && (x.name === name || x.name === this.movedHome.get(name)));
    if (!op) return null;
    // A table this node created that lost to another definition: its columns carry values by name.
    const before = (declaredColumns(op.from ?? op.to ?? '') ?? []).map((c) => c.name);
    const since = e.q !== undefined ? this.renamesSince(e.q, name) : new Map<string, string>();
    // A column this lost change renamed holds the values of the column it was: they go to that
    // column's name in R (a column renamed here and elsewhere keeps its values under R's name).
    const own = new Map(op.from !== null && op.to !== null ? renamedColumns(op.from, op.to) : []);
    const renames = new Map<string, string>();
    for (const c of before) {
      const here = own.get(c) ?? c;
      const there = since.get(c) ?? c;
      if (here !== there) renames.set(here, there);
    }
    return { columns: new Set(before.map((c) => own.get(c) ?? c)), renames };
  }

  private localSql(type: string, name: string): string | null {
    return (this.db.conn.prepare('SELECT sql FROM main.sqlite_schema WHERE type = ? AND name = ?').pluck().get(type, name) as string | undefined) ?? null;
  }

  /** Run one object's DDL in a savepoint: a failure leaves that object as it was (drift shown by `burrow schema`). */
  private guarded(what: string, fn: () => void): void {
    this.db.exec('SAVEPOINT burrow_schema_object');
    try {
      fn();
      this.db.exec('RELEASE burrow_schema_object');
    } catch (err) {
      this.db.exec('ROLLBACK TO burrow_schema_object');
      this.db.exec('RELEASE burrow_schema_object');
      this.stats.localErrors++;
      this.log.error('could not apply a replicated schema change here; this node\'s schema differs (burrow schema shows it)', { object: what, error: errorMessage(err) });
    }
  }

  private makeObject(type: SchemaObjectType, name: string, target: string | null): void {
    this.db.exec(`DROP ${type.toUpperCase()} IF EXISTS main.${quoteIdent(name)}`);
    if (target !== null) this.db.exec(target);
  }

  /** A table from its local definition to the target: ALTER where that gets exactly there, else rebuilt with its rows. */
  private makeTable(name: string, local: string | null, target: string | null, r: ReadonlyMap<string, SchemaObject>, lost: LostChange | null): void {
    if (target === null) {
      this.db.exec(`DROP TABLE IF EXISTS main.${quoteIdent(name)}`);
      return;
    }
    if (local === null) {
      this.db.exec(target);
      this.restoreDependents(name, r);
      return;
    }
    if (lost) {
      this.rebuild(name, local, target, r, lost);
      this.restamp.add(name);
      return;
    }
    for (const alter of alterFor(name, local, target)) {
      this.db.exec('SAVEPOINT burrow_schema_alter');
      let ok = false;
      try {
        this.db.exec(alter);
        ok = this.localSql('table', name) === target;
      } catch {
        ok = false;
      }
      if (ok) {
        this.db.exec('RELEASE burrow_schema_alter');
        return;
      }
      this.db.exec('ROLLBACK TO burrow_schema_alter');
      this.db.exec('RELEASE burrow_schema_alter');
    }
    this.rebuild(name, local, target, r, null);
  }

  /** Column renames (old → new name, chained) of table `name` folded after stream position q. */
  private renamesSince(q: number, name: string): Map<string, string> {
    const out = new Map<string, string>();
    for (const ev of this.store.eventsAfter(q)) {
      if (ev.kind !== 'rename-column' || ev.tbl !== name) continue;
      for (const [from, to] of out) if (to === ev.a) out.set(from, ev.b!);
      if (![...out.values()].includes(ev.b!)) out.set(ev.a!, ev.b!);
    }
    return out;
  }

  /**
   * SQLite's way to change a table ALTER cannot: the old one renamed aside (references in other
   * objects left as they are), the new one created from the exact definition, the rows copied by
   * column name (rowids kept), the old one dropped, its indexes and triggers created again from R.
   */
  private rebuild(name: string, local: string, target: string, r: ReadonlyMap<string, SchemaObject>, lost: LostChange | null): void {
    const cols = declaredColumns(target);
    if (!cols) throw new Error(`the definition does not run here: ${target}`);
    let oldCols = new Set((this.db.conn.prepare(`PRAGMA main.table_xinfo(${quoteIdent(name)})`).all() as { name: string; hidden: bigint }[]).filter((c) => c.hidden === 0n).map((c) => c.name));
    if (lost) oldCols = new Set([...oldCols].filter((c) => lost.columns.has(c)));
    // Columns renamed keep their values; the others are copied by name.
    const renamed = new Map((lost ? [...lost.renames] : renamedColumns(local, target)).map(([a, b]) => [b, a]));
    const pairs = cols.map((c) => [c.name, renamed.get(c.name) ?? c.name] as const).filter(([, from]) => oldCols.has(from));
    const keyless = cols.filter((c) => c.pk && !pairs.some(([to]) => to === c.name));
    // Rows without their key would be other rows (NULL keys, or new rowids): never copy them so.
    if (keyless.length > 0 && !(keyless.length === 1 && /^INTEGER$/i.test(keyless[0]!.type))) {
      throw new Error(`cannot rebuild table ${name}: its rows have no value for key column(s) ${keyless.map((c) => c.name).join(', ')} of the cluster's definition`);
    }
    const oldWr = this.withoutRowid(name);
    this.legacyAlter(() => {
      this.db.exec(`ALTER TABLE main.${quoteIdent(name)} RENAME TO ${rebuildName}`);
      this.db.exec(target);
      const rid = !oldWr && !this.withoutRowid(name) ? ['rowid'] : [];
      const into = [...rid, ...pairs.map(([to]) => quoteIdent(to))].join(', ');
      // A NOT NULL column with a DEFAULT takes its default for a NULL here, as SQLite does when it
      // adds such a column (chaos seed 505: a row this node had with a NULL became a NOT NULL column).
      const decl = new Map((this.db.conn.prepare(`PRAGMA main.table_info(${quoteIdent(name)})`).all() as { name: string; notnull: bigint | number; dflt_value: string | null }[])
        .map((c) => [c.name, c]));
      const value = (to: string, f: string) => {
        const d = decl.get(to);
        return d && Number(d.notnull) === 1 && d.dflt_value !== null ? `coalesce(${quoteIdent(f)}, ${d.dflt_value})` : quoteIdent(f);
      };
      const from = [...rid, ...pairs.map(([to, f]) => value(to, f))].join(', ');
      if (into.length > 0) this.db.exec(`INSERT INTO main.${quoteIdent(name)}(${into}) SELECT ${from} FROM main.${rebuildName}`);
      this.db.exec(`DROP TABLE main.${rebuildName}`);
    });
    this.restoreDependents(name, r);
    this.capture.adopt(name);
    this.stats.rebuilds++;
  }

  /** Indexes and triggers R has on the table that are missing here (dropped with a rebuilt table). */
  private restoreDependents(name: string, r: ReadonlyMap<string, SchemaObject>): void {
    for (const o of r.values()) {
      if (o.tbl !== name || (o.type !== 'index' && o.type !== 'trigger') || this.localSql(o.type, o.name) !== null) continue;
      this.db.exec(o.sql);
    }
  }

  /** Run `fn` with legacy_alter_table on: renames leave other objects' references alone. */
  private legacyAlter(fn: () => void): void {
    this.db.conn.pragma('legacy_alter_table = ON');
    try {
      fn();
    } finally {
      this.db.conn.pragma('legacy_alter_table = OFF');
    }
  }

  private withoutRowid(name: string): boolean {
    const row = (this.db.conn.prepare('PRAGMA main.table_list').all() as { name: string; wr: bigint }[]).find((t) => t.name === name);
    return row?.wr === 1n;
  }
}

export type { SchemaOp };
