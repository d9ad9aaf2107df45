/**
 * Benchmark load generator: a separate process (an application) writing into one node's SQLite
 * file. Prints one JSON line when done: { rows, firstCommitMs, lastCommitMs }.
 *
 *   mode "max":  as fast as it can, rowsPerTx rows per transaction, for `seconds` (or `rowsMax` rows)
 *   mode "rate": single-row transactions at `ratePerSec`, each row carrying its commit time
 *                (`at`, ms since the epoch, sub-ms) for lag measurement
 */
import BetterSqlite3 from 'better-sqlite3';

interface WriterJob {
  readonly db: string;
  /** table for mode "max" (id INTEGER PRIMARY KEY, v TEXT, n INTEGER) */
  readonly table?: string;
  readonly mode: 'max' | 'rate';
  readonly idStart: number;
  readonly seconds: number;
  readonly rowsPerTx?: number;
  readonly ratePerSec?: number;
  /** mode "max": stop after this many rows (a burst), whatever `seconds` says. */
  readonly rowsMax?: number;
}

const job = JSON.parse(process.argv[2]!) as WriterJob;
const db = new BetterSqlite3(job.db, { timeout: 10_000 });
db.pragma('journal_mode = WAL');
db.pragma('synchronous = NORMAL');
const nowMs = () => performance.timeOrigin + performance.now();
let id = job.idStart;
let rows = 0;
let first = 0;
let last = 0;
const endAt = Date.now() + job.seconds * 1000;

if (job.mode === 'max') {
  const ins = db.prepare(`INSERT INTO ${job.table ?? 'bench_tp'}(id, v, n) VALUES (?, ?, ?)`);
  const per = job.rowsPerTx ?? 500;
  const tx = db.transaction(() => {
    for (let i = 0; i < per; i++) ins.run(id++, 'burrow benchmark row payload 0123456789abcdef', i);
  });
  while (Date.now() < endAt && rows < (job.rowsMax ?? Infinity)) {
    tx();
    rows += per;
    last = nowMs();
    if (first === 0) first = last;
  }
  done();
} else {
  const ins = db.prepare('INSERT INTO bench_lag(id, at, pad) VALUES (?, ?, ?)');
  const rate = job.ratePerSec ?? 1000;
  const t0 = nowMs();
  const tick = () => {
    const due = Math.floor(((nowMs() - t0) / 1000) * rate);
    while (rows < due) {
      ins.run(id++, nowMs(), 'lag row');
      rows++;
    }
    last = nowMs();
    if (first === 0) first = t0;
    if (Date.now() < endAt) setTimeout(tick, 1);
    else done();
  };
  tick();
}

function done(): void {
  db.close();
  process.stdout.write(JSON.stringify({ rows, firstCommitMs: first, lastCommitMs: last }) + '\n');
}
