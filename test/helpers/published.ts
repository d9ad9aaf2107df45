import { decodeBatch } from '../../src/codec/batch-codec.ts';
import { unsealUnverified } from '../../src/security/envelope.ts';
import { decodeValues, type SqlValue } from '../../src/codec/value-codec.ts';
import { stringify, type TestCluster } from './cluster.ts';

/**
 * What the nodes published (each node's sent log), and each key's winner computed here with a
 * comparator written out in the test helper — not burrow's lwwWins, not the clocks the applier
 * wrote — so a broken apply (LWW inverted, a lost change) cannot also break the expectation.
 */

export interface PublishedChange {
  readonly table: string;
  /** The key values as `stringify` (cluster.ts) writes them. */
  readonly key: string;
  readonly hlc: bigint;
  readonly node: string;
  readonly deleted: boolean;
  /** Column → value of the row image (null for deletes). */
  readonly row: Readonly<Record<string, SqlValue>> | null;
}

/** Every change in every node's sent log (a batch kept by several nodes counts once). */
export function publishedChanges(c: TestCluster): PublishedChange[] {
  const seen = new Set<string>();
  const out: PublishedChange[] = [];
  for (const n of c.nodes) {
    for (const { payload } of c.query<{ payload: Buffer }>(n.id, 'SELECT payload FROM __burrow_sent')) {
      const id = payload.toString('base64');
      if (seen.has(id)) continue;
      seen.add(id);
      const b = decodeBatch(unsealUnverified(payload));
      for (const ch of b.changes) {
        const t = b.tables[ch.t]!;
        let row: Record<string, SqlValue> | null = null;
        if (ch.r) {
          const vals = decodeValues(ch.r);
          row = Object.fromEntries(t.c.map((col, i) => [col, vals[i]!]));
        }
        out.push({ table: t.n, key: stringify(decodeValues(ch.k)), hlc: ch.h, node: b.o, deleted: ch.d === 1, row });
      }
    }
  }
  return out;
}

/** Last writer wins: the higher HLC, then the higher node id (plain string order). */
function beats(a: PublishedChange, b: PublishedChange): boolean {
  return a.hlc !== b.hlc ? a.hlc > b.hlc : a.node > b.node;
}

/** Per key of `table` (keyOf): the winning published change. */
export function winners(changes: readonly PublishedChange[], table: string): Map<string, PublishedChange> {
  const out = new Map<string, PublishedChange>();
  for (const ch of changes) {
    if (ch.table !== table) continue;
    const cur = out.get(ch.key);
    if (!cur || beats(ch, cur)) out.set(ch.key, ch);
  }
  return out;
}

/** The key of a row as `winners` names it. */
export function keyOf(...values: SqlValue[]): string {
  return stringify(values);
}
