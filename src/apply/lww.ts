import { sabotage } from '../util/sabotage.ts';

/**
 * Last-writer-wins on (hlc, node id): the higher HLC wins; equal HLCs are broken by the node id
 * (plain string order, identical on every node). An exact tie — the same change seen again — is
 * not a win, so duplicates and a node's own echoes are no-ops.
 */
export function lwwWins(incomingHlc: bigint, incomingNode: string, currentHlc: bigint, currentNode: string): boolean {
  if (incomingHlc === currentHlc && incomingNode === currentNode) return false;
  const wins = incomingHlc !== currentHlc ? incomingHlc > currentHlc : incomingNode > currentNode;
  return lwwInverted ? !wins : wins;
}

/** TEST ONLY (util/sabotage.ts, invert-lww): the older change wins, a broken apply checkers must catch. */
const lwwInverted = sabotage.invertLww;
