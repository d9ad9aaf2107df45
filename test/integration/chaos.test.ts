import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { runChaos } from '../../chaos/run.ts';

/**
 * The chaos suite's short mode (fixed seeds): a real 3-node cluster under writer processes and a
 * seeded fault schedule must pass every checker. That the checkers fire when burrow is broken
 * (LWW inverted, acked batches dropped, …) is `npm run test:sabotage`, which CI runs after this.
 * Long runs: `npm run chaos -- --nodes 3 --duration 300 --seed S`.
 */
describe('chaos (short mode)', () => {
  test('seed 3, 45 s: quorum loss, clock skew, kill during apply, nats-server kill, a node wiped and rejoined — converges, nothing lost', async () => {
    const lines: string[] = [];
    const r = await runChaos({ nodes: 3, durationS: 45, seed: 3, log: (l) => lines.push(l) });
    assert.ok(r.ok, `chaos run failed:\n${lines.join('\n')}`);
    assert.ok(r.writesCommitted > 500, `writes committed: ${r.writesCommitted}`);
    assert.ok(r.conflictKeys > 10, `conflicting keys: ${r.conflictKeys}`);
    assert.ok(r.restarts >= 4, `restarts: ${r.restarts}`);
    assert.deepEqual(Object.keys(r.faultCounts).sort(), ['clock-skew', 'kill-during-apply', 'kill-nats', 'kill-quorum', 'wipe-rejoin']);
    assert.ok(lines.some((l) => /healed n\d rejoined: restore done/.test(l)), `the wiped node did not restore:\n${lines.join('\n')}`);
    assert.ok(r.convergeMs !== null);
  });
});
