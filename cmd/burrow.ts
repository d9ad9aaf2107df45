import { burrowVersion } from '../src/util/version.ts';
import { parseArgs } from 'node:util';
import { BurrowError, errorMessage } from '../src/util/errors.ts';
import { runStart } from './start.ts';
import { runUp } from './up.ts';
import { runStatus } from './status.ts';
import { runChecksum } from './checksum.ts';
import { runRestore, runSnapshot, runSnapshots } from './snapshot.ts';
import { runSchema } from './schema.ts';
import { runMigrate } from './migrate.ts';
import { runKeygen } from './keygen.ts';
import { runInspect } from './inspect.ts';

const help = `burrow — a multi-node SQLite cluster (every node a full local replica)

Usage:
  burrow start    --config FILE --node ID   run one node in the foreground
  burrow up       --config FILE             run every node of FILE, with a live status line per node
  burrow status   --config FILE [--node ID] [--shards] [--watch S] [--json]
                                            every node's (or one's) state, lag, pending, held/waiting/dead counts;
                                            --shards: per shard position, lag, stream leader; --watch: redrawn every S s
  burrow checksum --config FILE [--json]    compare per-table digests of all replicas (exit 1 if they differ)
  burrow snapshot  --config FILE [--node ID] [--json]   write a snapshot of one replica (default: the first ready node)
  burrow snapshots --config FILE [--json]   list the cluster's snapshots, newest first
  burrow restore   --config FILE --node ID [--snapshot NAME] [--json]
                                            a running node merges a snapshot (default: the newest the streams cover)
  burrow schema   --config FILE [--json]    every node's tables, indexes, views and triggers with a fingerprint
                                            (exit 1 on drift, naming the tables, or if a node is down)
  burrow migrate  --config FILE FILE.sql [--node ID] [--timeout S] [--json]
                                            run FILE.sql's statements on every node, as written, in the cluster's
                                            schema order; waits until all nodes have (exit 1: failed, down, timeout)
  burrow keygen   --config FILE [--node ID] [--json]
                                            make each node's keys in its data folder (kept if present), write
                                            the public keys into FILE, and the cluster secret ([security] auth)
  burrow help COMMAND                       one command's usage
  burrow --version                          burrow's version (package.json)
  burrow --help

  burrow dead     --config FILE [--node ID] [--json] [--limit N]
                                            changes that could never apply, per node (exit 1 if a node is down)
  burrow dead     --config FILE --node ID --retry (ID…|--all)
                                            apply dead letters again (exit 1 if some are dead again)
  burrow dead     --config FILE --node ID --purge (ID…|--all)
                                            delete dead letters for good
  burrow conflicts --config FILE [--node ID] [--json] [--limit N]
                                            UNIQUE conflicts resolved (both rows)
  burrow waiting  --config FILE [--node ID] [--json] [--limit N]
                                            changes waiting for their table or columns

Options:
  -c, --config FILE   cluster.toml shared by all nodes (default: ./cluster.toml)
  -n, --node ID       node id from the config (start, snapshot, restore, migrate, keygen)
      --timeout S     seconds to wait (migrate; default 60)
      --snapshot NAME a snapshot's name (restore)
      --json          machine-readable output (status, checksum, snapshot, snapshots, restore, schema, migrate, keygen)

Environment:
  BURROW_LOG_LEVEL          debug | info | warn | error (default info)
`;

/** What each command takes (an option another command takes is an error for this one, exit 2). */
const commands: Readonly<Record<string, { readonly options: readonly string[]; readonly usage: string }>> = {
  start: { options: ['config', 'node'], usage: 'burrow start --config FILE --node ID' },
  up: { options: ['config'], usage: 'burrow up --config FILE' },
  status: { options: ['config', 'json', 'node', 'shards', 'watch'], usage: 'burrow status --config FILE [--node ID] [--shards] [--watch S] [--json]' },
  checksum: { options: ['config', 'json'], usage: 'burrow checksum --config FILE [--json]' },
  snapshot: { options: ['config', 'node', 'json'], usage: 'burrow snapshot --config FILE [--node ID] [--json]' },
  snapshots: { options: ['config', 'json'], usage: 'burrow snapshots --config FILE [--json]' },
  restore: { options: ['config', 'node', 'snapshot', 'json'], usage: 'burrow restore --config FILE --node ID [--snapshot NAME] [--json]' },
  schema: { options: ['config', 'json'], usage: 'burrow schema --config FILE [--json]' },
  migrate: { options: ['config', 'node', 'timeout', 'json'], usage: 'burrow migrate --config FILE FILE.sql [--node ID] [--timeout S] [--json]' },
  keygen: { options: ['config', 'node', 'json'], usage: 'burrow keygen --config FILE [--node ID] [--json]' },
  dead: { options: ['config', 'node', 'json', 'retry', 'purge', 'all', 'limit'], usage: 'burrow dead --config FILE [--node ID] [--json] [--limit N] | --node ID (--retry|--purge) (ID…|--all)' },
  conflicts: { options: ['config', 'node', 'json', 'limit'], usage: 'burrow conflicts --config FILE [--node ID] [--json] [--limit N]' },
  waiting: { options: ['config', 'node', 'json', 'limit'], usage: 'burrow waiting --config FILE [--node ID] [--json] [--limit N]' },
};


