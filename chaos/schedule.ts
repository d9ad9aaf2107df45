import { seededRandom } from '../src/util/random.ts';

/** The faults a chaos run injects. */
export type FaultKind = 'kill-node' | 'kill-nats' | 'kill-quorum' | 'pause' | 'kill-during-apply' | 'clock-skew' | 'wipe-rejoin' | 'remove-readd';
export const faultKinds: readonly FaultKind[] = ['kill-node', 'kill-nats', 'kill-quorum', 'pause', 'kill-during-apply', 'clock-skew', 'wipe-rejoin', 'remove-readd'];

export interface Fault {
  readonly kind: FaultKind;
  /** ms after the workload started */
  readonly atMs: number;
  /** how long the fault lasts before it is healed */
  readonly healAfterMs: number;
  /** affected nodes (kill-during-apply: [target, source of the large batch]) */
  readonly targets: readonly string[];
  /** clock-skew: the offset given to the node's clock */
  readonly skewMs?: number;
}

/**
 * A seeded fault schedule: one fault at a time, every kind once per shuffled round, random
 * targets, durations and gaps. The same seed, node list and duration give the same schedule.
 * Faults start before the last 4 s of the run; the last one may heal a few seconds after it.
 */
export function faultSchedule(seed: number, nodes: readonly string[], durationMs: number): Fault[] {
  const rnd = seededRandom(seed);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rnd() * xs.length)]!;
  const out: Fault[] = [];
  let round: FaultKind[] = [];
  let t = 2000 + Math.floor(rnd() * 2000);
  while (t < durationMs - 4000) {
    if (round.length === 0) {
      round = [...faultKinds];
      for (let i = round.length - 1; i > 0; i--) {
        const j = Math.floor(rnd() * (i + 1));
        [round[i], round[j]] = [round[j]!, round[i]!];
      }
    }
    const kind = round.shift()!;
    const target = pick(nodes);
    let targets: string[] = [target];
    let healAfterMs = 2000 + Math.floor(rnd() * 5000);
    let skewMs: number | undefined;
    switch (kind) {
      case 'kill-quorum': {
        const others = nodes.filter((n) => n !== target);
        targets = [target, pick(others)];
        break;
      }
      case 'pause':
        healAfterMs = 6000 + Math.floor(rnd() * 3000); // longer than the 5 s publish timeout
        break;
      case 'kill-during-apply':
        targets = [target, pick(nodes.filter((n) => n !== target))];
        break;
      case 'clock-skew':
        skewMs = (rnd() < 0.5 ? -1 : 1) * (2000 + Math.floor(rnd() * 6000));
        healAfterMs = 4000 + Math.floor(rnd() * 4000);
        break;
      default:
        break;
    }
    out.push({ kind, atMs: t, healAfterMs, targets, ...(skewMs === undefined ? {} : { skewMs }) });
    t += healAfterMs + 1500 + Math.floor(rnd() * 3000);
  }
  return out;
}
