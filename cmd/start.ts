import { loadConfig } from '../src/config/config.ts';
import { BurrowNode } from '../src/node/node.ts';
import { createLogger } from '../src/util/log.ts';
import { errorMessage } from '../src/util/errors.ts';

/** `burrow start`: one node in the foreground until SIGINT/SIGTERM. */
export async function runStart(configFile: string, nodeId: string): Promise<number> {
  const config = loadConfig(configFile);
  const log = createLogger(nodeId);
  const node = await BurrowNode.start({ config, nodeId, log });
  log.info('node started', { pid: process.pid, http: `${config.nodes.find((n) => n.id === nodeId)!.http.host}:${config.nodes.find((n) => n.id === nodeId)!.http.port}` });
  const readyAt = setInterval(() => {
    if (node.ready()) {
      log.info('ready');
      clearInterval(readyAt);
    }
  }, 50);
  process.on('uncaughtException', (err) => log.error('uncaught exception', { error: err.stack ?? errorMessage(err) }));
  process.on('unhandledRejection', (err) => log.error('unhandled rejection', { error: (err as Error)?.stack ?? errorMessage(err) }));
  return new Promise<number>((resolve, reject) => {
    let stopping = false;
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
      node.stop().then(() => resolve(0), (err) => {
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
