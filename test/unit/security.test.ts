import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fromPublic, fromSeed } from '@nats-io/nkeys';
import { Opener, Sealer, unsealUnverified } from '../../src/security/envelope.ts';
import { ensureSecret, ensureSeed, readSeed } from '../../src/security/keys.ts';
import { parseConfig } from '../../src/config/config.ts';
import { setNodeKeys } from '../../cmd/keygen.ts';
import { hostAllowed } from '../../src/api/http-server.ts';

/** Signed messages and keys: what a forger can change, and what verification then says. */

function keys(dir: string, id: string): { seed: string; pub: string } {
  const f = path.join(dir, id, 'node.nkey');
  const { publicKey } = ensureSeed(f);
  return { seed: readSeed(f), pub: publicKey };
}

test('a sealed message opens only as what it was signed as: kind, cluster, signer and bytes', () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'burrow-keys-'));
  try {
    const n1 = keys(dir, 'n1');
    const n2 = keys(dir, 'n2');
    const opener = new Opener('c', new Map([['n1', n1.pub], ['n2', n2.pub]]));
    const payload = new Uint8Array([0x85, 1, 2, 3, 4, 5]);
    const sealed = new Sealer('c', 'n1', n1.seed).seal('batch', payload);
    const ok = opener.open('batch', sealed);
    assert.ok(ok.ok && ok.signer === 'n1' && Buffer.from(ok.payload).equals(Buffer.from(payload)));
    assert.ok(Buffer.from(unsealUnverified(sealed)).equals(Buffer.from(payload)), 'observers read the payload');
    // Interoperable: the signature is a plain Ed25519 one nkeys verifies.
    assert.ok(fromPublic(n1.pub).verify(Buffer.concat([Buffer.from('burrow/1\0c\0batch\0n1\0'), payload]), sealed.subarray(3 + 2, 3 + 2 + 64)));
    const refuse = (data: Uint8Array, kind: 'batch' | 'schema' | 'hb', o = opener) => {
      const r = o.open(kind, data);
      assert.equal(r.ok, false);
      return r.ok ? '' : r.reason;
    };
    assert.match(refuse(payload, 'batch'), /not signed/);
    assert.match(refuse(sealed, 'schema'), /bad signature/, 'a batch is not a schema entry');
    assert.match(refuse(sealed, 'batch', new Opener('other', new Map([['n1', n1.pub]]))), /bad signature/, 'another cluster');
    const tampered = Buffer.from(sealed);
    tampered[tampered.length - 1] = tampered[tampered.length - 1]! ^ 1;
    assert.match(refuse(tampered, 'batch'), /bad signature/);
    // n1's key claiming to be n2 (the id in the envelope changed): n2's key does not verify it.
    const asN2 = Buffer.concat([Buffer.from([0xc1, 1, 2]), Buffer.from('n2'), sealed.subarray(5)]);
    assert.match(refuse(asN2, 'batch'), /bad signature/);
    assert.match(refuse(new Sealer('c', 'n9', keys(dir, 'n9').seed).seal('batch', payload), 'batch'), /not a member/);
    assert.match(refuse(sealed.subarray(0, 20), 'batch'), /cut short/);
    assert.equal(opener.stats.opened, 1);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('key and secret files: made once, 0600, kept when present; a bad one is named', () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'burrow-keys-'));
  try {
    const f = path.join(dir, 'd', 'node.nkey');
    const a = ensureSeed(f);
    assert.equal(a.created, true);
    assert.equal(statSync(f).mode & 0o777, 0o600);
    assert.equal(statSync(path.dirname(f)).mode & 0o777, 0o700);
    const b = ensureSeed(f);
    assert.equal(b.created, false);
    assert.equal(b.publicKey, a.publicKey);
    assert.equal(fromSeed(new TextEncoder().encode(readSeed(f))).getPublicKey(), a.publicKey);
    writeFileSync(f, 'nonsense\n');
    assert.throws(() => readSeed(f), new RegExp(`${f.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}: not an nkey user seed`));
    const s = path.join(dir, 'secret');
    const x = ensureSecret(s);
    assert.equal(ensureSecret(s).secret, x.secret);
    assert.equal(statSync(s).mode & 0o777, 0o600);
    assert.match(readFileSync(s, 'utf8'), /^[0-9a-f]{48}\n$/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('config: keys go into [[nodes]] entries with comments kept; off-loopback without auth is refused', () => {
  const base = `# my cluster\n[cluster]\nname = "c"\n\n[[nodes]]\nid = "n1"   # first\ndb = "a/app.db"\nclient = "127.0.0.1:1"\nroute = "127.0.0.1:2"\nhttp = "127.0.0.1:3"\n\n[[nodes]]\nid = "n2"\ndb = "b/app.db"\nclient = "127.0.0.1:4"\nroute = "127.0.0.1:5"\nhttp = "127.0.0.1:6"\n`;
  const key = 'U' + 'A'.repeat(55);
  const key2 = 'U' + 'B'.repeat(55);
  const once = setNodeKeys(base, 'n2', { public_key: key, nats_key: key2 });
  const c = parseConfig(once, '/x/cluster.toml');
  assert.equal(c.nodes[1]!.publicKey, key);
  assert.equal(c.nodes[1]!.natsKey, key2);
  assert.equal(c.nodes[0]!.publicKey, null);
  assert.ok(once.startsWith('# my cluster') && once.includes('id = "n1"   # first'));
  assert.equal(setNodeKeys(once, 'n2', { public_key: key, nats_key: key2 }), once, 'idempotent');
  assert.throws(() => parseConfig(base.replace('"127.0.0.1:4"', '"10.1.2.3:4"'), '/x/cluster.toml'), /nodes\[1\]\.client: listens on 10\.1\.2\.3, off loopback, without authentication/);
  assert.doesNotThrow(() => parseConfig(base.replace('"127.0.0.1:4"', '"10.1.2.3:4"') + '\n[security]\nallow_insecure = true\n', '/x/cluster.toml'));
  assert.doesNotThrow(() => parseConfig(base.replace('"127.0.0.1:4"', '"10.1.2.3:4"') + '\n[security]\nauth = true\n', '/x/cluster.toml'));
  assert.throws(() => parseConfig(base + '\n[security]\ntls_cert = "c.pem"\n', '/x/cluster.toml'), /security\.tls_cert: tls_cert, tls_key and tls_ca go together/);
  assert.throws(() => parseConfig(setNodeKeys(base, 'n1', { public_key: 'Ubad' }), '/x/cluster.toml'), /nodes\[0\]\.public_key: "Ubad" is not a public user nkey/);
});

test('HTTP Host check: the configured host and loopback names on a loopback listener; other names refused (DNS rebinding)', () => {
  const lo = { host: '127.0.0.1', port: 7001 };
  assert.equal(hostAllowed(lo, '127.0.0.1:7001'), true);
  assert.equal(hostAllowed(lo, 'localhost:7001'), true);
  assert.equal(hostAllowed(lo, 'LOCALHOST'), true);
  assert.equal(hostAllowed(lo, 'evil.example:7001'), false);
  assert.equal(hostAllowed(lo, '127.0.0.1:8000'), false, 'another port');
  assert.equal(hostAllowed(lo, undefined), false);
  const named = { host: 'n1', port: 7001 };
  assert.equal(hostAllowed(named, 'n1:7001'), true);
  assert.equal(hostAllowed(named, 'localhost:7001'), false, 'not listening on loopback');
  assert.equal(hostAllowed({ host: '0.0.0.0', port: 7001 }, 'anything'), true);
});
