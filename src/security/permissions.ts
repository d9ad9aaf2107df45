import { bucketName } from '../snapshot/store.ts';
import {
  heartbeatSubject, replaySubject, schemaStreamName, schemaSubject, shardSubject, snapshotTakeSubject, streamName,
} from '../shard/shard-router.ts';

/** A member's NATS user permissions: what it may publish and subscribe to. */
export interface MemberPermissions {
  readonly publish: { readonly allow: readonly string[]; readonly deny: readonly string[] };
  readonly subscribe: { readonly allow: readonly string[] };
}

/**
 * What member `node`'s NATS user may do ([security] auth): publish batches, schema entries and
 * heartbeats only on its own subjects — so the server, not the message, says who published it
 * (the receivers compare that with the origin the message names and with its signature) — ask
 * any member for replays and snapshots, and listen only on its own request subjects. JetStream's
 * API stays open (streams, consumers, the snapshot object store), except deleting or purging
 * the cluster's streams. A member able to configure streams could still republish its own
 * messages under another member's subject: the signature ([security] sign) is what stops that.
 */
export function memberPermissions(cluster: string, node: string, shards: number): MemberPermissions {
  const streams = [...Array.from({ length: shards }, (_, s) => streamName(cluster, s)), schemaStreamName(cluster)];
  return {
    publish: {
      allow: [
        shardSubject(cluster, '*', node), schemaSubject(cluster, node), heartbeatSubject(cluster, node),
        replaySubject(cluster, '*'), snapshotTakeSubject(cluster, '*'),
        '$JS.API.>', '$JS.ACK.>', '$JS.FC.>', `$O.${bucketName(cluster)}.>`, '_INBOX.>',
      ],
      deny: streams.flatMap((s) => [`$JS.API.STREAM.DELETE.${s}`, `$JS.API.STREAM.PURGE.${s}`]),
    },
    subscribe: {
      allow: [
        '_INBOX.>', heartbeatSubject(cluster, '*'), replaySubject(cluster, node), snapshotTakeSubject(cluster, node),
        '$JS.EVENT.ADVISORY.STREAM.LEADER_ELECTED.*',
      ],
    },
  };
}

/** The permissions block of a user in nats-server's configuration syntax (which reads JSON). */
export function renderPermissions(p: MemberPermissions): string {
  return `permissions: ${JSON.stringify(p)}`;
}
