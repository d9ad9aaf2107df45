/**
 * What a snapshot is, as stored with it (object metadata `manifest`, JSON): where it came from,
 * what it holds, and the SHA-256 of its bytes (checked before a restore uses it).
 */
export interface Manifest {
  readonly v: 1;
  readonly name: string;
  readonly cluster: string;
  readonly shards: number;
  readonly node: string;
  readonly atMs: number;
  /** Size of the snapshot file. */
  readonly bytes: number;
  /** SHA-256 of the snapshot file, hex. */
  readonly sha256: string;
  /** Per shard (index = shard): the highest stream sequence the snapshot's replica had applied. */
  readonly positions: readonly number[];
  /** Per origin node: every batch number up to this one is in the snapshot. */
  readonly received: Readonly<Record<string, number>>;
  /** The replica's HLC mark (decimal). */
  readonly hlc: string;
  readonly tables: readonly { readonly name: string; readonly rows: number }[];
}

export const manifestVersion = 1;

/** Object names sort by time: snap-<yyyymmddThhmmss.mmmZ>-<node>. */
export function snapshotName(node: string, atMs: number): string {
  return `snap-${new Date(atMs).toISOString().replaceAll('-', '').replaceAll(':', '')}-${node}`;
}

/** A manifest read back from the object store, or a reason it is not one. */
export function parseManifest(text: string | undefined, objectName: string): Manifest | string {
  if (text === undefined) return `object ${objectName} has no burrow manifest`;
  let m: Record<string, unknown>;
  try {
    m = JSON.parse(text) as Record<string, unknown>;
  } catch {
    return `object ${objectName}: manifest is not JSON`;
  }
  const ok = m.v === manifestVersion && m.name === objectName && typeof m.cluster === 'string' && typeof m.node === 'string'
    && Number.isInteger(m.shards) && Number.isInteger(m.atMs) && Number.isInteger(m.bytes) && typeof m.sha256 === 'string'
    && Array.isArray(m.positions) && m.positions.every((p) => Number.isInteger(p)) && typeof m.received === 'object' && m.received !== null
    && typeof m.hlc === 'string' && Array.isArray(m.tables);
  return ok ? (m as unknown as Manifest) : `object ${objectName}: manifest has a field missing or of the wrong type`;
}

/** The manifest's positions cover a stream when the stream still holds every message after them. */
export function covers(m: Manifest, streams: readonly { firstSeq: number; lastSeq: number }[]): boolean {
  // An emptied stream (its messages aged out: first = last + 1) still needs the positions to reach it.
  return streams.every((s, shard) => (m.positions[shard] ?? 0) >= s.firstSeq - 1);
}
