import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { lwwWins } from '../../src/apply/lww.ts';
import { seededRandom } from '../../src/util/random.ts';

type Version = { hlc: bigint; node: string };

describe('lwwWins decision table', () => {
  const cases: Array<{ name: string; incoming: Version; current: Version; wins: boolean }> = [
    { name: 'higher hlc, higher node', incoming: { hlc: 200n, node: 'n2' }, current: { hlc: 100n, node: 'n1' }, wins: true },
    { name: 'higher hlc, lower node', incoming: { hlc: 200n, node: 'n1' }, current: { hlc: 100n, node: 'n2' }, wins: true },
    { name: 'higher hlc by 1, much lower node', incoming: { hlc: 101n, node: 'a' }, current: { hlc: 100n, node: 'zzzz' }, wins: true },
    { name: 'higher hlc, same node', incoming: { hlc: 101n, node: 'n1' }, current: { hlc: 100n, node: 'n1' }, wins: true },
    { name: 'lower hlc, higher node', incoming: { hlc: 99n, node: 'n9' }, current: { hlc: 100n, node: 'n1' }, wins: false },
    { name: 'lower hlc, lower node', incoming: { hlc: 99n, node: 'n1' }, current: { hlc: 100n, node: 'n9' }, wins: false },
    { name: 'lower hlc, same node', incoming: { hlc: 99n, node: 'n1' }, current: { hlc: 100n, node: 'n1' }, wins: false },
    { name: 'hlc beyond 2^53 compares exactly', incoming: { hlc: 2n ** 62n + 1n, node: 'a' }, current: { hlc: 2n ** 62n, node: 'b' }, wins: true },
    { name: 'hlc beyond 2^53, lower by 1', incoming: { hlc: 2n ** 62n, node: 'b' }, current: { hlc: 2n ** 62n + 1n, node: 'a' }, wins: false },
    { name: 'equal hlc, higher node id wins', incoming: { hlc: 100n, node: 'n2' }, current: { hlc: 100n, node: 'n1' }, wins: true },
    { name: 'equal hlc, lower node id loses', incoming: { hlc: 100n, node: 'n1' }, current: { hlc: 100n, node: 'n2' }, wins: false },
    // Plain string order, not numeric: "n10" < "n9".
    { name: 'equal hlc, string order not numeric (n10 < n9)', incoming: { hlc: 100n, node: 'n10' }, current: { hlc: 100n, node: 'n9' }, wins: false },
    { name: 'equal hlc, string order not numeric (n9 > n10)', incoming: { hlc: 100n, node: 'n9' }, current: { hlc: 100n, node: 'n10' }, wins: true },
    { name: 'equal hlc, uppercase sorts before lowercase', incoming: { hlc: 100n, node: 'a' }, current: { hlc: 100n, node: 'B' }, wins: true },
    { name: 'equal hlc, prefix sorts first', incoming: { hlc: 100n, node: 'n1x' }, current: { hlc: 100n, node: 'n1' }, wins: true },
    { name: 'exact tie is a no-op', incoming: { hlc: 100n, node: 'n1' }, current: { hlc: 100n, node: 'n1' }, wins: false },
    { name: 'exact tie at zero is a no-op', incoming: { hlc: 0n, node: 'a' }, current: { hlc: 0n, node: 'a' }, wins: false },
  ];
  for (const c of cases) {
    test(`${c.name} → ${c.wins}`, () => {
      assert.equal(lwwWins(c.incoming.hlc, c.incoming.node, c.current.hlc, c.current.node), c.wins);
    });
  }

  test('antisymmetric: for distinct versions exactly one direction wins', () => {
    for (const c of cases) {
      const a = c.incoming;
      const b = c.current;
      const ab = lwwWins(a.hlc, a.node, b.hlc, b.node);
      const ba = lwwWins(b.hlc, b.node, a.hlc, a.node);
      if (a.hlc === b.hlc && a.node === b.node) {
        assert.equal(ab || ba, false, c.name);
      } else {
        assert.notEqual(ab, ba, c.name);
      }
    }
  });
});


function shuffled<T>(items: readonly T[], rand: () => number): T[] {
  const out = items.slice();
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1));
    [out[i], out[j]] = [out[j]!, out[i]!];
  }
  return out;
}

/** Apply versions in order, replacing the current one whenever the incoming one wins. */
function fold(versions: readonly Version[]): Version {
  let cur = versions[0]!;
  for (const v of versions.slice(1)) {
    if (lwwWins(v.hlc, v.node, cur.hlc, cur.node)) cur = v;
  }
  return cur;
}

describe('merge order independence (property, seeded)', () => {
  test('200 random version sets × 5 permutations converge on the same winner', () => {
    const rand = seededRandom(0xb0bca7);
    const nodes = ['n1', 'n2', 'n3', 'n10', 'a', 'B'];
    const base = (1_763_700_000_000n << 16n);
    for (let set = 0; set < 200; set++) {
      const size = 2 + Math.floor(rand() * 12);
      const versions: Version[] = [];
      for (let i = 0; i < size; i++) {
        // A narrow hlc range forces plenty of equal-hlc ties; duplicates (same hlc and node) occur too.
        versions.push({ hlc: base + BigInt(Math.floor(rand() * 4)), node: nodes[Math.floor(rand() * nodes.length)]! });
      }
      // Expected winner: max hlc, then max node id.
      const expected = versions.reduce((m, v) => (v.hlc > m.hlc || (v.hlc === m.hlc && v.node > m.node) ? v : m));
      const reference = fold(versions);
      assert.equal(reference.hlc, expected.hlc, `set ${set}`);
      assert.equal(reference.node, expected.node, `set ${set}`);
      for (let p = 0; p < 5; p++) {
        const winner = fold(shuffled(versions, rand));
        assert.deepEqual(
          { hlc: winner.hlc, node: winner.node },
          { hlc: reference.hlc, node: reference.node },
          `set ${set}, permutation ${p}: ${JSON.stringify(versions, (_, x) => (typeof x === 'bigint' ? x.toString() : x))}`,
        );
      }
    }
  });
});
