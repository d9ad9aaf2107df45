import { loadConfig } from '../src/config/config.ts';
import { BurrowNode } from '../src/node/node.ts';
import { createLogger, rotatingFile } from '../src/util/log.ts';
import { errorMessage } from '../src/util/errors.ts';

/** `burrow start`: one node in the foreground until SIGINT/SIGTERM. */
export async function runStart(configFile: string, nodeId: string): Promise<number> {
  const config = loadConfig(configFile);
  // BURROW_LOG_FILE (burrow up sets it): the node writes its own log there, rotated by size.
  const logFile = process.env.BURROW_LOG_FILE;
  const log = logFile ? createLogger(nodeId, undefined, rotatingFile(logFile)) : createLogger(nodeId);
  const node = await BurrowNode.start({ config, nodeId, log });
  log.info('node started', { pid: process.pid, http: `${config.nodes.find((n) => n.id === nodeId)!.http.host}:${config.nodes.find((n) => n.id === nodeId)!.http.port}` });
  const readyAt = setInterval(() => {
    if (node.ready()) {
      log.info('ready');
      clearInterval(readyAt);
    }
  }, 50);
  return new Promise<number>((resolve, reject) => {
    let stopping = false;
    // A bug that escaped every handler: the state of the process is unknown. Health fails at once,
    // the node stops (nothing committed is lost: the outbox and positions are in SQLite) and the
    // process exits 1 so a supervisor restarts it.
    const crash = (what: string, err: unknown) => {
      log.error(what, { error: (err as Error)?.stack ?? errorMessage(err) });
      node.markBroken(`${what}: ${errorMessage(err)}`);
      if (stopping) return;
      stopping = true;
      clearInterval(readyAt);
      const hardExit = setTimeout(() => process.exit(1), 15_000);
      hardExit.unref();
      node.stop().finally(() => resolve(1));
    };
    process.on('uncaughtException', (err) => crash('uncaught exception', err));
    process.on('unhandledRejection', (err) => crash('unhandled rejection', err));
    // A problem retrying cannot fix (e.g. cluster.shards differs from the running cluster): stop, exit 2.
    void node.fatal.then((err) => {
      if (stopping) return;
      stopping = true;
      clearInterval(readyAt);
      node.stop().finally(() => reject(err));
    });
    const stop = (sig: string) => {
      if (stopping) return;
      stopping = true;
      clearInterval(readyAt);
      log.info('stopping', { signal: sig });
      // Stopped is stopped: a handle something left open must not keep the process (and its
      // supervisor's restart) waiting (chaos seed 202: "stopped" logged, the process alive 30 s on).
      const exitSoon = () => setTimeout(() => process.exit(process.exitCode ?? 0), 2000).unref();
      node.stop().finally(exitSoon).then(() => resolve(0), (err) => {
        log.error('stop failed', { error: errorMessage(err) });
        resolve(1);
      });
    };
    // Re-read cluster.toml: members and [snapshot] change live; a bad file is logged and ignored.
    process.on('SIGHUP', () => node.reload());
    process.on('SIGINT', () => stop('SIGINT'));
    process.on('SIGTERM', () => stop('SIGTERM'));
  });
}
