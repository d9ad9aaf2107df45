/**
 * Last-writer-wins on (hlc, node id): the higher HLC wins; equal HLCs are broken by the node id
 * (plain string order, identical on every node). An exact tie — the same change seen again — is
 * not a win, so duplicates and a node's own echoes are no-ops.
 */
export function lwwWins(incomingHlc: bigint, incomingNode: string, currentHlc: bigint, currentNode: string): boolean {
  if (incomingHlc !== currentHlc) return incomingHlc > currentHlc;
  return incomingNode > currentNode;
}
