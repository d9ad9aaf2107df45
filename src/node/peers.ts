import { connect, createInbox, type NatsConnection } from '@nats-io/transport-node';
import type { NatsSupervisor } from '../nats/nats-supervisor.ts';
import { errorMessage } from '../util/errors.ts';
import type { Logger } from '../util/log.ts';

/** A member taken out of cluster.toml whose server is to leave the JetStream cluster. */
export interface PeerRemoval {
  readonly node: string;
  readonly sinceMs: number;
  state: 'waiting for its server to stop' | 'removed' | 'not a peer' | 'gave up';
  /** The JetStream peer names removed (the node id, or `id~N` after rejoins). */
  removed: string[];
  lastError: string | null;
}

/** How long a removal waits for the removed node's server to stop before giving up (reported). */
const removalWaitMs = 10 * 60_000;
const requestTimeoutMs = 3000;
/** Replies to a server ping are gathered this long. */
const pingGatherMs = 500;

/**
 * JetStream membership of the embedded servers, through this node's own server's system account:
 * a member removed from cluster.toml is peer-removed once its server has stopped (stream groups
 * then heal on the remaining servers; every remaining node tries, staggered by its index, and "not
 * a member" means another did it); and this node's server, if JetStream was disabled for it because
 * it had been removed earlier and is a member again, rejoins as a new peer.
 */
export class JetStreamPeers {
  readonly removals: PeerRemoval[] = [];
  rejoins = 0;
  lastError: string | null = null;
  private sys: NatsConnection | null = null;
  private timer: NodeJS.Timeout | null = null;
  private busy = false;

  constructor(private readonly supervisor: NatsSupervisor, private readonly nodeIndex: () => number, private readonly log: Logger) {}

  start(intervalMs = 5000): void {
    this.timer ??= setInterval(() => void this.tick(), intervalMs);
    void this.tick();
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    await this.sys?.close().catch(() => {});
    this.sys = null;
  }

  /** SIGHUP took these members out of cluster.toml. */
  removed(ids: readonly string[]): void {
    for (const node of ids) {
      if (this.removals.some((r) => r.node === node && r.state === 'waiting for its server to stop')) continue;
      this.removals.push({ node, sinceMs: Date.now(), state: 'waiting for its server to stop', removed: [], lastError: null });
      if (this.removals.length > 20) this.removals.shift();
    }
  }

  /** Added back (SIGHUP): a removal still waiting for it is dropped. */
  added(ids: readonly string[]): void {
    for (let i = this.removals.length - 1; i >= 0; i--) {
      if (ids.includes(this.removals[i]!.node) && this.removals[i]!.state === 'waiting for its server to stop') this.removals.splice(i, 1);
    }
  }

  private async tick(): Promise<void> {
    if (this.busy) return;
    this.busy = true;
    try {
      this.sys ??= await connect({ servers: this.supervisor.clientUrl(), ...this.supervisor.systemUser(), tls: this.supervisor.clientTls(), name: 'burrow-system', maxReconnectAttempts: -1 });
      await this.checkSelf(this.sys);
      for (const r of this.removals) if (r.state === 'waiting for its server to stop') await this.tryRemove(this.sys, r);
      this.lastError = null;
    } catch (err) {
      this.lastError = errorMessage(err);
    } finally {
      this.busy = false;
    }
  }

  /** JetStream disabled on this server (it was peer-removed): rejoin as a new peer. */
  private async checkSelf(sys: NatsConnection): Promise<void> {
    const id = sys.info?.server_id;
    if (!id) return;
    const r = await sys.request(`$SYS.REQ.SERVER.${id}.JSZ`, '{}', { timeout: requestTimeoutMs });
    const jsz = r.json<{ data?: { disabled?: boolean } }>();
    if (jsz.data?.disabled !== true) return;
    this.log.warn('this node\'s nats-server was removed from the JetStream cluster earlier (the node was taken out of cluster.toml); it rejoins as a new peer');
    await this.sys?.close().catch(() => {});
    this.sys = null;
    await this.supervisor.rejoinAsNewPeer();
    this.rejoins++;
  }

  private async tryRemove(sys: NatsConnection, r: PeerRemoval): Promise<void> {
    const peers = await this.metaPeers(sys);
    const mine = peers.filter((p) => p.name === r.node || p.name.startsWith(`${r.node}~`));
    if (mine.length === 0) {
      r.state = r.removed.length > 0 ? 'removed' : 'not a peer';
      return;
    }
    // Gone means it answers no server ping (the meta leader may not flag it offline for a while).
    const online = new Set((await this.gather(sys, '$SYS.REQ.SERVER.PING', '')).map((j) => (j as { server?: { name?: string } }).server?.name));
    if (mine.some((p) => online.has(p.name))) {
      if (Date.now() - r.sinceMs > removalWaitMs) {
        r.state = 'gave up';
        r.lastError = `its server ${mine.map((p) => p.name).join(', ')} still runs ${removalWaitMs / 60_000} min after the removal: stop node ${r.node}`;
        this.log.warn('peer removal gave up', { node: r.node, error: r.lastError });
      }
      return;
    }
    // Staggered: the first remaining member goes first, the others only if it did not.
    if (Date.now() - r.sinceMs < this.nodeIndex() * 5000) return;
    for (const p of mine) {
      const reply = await sys.request('$JS.API.SERVER.REMOVE', JSON.stringify({ peer: p.name }), { timeout: requestTimeoutMs });
      const body = reply.json<{ success?: boolean; error?: { err_code?: number; description?: string } }>();
      if (body.success || body.error?.err_code === 10044) {
        r.removed.push(p.name);
        this.log.info('removed member\'s server left the JetStream cluster (peer removed); stream groups heal on the remaining servers', { node: r.node, peer: p.name });
      } else {
        r.lastError = body.error?.description ?? 'no answer';
      }
    }
  }

  /** Names of the JetStream meta group's peers, as the meta leader knows them. */
  private async metaPeers(sys: NatsConnection): Promise<{ name: string }[]> {
    const out: { name: string }[] = [];
    for (const j of await this.gather(sys, '$SYS.REQ.SERVER.PING.JSZ', JSON.stringify({ leader_only: true }))) {
      const mc = (j as { data?: { meta_cluster?: { leader?: string; replicas?: { name: string }[] } } }).data?.meta_cluster;
      if (!mc) continue;
      if (mc.leader) out.push({ name: mc.leader });
      for (const p of mc.replicas ?? []) out.push({ name: p.name });
    }
    return out;
  }

  /** Every server's answer to a system request, gathered for a moment. */
  private async gather(sys: NatsConnection, subject: string, payload: string): Promise<unknown[]> {
    const inbox = createInbox();
    const sub = sys.subscribe(inbox, { timeout: pingGatherMs + requestTimeoutMs });
    const out: unknown[] = [];
    const done = (async () => {
      for await (const m of sub) out.push(m.json());
    })().catch(() => {});
    sys.publish(subject, payload, { reply: inbox });
    await new Promise((res) => setTimeout(res, pingGatherMs));
    sub.unsubscribe();
    await done;
    return out;
  }
}
