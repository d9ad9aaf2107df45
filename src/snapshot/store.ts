import { createReadStream, createWriteStream } from 'node:fs';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { JetStreamClient } from '@nats-io/jetstream';
import { Objm, type ObjectStore } from '@nats-io/obj';
import { parseManifest, type Manifest } from './manifest.ts';

/** The cluster's snapshot bucket (JetStream object store, R = the shard streams' replicas). */
export function bucketName(cluster: string): string {
  return `burrow_${cluster}_snapshots`;
}

/** An object in the bucket that is not a usable snapshot (reported, never used). */
export interface BadObject {
  readonly name: string;
  readonly problem: string;
}

/**
 * Snapshots in the object store: put (file + manifest in the object's metadata), list newest
 * first, download to a file, delete. Chunked by the object store (128 KB messages), so a
 * snapshot is not bounded by max_payload.
 */
export class SnapshotStore {
  private constructor(private readonly os: ObjectStore, readonly bucket: string) {}

  static async open(js: JetStreamClient, cluster: string, replicas: number): Promise<SnapshotStore> {
    const bucket = bucketName(cluster);
    const os = await new Objm(js).create(bucket, { replicas, description: `burrow cluster ${cluster}: replica snapshots` });
    return new SnapshotStore(os, bucket);
  }

  async put(file: string, manifest: Manifest, onBytes?: (n: number) => void): Promise<void> {
    let sent = 0;
    const rs = Readable.toWeb(createReadStream(file, { highWaterMark: 1024 * 1024 }).on('data', (c) => {
      sent += (c as Buffer).length;
      onBytes?.(sent);
    })) as ReadableStream<Uint8Array>;
    await this.os.put({ name: manifest.name, description: `snapshot of ${manifest.node}`, metadata: { manifest: JSON.stringify(manifest) } }, rs);
  }

  /** Every snapshot, newest first, and objects that are not usable snapshots. */
  async list(cluster: string): Promise<{ snapshots: Manifest[]; bad: BadObject[] }> {
    const snapshots: Manifest[] = [];
    const bad: BadObject[] = [];
    for (const info of await this.os.list()) {
      if (info.deleted) continue;
      const m = parseManifest(info.metadata?.manifest, info.name);
      if (typeof m === 'string') bad.push({ name: info.name, problem: m });
      else if (m.cluster !== cluster) bad.push({ name: info.name, problem: `snapshot of cluster ${m.cluster}` });
      else snapshots.push(m);
    }
    snapshots.sort((a, b) => b.atMs - a.atMs || (a.name < b.name ? 1 : -1));
    return { snapshots, bad };
  }

  /** Download `name` into `file`; the object store checks its own digest, the caller checks the manifest's. */
  async download(name: string, file: string, onBytes?: (n: number) => void): Promise<void> {
    const r = await this.os.get(name);
    if (!r) throw new Error(`snapshot ${name} is not in bucket ${this.bucket}`);
    let got = 0;
    const counted = Readable.fromWeb(r.data as import('node:stream/web').ReadableStream<Uint8Array>).on('data', (c) => {
      got += (c as Buffer).length;
      onBytes?.(got);
    });
    await pipeline(counted, createWriteStream(file));
    const err = await r.error;
    if (err) throw new Error(`snapshot ${name}: download failed: ${err.message}`);
  }

  async delete(name: string): Promise<void> {
    await this.os.delete(name);
  }
}
