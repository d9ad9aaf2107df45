import { sign, verify, type KeyObject } from 'node:crypto';
import { signingKey, verifyingKey } from './keys.ts';

/**
 * Signed messages. A sealed message is
 *   0xC1 ("never used" in msgpack, so no plain batch starts with it) · version 1 · id length ·
 *   signer node id · Ed25519 signature (64 bytes) · payload,
 * and the signature covers "burrow/1", the cluster, the kind, the signer and the payload: a batch
 * cannot be replayed as a schema entry, into another cluster, or under another node's name. The
 * payload itself names its origin, shard and batch number; receivers check that origin is the signer.
 */

export type SealKind = 'batch' | 'schema' | 'hb' | 'replay-req' | 'replay-reply';

const magic = 0xc1;
const version = 1;
const sigBytes = 64;

function signedBytes(cluster: string, kind: SealKind, signer: string, payload: Uint8Array): Buffer {
  return Buffer.concat([Buffer.from(`burrow/1\0${cluster}\0${kind}\0${signer}\0`), payload]);
}

export class Sealer {
  private readonly key: KeyObject;
  constructor(private readonly cluster: string, private readonly nodeId: string, seed: string) {
    this.key = signingKey(seed);
  }

  seal(kind: SealKind, payload: Uint8Array): Uint8Array {
    const id = Buffer.from(this.nodeId);
    const sig = sign(null, signedBytes(this.cluster, kind, this.nodeId, payload), this.key);
    return Buffer.concat([Buffer.from([magic, version, id.length]), id, sig, payload]);
  }
}

/** signer is null when signing is off ([security] sign = false): the payload's own claims stand. */
export type Opened = { readonly ok: true; readonly signer: string | null; readonly payload: Uint8Array } | { readonly ok: false; readonly reason: string };

/** What the node's messaging uses: sealing and opening, or (signing off) neither. */
export interface Seal {
  readonly on: boolean;
  seal(kind: SealKind, payload: Uint8Array): Uint8Array;
  open(kind: SealKind, data: Uint8Array): Opened;
}

/** Signing off: messages go as they are and are taken as they come. */
export const noSeal: Seal = {
  on: false,
  seal: (_kind, payload) => payload,
  open: (_kind, data) => ({ ok: true, signer: null, payload: data }),
};

/** Signing on: this node's sealer and the members' opener. */
export function signedSeal(sealer: Sealer, opener: Opener): Seal {
  return { on: true, seal: (kind, payload) => sealer.seal(kind, payload), open: (kind, data) => opener.open(kind, data) };
}

/** Verifies sealed messages against the members' public keys (replaced on a config reload). */
export class Opener {
  private keys = new Map<string, KeyObject>();
  readonly stats = { opened: 0, refused: 0 };

  constructor(private readonly cluster: string, members: ReadonlyMap<string, string>) {
    this.setMembers(members);
  }

  /** Node id → public key of the current members. */
  setMembers(members: ReadonlyMap<string, string>): void {
    this.keys = new Map([...members].map(([id, pub]) => [id, verifyingKey(pub)]));
  }

  open(kind: SealKind, data: Uint8Array): Opened {
    const r = this.check(kind, data);
    if (r.ok) this.stats.opened++;
    else this.stats.refused++;
    return r;
  }

  private check(kind: SealKind, data: Uint8Array): Opened {
    if (data.length < 3 || data[0] !== magic) return { ok: false, reason: 'not signed' };
    if (data[1] !== version) return { ok: false, reason: `signature envelope version ${data[1]} (this node reads ${version})` };
    const idEnd = 3 + data[2]!;
    if (data.length < idEnd + sigBytes) return { ok: false, reason: 'signature envelope cut short' };
    const signer = Buffer.from(data.subarray(3, idEnd)).toString('utf8');
    const key = this.keys.get(signer);
    if (!key) return { ok: false, reason: `signed by "${signer.slice(0, 40)}", not a member of this cluster (or without public_key in cluster.toml)` };
    const sig = data.subarray(idEnd, idEnd + sigBytes);
    const payload = data.subarray(idEnd + sigBytes);
    if (!verify(null, signedBytes(this.cluster, kind, signer, payload), key, sig)) return { ok: false, reason: `bad signature (claims ${signer}'s key for a ${kind})` };
    return { ok: true, signer, payload };
  }
}

/** The payload of a sealed message without checking it (observers and tests that read the streams). */
export function unsealUnverified(data: Uint8Array): Uint8Array {
  if (data.length < 3 || data[0] !== magic) return data;
  return data.subarray(3 + data[2]! + sigBytes);
}
