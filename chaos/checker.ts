import type { ObservedChange } from './observer.ts';
import type { HistoryWrite } from './workload.ts';

/** Final rows of one node: table → keyId → value column. */
export type FinalRows = Map<string, Map<string, string>>;

export interface Violation {
  readonly kind: 'divergence' | 'wrong-winner' | 'lost-write' | 'phantom-change' | 'phantom-row'
    // recorded by the runner, not checkRun:
    | 'not-converged' | 'undrained' | 'undecodable-batch' | 'checksum-differs' | 'restart-failed' | 'schema-differs' | 'ddl-rows-differ';
  readonly detail: string;
}

export interface CheckStats {
  readonly keys: number;
  /** keys changed by more than one node (real conflicts) */
  readonly conflictKeys: number;
  readonly observedChanges: number;
  readonly historyWrites: number;
}

/**
 * The invariants of a chaos run, checked from three independent records:
 *  - history: every committed write (recorded by the writers after COMMIT returned),
 *  - observed: every change the nodes published (the observer's durable consumers),
 *  - finals: every node's rows after healing and quiescence.
 *
 * convergence   every node holds identical rows;
 * winner        each key's final state is the observed change with the highest (hlc, node):
 *               its value, or absent when that change is a delete (deleted stays deleted
 *               unless a later-winning write re-created it);
 * no lost write each node's last committed write to each key was published by that node
 *               (earlier writes of the same writer may be coalesced into it);
 * no phantoms   every published change is a committed write of its node, and every final row
 *               comes from a published change.
 * `lww` is the comparison the checker trusts (the real one: not affected by a broken apply).
 */
export function checkRun(history: readonly HistoryWrite[], observed: readonly ObservedChange[], finals: ReadonlyMap<string, FinalRows>,
  lww: (aH: bigint, aN: string, bH: bigint, bN: string) => boolean = trueLww): { violations: Violation[]; stats: CheckStats } {
  const violations: Violation[] = [];
  const add = (kind: Violation['kind'], detail: string) => {
    if (violations.filter((v) => v.kind === kind).length < 20) violations.push({ kind, detail });
    else if (!violations.some((v) => v.kind === kind && v.detail.startsWith('…'))) violations.push({ kind, detail: '… more of this kind' });
  };

  // Convergence: identical rows on every node.
  const nodes = [...finals.keys()];
  const first = finals.get(nodes[0]!)!;
  for (const n of nodes.slice(1)) {
    const other = finals.get(n)!;
    for (const table of new Set([...first.keys(), ...other.keys()])) {
      const a = first.get(table) ?? new Map<string, string>();
      const b = other.get(table) ?? new Map<string, string>();
      for (const k of new Set([...a.keys(), ...b.keys()])) {
        if (a.get(k) !== b.get(k)) add('divergence', `${table}[${k}]: ${nodes[0]} has ${a.get(k) ?? '(absent)'}, ${n} has ${b.get(k) ?? '(absent)'}`);
      }
    }
  }

  // Winner per key among published changes.
  const byKey = new Map<string, ObservedChange[]>();
  for (const c of observed) {
    const id = `${c.t}[${c.k}]`;
    let list = byKey.get(id);
    if (!list) byKey.set(id, (list = []));
    list.push(c);
  }
  let conflictKeys = 0;
  for (const [id, list] of byKey) {
    let w = list[0]!;
    for (const c of list) if (lww(c.hlc, c.node, w.hlc, w.node)) w = c;
    if (new Set(list.map((c) => c.node)).size > 1) conflictKeys++;
    const table = list[0]!.t;
    const k = list[0]!.k;
    for (const n of nodes) {
      const got = finals.get(n)!.get(table)?.get(k);
      const want = w.deleted ? undefined : w.v ?? undefined;
      if (got !== want) {
        add('wrong-winner', `${id} on ${n}: has ${got ?? '(absent)'}, the winning change (hlc ${w.hlc}, ${w.node}) is ${w.deleted ? 'a delete' : w.v}`);
      }
    }
  }

  // Every final row comes from a published change.
  for (const n of nodes) {
    for (const [table, rows] of finals.get(n)!) {
      for (const [k, v] of rows) {
        const list = byKey.get(`${table}[${k}]`);
        if (!list || !list.some((c) => !c.deleted && c.v === v)) add('phantom-row', `${table}[${k}] = ${v} on ${n} was never published`);
      }
    }
  }

  // Published changes are committed writes of their node; the last write of each (node, key) was published.
  const written = new Map<string, HistoryWrite[]>();
  for (const h of history) {
    const id = `${h.node}:${h.t}[${h.k}]`;
    let list = written.get(id);
    if (!list) written.set(id, (list = []));
    list.push(h);
  }
  for (const c of observed) {
    const list = written.get(`${c.node}:${c.t}[${c.k}]`) ?? [];
    const ok = c.deleted ? list.some((h) => h.op === 'd') : list.some((h) => h.op === 'u' && h.v === c.v);
    if (!ok) add('phantom-change', `${c.node} published ${c.t}[${c.k}] ${c.deleted ? 'delete' : `= ${c.v}`} with no such committed write`);
  }
  for (const [id, list] of written) {
    // Writers own disjoint keys on a node, so one writer's sequence orders them; the bulk writer is the runner.
    const last = list.reduce((a, b) => (b.seq > a.seq ? b : a));
    const [node, rest] = [id.slice(0, id.indexOf(':')), id.slice(id.indexOf(':') + 1)];
    const pub = (byKey.get(rest) ?? []).filter((c) => c.node === node);
    const ok = last.op === 'd' ? pub.some((c) => c.deleted) : pub.some((c) => !c.deleted && c.v === last.v);
    if (!ok) add('lost-write', `${node}'s last committed write to ${rest} (${last.op === 'd' ? 'delete' : last.v}, seq ${last.seq}) was never published`);
  }

  return {
    violations,
    stats: { keys: byKey.size, conflictKeys, observedChanges: observed.length, historyWrites: history.length },
  };
}

/** LWW as the checker knows it, independent of any switch in the node's code. */
function trueLww(aH: bigint, aN: string, bH: bigint, bN: string): boolean {
  if (aH !== bH) return aH > bH;
  return aN > bN;
}