async function main(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    strict: true,
    options: {
      config: { type: 'string', short: 'c' },
      node: { type: 'string', short: 'n' },
      json: { type: 'boolean' },
      snapshot: { type: 'string' },
      timeout: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
      version: { type: 'boolean', short: 'V' },
      retry: { type: 'boolean' },
      purge: { type: 'boolean' },
      all: { type: 'boolean' },
      limit: { type: 'string' },
      shards: { type: 'boolean' },
      watch: { type: 'string' },
    },
  });
  const cmd = positionals[0];
  if (values.version) {
    process.stdout.write(`burrow ${burrowVersion()}\n`);
    return 0;
  }
  if (cmd === 'help' && positionals[1] !== undefined) {
    const c = commands[positionals[1]];
    if (!c) throw new BurrowError(`unknown command "${positionals[1]}" (try burrow --help)`, { exitCode: 2 });
    const lines = help.split('\n');
    const at = lines.findIndex((l) => l.startsWith(`  burrow ${positionals[1]} `));
    let end = at + 1;
    while (end < lines.length && /^\s{20,}\S/.test(lines[end]!)) end++;
    process.stdout.write(`${lines.slice(at, end).join('\n')}\n\nOptions it takes: ${c.options.map((o) => `--${o}`).join(', ')}\n`);
    return 0;
  }
  if (values.help || cmd === undefined || cmd === 'help') {
    process.stdout.write(help);
    return cmd === undefined && !values.help ? 2 : 0;
  }
  const spec = commands[cmd];
  if (!spec) throw new BurrowError(`unknown command "${cmd}" (try burrow --help)`, { exitCode: 2 });
  for (const k of Object.keys(values)) {
    if (!spec.options.includes(k)) throw new BurrowError(`burrow ${cmd} does not take --${k} (usage: ${spec.usage})`, { exitCode: 2 });
  }
  const config = values.config ?? 'cluster.toml';
  const json = values.json ?? false;
  switch (cmd) {
    case 'start':
      if (!values.node) throw new BurrowError('burrow start needs --node ID (one of the [[nodes]] ids in the config)', { exitCode: 2 });
      return runStart(config, values.node);
    case 'up':
      return runUp(config);
    case 'status': {
      const watchS = values.watch === undefined ? undefined : Number(values.watch);
      if (watchS !== undefined && (!Number.isFinite(watchS) || watchS < 0.2)) throw new BurrowError(`--watch must be a number of seconds (at least 0.2), got ${values.watch}`, { exitCode: 2 });
      return runStatus(config, { json, node: values.node, shards: values.shards ?? false, watchS });
    }
    case 'checksum':
      return runChecksum(config, json);
    case 'snapshot':
      return runSnapshot(config, values.node, json);
    case 'snapshots':
      return runSnapshots(config, json);
    case 'restore':
      return runRestore(config, values.node, values.snapshot, json);
    case 'schema':
      return runSchema(config, json);
    case 'keygen':
      return runKeygen(config, values.node, json);
    case 'dead':
    case 'conflicts':
    case 'waiting': {
      const limit = values.limit === undefined ? 100 : Number(values.limit);
      if (!Number.isInteger(limit) || limit < 1 || limit > 10_000) throw new BurrowError(`--limit must be 1-10000, got ${values.limit}`, { exitCode: 2 });
      return runInspect(config, { kind: cmd, node: values.node, json, retry: values.retry ?? false, purge: values.purge ?? false, all: values.all ?? false, ids: positionals.slice(1), limit });
    }
    case 'migrate': {
      const t = values.timeout === undefined ? 60 : Number(values.timeout);
      if (!Number.isFinite(t) || t <= 0) throw new BurrowError(`--timeout must be a number of seconds above 0, got ${values.timeout}`, { exitCode: 2 });
      return runMigrate(config, positionals[1], values.node, t, json);
    }
    default:
      throw new BurrowError(`unknown command "${cmd}" (try burrow --help)`, { exitCode: 2 });
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    if (err instanceof BurrowError) {
      process.stderr.write(`burrow: ${err.message}\n`);
      process.exitCode = err.exitCode;
    } else if ((err as { code?: string }).code?.startsWith('ERR_PARSE_ARGS')) {
      process.stderr.write(`burrow: ${errorMessage(err)} (try burrow --help)\n`);
      process.exitCode = 2;
    } else {
      process.stderr.write(`burrow: internal error: ${err instanceof Error ? err.stack : String(err)}\n`);
      process.exitCode = 1;
    }
  },
);
