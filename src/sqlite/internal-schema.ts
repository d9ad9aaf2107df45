/**
 * burrow's own tables, all prefixed `__burrow`. Created idempotently when the node opens the
 * database. Nothing here is captured or replicated.
 *
 * __burrow_state   one row; `applying` is 1 only inside the node's apply transactions, so the
 *                  capture triggers (WHEN applying = 0) skip the node's own writes (echo
 *                  suppression). Other connections never see 1 (it is reset before COMMIT).
 * __burrow_log     the capture outbox written by triggers in the writer's own transaction:
 *                  which key of which table changed (up to 8 key columns, no type affinity so
 *                  values stay exact). The node stamps and drains it.
 * __burrow_tables  captured tables: local table id (tid), name, key columns.
 * __burrow_clock_<tid>  per-row clock of table tid (store/clock-store.ts): key columns declared with
 *                  the user key's affinity and collation → HLC and node of the data in the row;
 *                  tombstones (deleted = 1) keep deleted rows from being resurrected by older
 *                  upserts; `shadow` holds a version hidden by a UNIQUE clash.
 * __burrow_outbox  stamped, encoded batches waiting for their publish ack (one row = one
 *                  message, msg_id is the JetStream dedup id).
 * __burrow_sent   published batches kept for a while (bounded), by batch number: a receiver
 *                  that finds a number missing (JetStream lost it) asks this node for it.
 * __burrow_received per origin node: every batch number up to `contiguous` is applied here;
 *                  __burrow_received_above: numbers applied beyond it (out of order).
 * __burrow_applied per shard: highest stream sequence applied, where the node reads on after a restart.
 * __burrow_dead    changes that can never be applied (CHECK, NOT NULL, malformed or foreign
 *                  messages), with the reason and the message bytes (never silently lost).
 * __burrow_waiting changes whose table or columns do not exist here yet (a migration not yet
 *                  run on this node): retried with backoff and whenever the schema changes.
 * __burrow_conflicts secondary UNIQUE conflicts resolved by (hlc, node): both rows, as JSON.
 * __burrow_meta    key/value facts: node id, cluster name, shard count, HLC high-water mark (every
 *                  HLC seen or issued; store/meta-store.ts), last batch number.
 * __burrow_schema* schema replication (store/schema-store.ts): `__burrow_schema` the replicated
 *                  schema (the fold of the schema stream, the same on every node), `_seen` the
 *                  local schema as capture last accounted for it (its diff is this node's DDL),
 *                  `_out` this node's schema entries until they come back through the stream,
 *                  `_from` per origin the last entry folded, `_state` the stream position and
 *                  this node's last entry number, `_conflicts` entries that could not apply,
 *                  `_history` renames and drops by stream position (a change made under an older
 *                  schema is translated through them: renamed tables and columns, dropped tables).
 */
export const logKeyColumnsMax = 8;

const logKeyCols = Array.from({ length: logKeyColumnsMax }, (_, i) => `k${i}`).join(', ');

