/**
 * TEST ONLY: deliberate breakage, so tests can prove their checkers fire (npm run test:sabotage).
 * `BURROW_TEST_SABOTAGE` is a comma list; a node running with any of it logs a loud error at start.
 *
 *   invert-lww             the older change wins (also BURROW_TEST_INVERT_LWW=1)
 *   drop-acked:N           about 1 in N batches is never published yet treated as acknowledged,
 *                          and kept out of the sent log (gap repair cannot recover it): lost writes
 *   corrupt-published:N    about 1 in N batches is published as garbage (the sent log keeps the
 *                          real one, so repair recovers it; the observer must report it)
 *   no-echo-suppression    applied remote changes are captured again as local ones: phantom changes
 *   lose-schema-entry:N    this node's schema entry number N is treated as acknowledged the first
 *                          time without being published (a server that lost it after its ack)
 *
 * Which batches: a hash of the batch's msgID, so the publisher and the outbox pick the same ones.
 */

export interface Sabotage {
  readonly invertLww: boolean;
  readonly dropAcked: number;
  readonly corruptPublished: number;
  readonly noEchoSuppression: boolean;
  readonly loseSchemaEntry: number;
}

const kinds = ['invert-lww', 'drop-acked', 'corrupt-published', 'no-echo-suppression', 'lose-schema-entry'] as const;

export function parseSabotage(spec: string | undefined, invertLwwAlias: string | undefined): Sabotage {
  const s = { invertLww: invertLwwAlias === '1', dropAcked: 0, corruptPublished: 0, noEchoSuppression: false, loseSchemaEntry: 0 };
  for (const item of (spec ?? '').split(',').map((x) => x.trim()).filter(Boolean)) {
    const [kind, arg] = item.split(':') as [string, string | undefined];
    const n = arg === undefined ? NaN : Number(arg);
    const needsN = kind === 'drop-acked' || kind === 'corrupt-published' || kind === 'lose-schema-entry';
    if (!(kinds as readonly string[]).includes(kind) || (needsN && !(Number.isInteger(n) && n >= 1)) || (!needsN && arg !== undefined)) {
      throw new Error(`BURROW_TEST_SABOTAGE: cannot use "${item}" (known: invert-lww, drop-acked:N, corrupt-published:N, no-echo-suppression, lose-schema-entry:N)`);
    }
    if (kind === 'invert-lww') s.invertLww = true;
    if (kind === 'drop-acked') s.dropAcked = n;
    if (kind === 'corrupt-published') s.corruptPublished = n;
    if (kind === 'no-echo-suppression') s.noEchoSuppression = true;
    if (kind === 'lose-schema-entry') s.loseSchemaEntry = n;
  }
  return s;
}

export const sabotage: Sabotage = parseSabotage(process.env.BURROW_TEST_SABOTAGE, process.env.BURROW_TEST_INVERT_LWW);

/** What is switched on, for the node's start-up warning ([] normally). */
export function sabotageActive(s: Sabotage = sabotage): string[] {
  const out: string[] = [];
  if (s.invertLww) out.push('invert-lww');
  if (s.dropAcked) out.push(`drop-acked:${s.dropAcked}`);
  if (s.corruptPublished) out.push(`corrupt-published:${s.corruptPublished}`);
  if (s.noEchoSuppression) out.push('no-echo-suppression');
  if (s.loseSchemaEntry) out.push(`lose-schema-entry:${s.loseSchemaEntry}`);
  return out;
}

function pickedBy(msgId: string, n: number, salt: number): boolean {
  if (n <= 0) return false;
  let h = 0x811c9dc5 ^ salt;
  for (let i = 0; i < msgId.length; i++) h = Math.imul(h ^ msgId.charCodeAt(i), 0x01000193);
  return (h >>> 0) % n === 0;
}

/** drop-acked: this batch is "acknowledged" without being published, and not kept in the sent log. */
export function sabotageDrops(msgId: string, s: Sabotage = sabotage): boolean {
  return pickedBy(msgId, s.dropAcked, 1);
}

/** corrupt-published: this batch goes out as bytes no receiver can decode. */
export function sabotageCorrupts(msgId: string, s: Sabotage = sabotage): boolean {
  return pickedBy(msgId, s.corruptPublished, 2);
}
