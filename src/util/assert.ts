/** TigerBeetle-style invariant check: a false condition is a bug in burrow, never user error. */
export function assert(cond: unknown, msg: string): asserts cond {
  if (!cond) throw new AssertionFailed(msg);
}

export class AssertionFailed extends Error {
  override name = 'AssertionFailed';
}