export const internalSchemaSql = `
CREATE TABLE IF NOT EXISTS __burrow_state(
  id INTEGER PRIMARY KEY CHECK (id = 1),
  applying INTEGER NOT NULL DEFAULT 0
);
INSERT OR IGNORE INTO __burrow_state(id, applying) VALUES (1, 0);
UPDATE __burrow_state SET applying = 0 WHERE applying <> 0;
CREATE TABLE IF NOT EXISTS __burrow_log(
  seq INTEGER PRIMARY KEY,
  tid INTEGER NOT NULL,
  ${logKeyCols}
);
CREATE TABLE IF NOT EXISTS __burrow_tables(
  tid INTEGER PRIMARY KEY,
  name TEXT NOT NULL UNIQUE,
  key_columns TEXT NOT NULL
);
-- Before per-table clocks (keys compared as bytes): gone; capture restamps every row once.
DROP TABLE IF EXISTS __burrow_clock;
CREATE TABLE IF NOT EXISTS __burrow_outbox(
  id INTEGER PRIMARY KEY,
  shard INTEGER NOT NULL,
  msg_id TEXT NOT NULL UNIQUE,
  changes INTEGER NOT NULL,
  payload BLOB NOT NULL,
  bseq INTEGER
);
CREATE INDEX IF NOT EXISTS __burrow_outbox_shard ON __burrow_outbox(shard, id);
CREATE TABLE IF NOT EXISTS __burrow_sent(
  bseq INTEGER PRIMARY KEY,
  shard INTEGER NOT NULL,
  at_ms INTEGER NOT NULL,
  payload BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS __burrow_received(
  origin TEXT PRIMARY KEY,
  contiguous INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS __burrow_received_above(
  origin TEXT NOT NULL,
  n INTEGER NOT NULL,
  PRIMARY KEY (origin, n)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS __burrow_applied(
  shard INTEGER PRIMARY KEY,
  stream_seq INTEGER NOT NULL,
  at_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS __burrow_dead(
  id INTEGER PRIMARY KEY,
  at_ms INTEGER NOT NULL,
  shard INTEGER,
  stream_seq INTEGER,
  origin TEXT,
  tbl TEXT,
  hlc INTEGER,
  reason TEXT NOT NULL,
  change BLOB
);
CREATE TABLE IF NOT EXISTS __burrow_waiting(
  id INTEGER PRIMARY KEY,
  at_ms INTEGER NOT NULL,
  next_ms INTEGER NOT NULL,
  attempts INTEGER NOT NULL,
  shard INTEGER,
  stream_seq INTEGER,
  origin TEXT NOT NULL,
  tbl TEXT NOT NULL,
  hlc INTEGER NOT NULL,
  reason TEXT NOT NULL,
  change BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS __burrow_waiting_next ON __burrow_waiting(next_ms, id);
CREATE TABLE IF NOT EXISTS __burrow_conflicts(
  id INTEGER PRIMARY KEY,
  at_ms INTEGER NOT NULL,
  tbl TEXT NOT NULL,
  unique_columns TEXT NOT NULL,
  winner_node TEXT NOT NULL,
  winner_hlc INTEGER NOT NULL,
  winner_row TEXT NOT NULL,
  loser_node TEXT NOT NULL,
  loser_hlc INTEGER NOT NULL,
  loser_row TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS __burrow_meta(
  key TEXT PRIMARY KEY,
  value
);
CREATE TABLE IF NOT EXISTS __burrow_schema(
  type TEXT NOT NULL,
  name TEXT NOT NULL,
  tbl_name TEXT NOT NULL,
  sql TEXT NOT NULL,
  seq INTEGER NOT NULL,
  PRIMARY KEY (type, name)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS __burrow_schema_seen(
  type TEXT NOT NULL,
  name TEXT NOT NULL,
  tbl_name TEXT NOT NULL,
  sql TEXT NOT NULL,
  root INTEGER,
  PRIMARY KEY (type, name)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS __burrow_schema_out(
  n INTEGER PRIMARY KEY,
  payload BLOB NOT NULL,
  published INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS __burrow_schema_from(
  origin TEXT PRIMARY KEY,
  n INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS __burrow_schema_state(
  id INTEGER PRIMARY KEY CHECK (id = 1),
  seq INTEGER NOT NULL,
  own_n INTEGER NOT NULL
);
INSERT OR IGNORE INTO __burrow_schema_state(id, seq, own_n) VALUES (1, 0, 0);
CREATE TABLE IF NOT EXISTS __burrow_schema_history(
  seq INTEGER NOT NULL,
  origin TEXT NOT NULL,
  n INTEGER NOT NULL,
  kind TEXT NOT NULL,
  tbl TEXT NOT NULL,
  a TEXT,
  b TEXT
);
CREATE INDEX IF NOT EXISTS __burrow_schema_history_seq ON __burrow_schema_history(seq);
CREATE TABLE IF NOT EXISTS __burrow_schema_conflicts(
  id INTEGER PRIMARY KEY,
  at_ms INTEGER NOT NULL,
  seq INTEGER NOT NULL,
  origin TEXT NOT NULL,
  n INTEGER NOT NULL,
  objects TEXT NOT NULL,
  problem TEXT NOT NULL
);
`;
