/**
 * Node.js flags for a `burrow start` process, passed by whatever spawns one (`burrow up`, the
 * test cluster, the Docker image's NODE_OPTIONS). A node allocates many short-lived objects per
 * replicated row (stamping, encoding, applying); with a 64 MB young generation instead of the
 * default, garbage collection took 6 % of the writing node's CPU instead of 15 % under the
 * one-writer benchmark (`npx tsx bench/profile.ts`). V8 reads it only at process start.
 */
export const nodeProcessFlags: readonly string[] = ['--max-semi-space-size=64'];
