import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createPrivateKey, createPublicKey, randomBytes, type KeyObject } from 'node:crypto';
import path from 'node:path';
import { createUser, fromSeed, Prefix } from '@nats-io/nkeys';
import { Codec } from '@nats-io/nkeys/lib/codec.js';
import { BurrowError } from '../util/errors.ts';

/**
 * A node's keys, in its data folder (0600): `node.nkey` signs what it sends (batches, schema
 * entries, heartbeats, repair messages; its public key is `public_key` in cluster.toml) and
 * `nats.nkey` authenticates it to NATS (`nats_key`). Two keys, not one: a NATS server asks the
 * client to sign a nonce of its choosing, and a server that is not honest must not be able to get
 * a batch signature that way. The cluster secret (route password) is one file all nodes share.
 */

export interface NodeKeyFiles {
  readonly sign: string;
  readonly nats: string;
}

export function keyFiles(dataDir: string): NodeKeyFiles {
  return { sign: path.join(dataDir, 'node.nkey'), nats: path.join(dataDir, 'nats.nkey') };
}

/** Creates the seed file if missing (exclusive create, 0600, folder 0700); returns its public key. */
export function ensureSeed(file: string): { publicKey: string; created: boolean } {
  let created = false;
  if (!existsSync(file)) {
    mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
    const kp = createUser();
    try {
      writeFileSync(file, new TextDecoder().decode(kp.getSeed()) + '\n', { mode: 0o600, flag: 'wx' });
      created = true;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err; // another process made it first
    }
  }
  return { publicKey: publicKeyOf(readSeed(file)), created };
}

/** The seed in a key file, checked: a clear error names the file when it is not a user seed. */
export function readSeed(file: string): string {
  let text: string;
  try {
    text = readFileSync(file, 'utf8').trim();
  } catch (err) {
    throw new BurrowError(`${file}: cannot read the node's key (${(err as NodeJS.ErrnoException).code ?? String(err)}); run burrow keygen --config FILE`, { exitCode: 2 });
  }
  if (!/^SU[A-Z2-7]{56}$/.test(text)) throw new BurrowError(`${file}: not an nkey user seed (SU…); run burrow keygen --config FILE to make one`, { exitCode: 2 });
  // A seed written by another tool with looser permissions is tightened (it is a private key).
  try {
    chmodSync(file, 0o600);
  } catch { /* not ours to change: left as is */ }
  return text;
}

export function publicKeyOf(seed: string): string {
  return fromSeed(new TextEncoder().encode(seed)).getPublicKey();
}

const b64u = (b: Uint8Array) => Buffer.from(b).toString('base64url');

/** The seed as a native Ed25519 private key (node:crypto signs far faster than a JS implementation). */
export function signingKey(seed: string): KeyObject {
  const raw = Codec.decodeSeed(new TextEncoder().encode(seed)).buf;
  const pub = Codec.decode(Prefix.User, new TextEncoder().encode(publicKeyOf(seed)));
  return createPrivateKey({ key: { kty: 'OKP', crv: 'Ed25519', d: b64u(raw), x: b64u(pub) }, format: 'jwk' });
}

/** A public user nkey as a native Ed25519 public key. */
export function verifyingKey(publicKey: string): KeyObject {
  const pub = Codec.decode(Prefix.User, new TextEncoder().encode(publicKey));
  return createPublicKey({ key: { kty: 'OKP', crv: 'Ed25519', x: b64u(pub) }, format: 'jwk' });
}

/** The shared route password: created once (0600) when missing, read otherwise. */
export function ensureSecret(file: string): { secret: string; created: boolean } {
  let created = false;
  if (!existsSync(file)) {
    mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
    try {
      writeFileSync(file, randomBytes(24).toString('hex') + '\n', { mode: 0o600, flag: 'wx' });
      created = true;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
  }
  return { secret: readSecret(file), created };
}

export function readSecret(file: string): string {
  let text: string;
  try {
    text = readFileSync(file, 'utf8').trim();
  } catch (err) {
    throw new BurrowError(`${file}: cannot read the cluster secret (${(err as NodeJS.ErrnoException).code ?? String(err)}); run burrow keygen --config FILE, then copy the file to every machine`, { exitCode: 2 });
  }
  if (!/^[A-Za-z0-9]{16,256}$/.test(text)) throw new BurrowError(`${file}: the cluster secret must be 16-256 letters and digits`, { exitCode: 2 });
  return text;
}
