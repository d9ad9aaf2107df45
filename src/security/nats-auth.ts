import { readFileSync } from 'node:fs';
import { credsAuthenticator, nkeyAuthenticator, type Authenticator, type TlsOptions } from '@nats-io/transport-node';
import type { Config, NodeConfig } from '../config/config.ts';
import { BurrowError } from '../util/errors.ts';
import { keyFiles, readSeed } from './keys.ts';

/**
 * How a node authenticates to NATS: embedded servers with [security] auth — its own nkey
 * (`nats.nkey` in its data folder); external NATS — the credentials file of [security]
 * nats_creds (a .creds file, or an nkey seed file). TLS with the [security] certificate when set.
 */
export function natsClientOptions(config: Config, node: NodeConfig): { authenticator?: Authenticator; tls?: TlsOptions } {
  const out: { authenticator?: Authenticator; tls?: TlsOptions } = {};
  const s = config.security;
  if (config.nats.urls !== null) {
    if (s.natsCreds !== null) out.authenticator = credentialsFrom(s.natsCreds);
  } else if (s.auth) {
    out.authenticator = nkeyAuthenticator(new TextEncoder().encode(readSeed(keyFiles(node.dataDir).nats)));
  }
  if (s.tls) out.tls = { certFile: s.tls.cert, keyFile: s.tls.key, caFile: s.tls.ca };
  return out;
}

function credentialsFrom(file: string): Authenticator {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new BurrowError(`${file} ([security] nats_creds): cannot read it (${(err as NodeJS.ErrnoException).code ?? String(err)})`, { exitCode: 2 });
  }
  if (text.includes('BEGIN NATS USER JWT')) return credsAuthenticator(new TextEncoder().encode(text));
  const seed = text.trim();
  if (/^SU[A-Z2-7]{56}$/.test(seed)) return nkeyAuthenticator(new TextEncoder().encode(seed));
  throw new BurrowError(`${file} ([security] nats_creds): neither a .creds file nor an nkey user seed`, { exitCode: 2 });
}
