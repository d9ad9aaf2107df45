import type { MetaStore } from '../store/meta-store.ts';

/** One node this replica has had in its cluster.toml: its signing key, and when it left the file (null: a member now). */
interface Known {
  readonly key: string | null;
  readonly removedAtMs: number | null;
}

/** A member of cluster.toml as membership needs it. */
export interface MemberSpec {
  readonly id: string;
  readonly publicKey: string | null;
}

/**
 * Whose batches, schema entries and signatures this node accepts: the members of cluster.toml
 * and, for `history_s` after they left it, the former members.
 *
 * Why former members: membership is not ordered with the streams. Nodes reload cluster.toml at
 * different moments, so a removed node's messages published before it stopped (in flight, or
 * still in a stream) reach some nodes before their reload and others after. Refused on the live
 * list they were applied on some replicas and refused on others — the schema fold and the rows
 * diverged (chaos seed 101). Accepting them everywhere is the same decision on every node; new
 * messages of a removed node are kept out by the NATS permissions the reload takes away (embedded
 * servers) and by it being stopped. After `history_s` none of its messages is left in a shard
 * stream and a node that was away that long restores from a snapshot, so it is forgotten.
 *
 * The list is kept in `__burrow_meta` (key `members`), so a node restarted with a new file also
 * knows whom the file dropped.
 */
export class Membership {
  private known = new Map<string, Known>();

  constructor(private readonly meta: MetaStore, private readonly horizonMs: number) {
    this.known = Membership.parse(meta.get('members'));
  }

  /** Take cluster.toml's member list (at start and on reload); those it dropped become former members now. */
  take(members: readonly MemberSpec[], nowMs: number): void {
    const next = new Map<string, Known>();
    const inFile = new Set(members.map((m) => m.id));
    for (const [id, k] of this.known) {
      if (inFile.has(id)) continue;
      const removedAtMs = k.removedAtMs ?? nowMs;
      if (nowMs - removedAtMs < this.horizonMs) next.set(id, { key: k.key, removedAtMs });
    }
    for (const m of members) next.set(m.id, { key: m.publicKey, removedAtMs: null });
    this.known = next;
  }

  /** Keep the list in `__burrow_meta` (written only when it changed). In the caller's transaction. */
  save(): void {
    const stored = JSON.stringify(Object.fromEntries(this.known));
    if (this.meta.get('members') !== stored) this.meta.set('members', stored);
  }

  /** Node ids whose messages are accepted at `nowMs`: members and former members within the horizon. */
  accepted(nowMs: number): Set<string> {
    return new Set([...this.known].filter(([, k]) => this.within(k, nowMs)).map(([id]) => id));
  }

  /** Node id → signing key of every accepted node that has one. */
  acceptedKeys(nowMs: number): Map<string, string> {
    return new Map([...this.known].filter(([, k]) => k.key !== null && this.within(k, nowMs)).map(([id, k]) => [id, k.key!]));
  }

  /** Former members still accepted, with when they left cluster.toml (status). */
  former(nowMs: number): { id: string; removedAtMs: number; acceptedUntilMs: number }[] {
    return [...this.known].filter(([, k]) => k.removedAtMs !== null && this.within(k, nowMs))
      .map(([id, k]) => ({ id, removedAtMs: k.removedAtMs!, acceptedUntilMs: k.removedAtMs! + this.horizonMs }));
  }

  private within(k: Known, nowMs: number): boolean {
    return k.removedAtMs === null || nowMs - k.removedAtMs < this.horizonMs;
  }

  /** The stored list; anything unreadable counts as none (the file's members are written next). */
  private static parse(stored: unknown): Map<string, Known> {
    if (typeof stored !== 'string') return new Map();
    try {
      const o = JSON.parse(stored) as Record<string, { key?: unknown; removedAtMs?: unknown }>;
      const out = new Map<string, Known>();
      for (const [id, k] of Object.entries(o)) {
        out.set(id, {
          key: typeof k.key === 'string' ? k.key : null,
          removedAtMs: typeof k.removedAtMs === 'number' ? k.removedAtMs : null,
        });
      }
      return out;
    } catch {
      return new Map();
    }
  }
}
