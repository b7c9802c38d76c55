// Fan-out of desired state to Watch streams. Peers are encoded once per change and
// reused for every stream; each stream has at most one message in flight, and the
// next one is built when it drains, so a slow agent only ever gets the latest state
// and never delays the others (latest snapshot wins).
import { DesiredState, Peer } from '../proto/gen/gremesh/v1/gremesh.js';
import type { Change, NetworkView, PeerView, SliceView } from './coordinator.js';

export interface HubSource {
  revision(): number;
  networks(): NetworkView[];
  hostNames(): string[];
  peer(name: string): PeerView | undefined;
  slicesOf(name: string): SliceView[];
  underlayOf(name: string): string | undefined;
  /** encryption: the cluster's mode and this host's part of it */
  encryptionMode?(): string;
  wireguardOf?(name: string): DesiredState['wireguard'];
}

/** What the hub needs of a stream: write with a flushed-callback, and an end. */
export interface Sink {
  write(buf: Buffer, cb: () => void): void;
  /** the host was removed: end the stream */
  gone(): void;
  /** a newer stream of the same host took its place: end this one */
  superseded?(): void;
  /** the identity the stream was opened with is no longer the host's (admitted anew): end it */
  revoked?(): void;
}

/** Watch streams one host may hold at once; a new one ends the oldest (a reconnect before the old one is noticed dead needs 2) */
export const MAX_WATCH_PER_HOST = 2;

interface Watcher {
  host: string;
  sink: Sink;
  sentRev: number;
  inflight: boolean;
  dirty: boolean;
  closed: boolean;
}

const LOG_MAX = 4096;

/** A protobuf length-delimited field: tag, varint length, bytes. */
export function frameField(field: number, bytes: Uint8Array): Buffer {
  const head: number[] = [(field << 3) | 2];
  let n = bytes.length;
  while (n > 0x7f) {
    head.push((n & 0x7f) | 0x80);
    n >>>= 7;
  }
  head.push(n);
  return Buffer.concat([Buffer.from(head), bytes]);
}

export class WatchHub {
  private watchers = new Set<Watcher>();
  private byHost = new Map<string, number>();
  private peers = new Map<string, Buffer>();
  private log: { rev: number; upserts: string[]; removes: string[] }[] = [];
  private scheduled = false;
  /** when each revision was committed (fan-out latency) */
  private changedAt = new Map<number, number>();
  /** metrics: a stream was handed a revision this long after it was committed */
  onDelivered: (ms: number) => void = () => {};

  constructor(private readonly src: HubSource) {
    for (const h of src.hostNames()) this.encodePeer(h);
  }

  private encodePeer(name: string): void {
    const p = this.src.peer(name);
    if (!p) {
      this.peers.delete(name);
      return;
    }
    this.peers.set(name, frameField(6, Peer.encode(Peer.fromPartial(p)).finish()));
  }

  /** Called by the coordinator after every committed change. */
  changed(c: Change): void {
    for (const h of c.upserts) this.encodePeer(h);
    for (const h of c.removes) this.peers.delete(h);
    this.log.push({ rev: c.revision, upserts: c.upserts, removes: c.removes });
    this.changedAt.set(c.revision, performance.now());
    if (this.changedAt.size > LOG_MAX) this.changedAt.delete(this.changedAt.keys().next().value!);
    if (this.log.length > LOG_MAX) this.log.splice(0, this.log.length - LOG_MAX);
    for (const w of this.watchers) {
      if (c.removes.includes(w.host)) {
        this.close(w);
        w.sink.gone();
        continue;
      }
      w.dirty = true;
    }
    this.schedule();
  }

  add(host: string, sink: Sink, knownRevision = 0): () => void {
    const mine = [...this.watchers].filter((x) => x.host === host);
    for (const old of mine.slice(0, Math.max(0, mine.length - MAX_WATCH_PER_HOST + 1))) {
      this.close(old);
      old.sink.superseded?.();
    }
    const w: Watcher = { host, sink, sentRev: 0, inflight: false, dirty: true, closed: false };
    this.watchers.add(w);
    this.byHost.set(host, (this.byHost.get(host) ?? 0) + 1);
    if (this.covers(knownRevision)) {
      // the agent holds that revision and this hub saw every change since: a delta, not the world
      w.sentRev = knownRevision;
      w.inflight = true;
      w.dirty = false;
      w.sink.write(this.build(w, this.src.revision()), () => {
        w.inflight = false;
        if (w.dirty) this.flush(w);
      });
      w.sentRev = this.src.revision();
      return () => this.close(w);
    }
    this.flush(w);
    return () => this.close(w);
  }

  private close(w: Watcher): void {
    if (w.closed) return;
    w.closed = true;
    this.watchers.delete(w);
    const n = (this.byHost.get(w.host) ?? 1) - 1;
    if (n <= 0) this.byHost.delete(w.host);
    else this.byHost.set(w.host, n);
  }

  /** the change log reaches back to the revision right after rev (or rev is the current one, seen changing here) */
  private covers(rev: number): boolean {
    if (rev <= 0 || rev > this.src.revision() || this.log.length === 0) return false;
    if (rev === this.src.revision()) return this.log.some((e) => e.rev === rev);
    const first = this.log.findIndex((e) => e.rev > rev);
    return first >= 0 && this.log[first]!.rev === rev + 1;
  }

  isConnected(host: string): boolean {
    return this.byHost.has(host);
  }

  /** the host was admitted anew: its streams, opened with the earlier identity, end now */
  revoke(host: string): void {
    for (const w of [...this.watchers].filter((x) => x.host === host)) {
      this.close(w);
      w.sink.revoked?.();
    }
  }

  /** a message that is no state (a trace request) to the host's newest stream; false when it has none */
  sendTo(host: string, buf: Buffer): boolean {
    const w = [...this.watchers].filter((x) => x.host === host).at(-1);
    if (!w) return false;
    w.sink.write(buf, () => {});
    return true;
  }
  count(): number {
    return this.watchers.size;
  }

  private schedule(): void {
    if (this.scheduled) return;
    this.scheduled = true;
    setImmediate(() => {
      this.scheduled = false;
      for (const w of this.watchers) if (w.dirty) this.flush(w);
    });
  }

  private flush(w: Watcher): void {
    if (w.closed || w.inflight || !w.dirty) return;
    const rev = this.src.revision();
    if (rev === w.sentRev) {
      w.dirty = false;
      return;
    }
    const buf = this.build(w, rev);
    w.sentRev = rev;
    w.dirty = false;
    w.inflight = true;
    const at = this.changedAt.get(rev);
    w.sink.write(buf, () => {
      if (at !== undefined) this.onDelivered(performance.now() - at);
      w.inflight = false;
      if (w.dirty) this.flush(w);
    });
  }

  /** Full snapshot, or a delta from what this stream was last sent. */
  build(w: { host: string; sentRev: number }, rev: number): Buffer {
    let full = w.sentRev === 0;
    const upserts = new Set<string>();
    const removes = new Set<string>();
    if (!full && rev !== w.sentRev) {
      const first = this.log.findIndex((e) => e.rev > w.sentRev);
      // the log must reach back to the revision right after the one the stream holds
      if (first < 0 || this.log[first]!.rev !== w.sentRev + 1) full = true;
      else {
        for (const e of this.log.slice(first)) {
          for (const h of e.upserts) {
            upserts.add(h);
            removes.delete(h);
          }
          for (const h of e.removes) {
            removes.add(h);
            upserts.delete(h);
          }
        }
      }
    }
    const head = DesiredState.encode(
      DesiredState.fromPartial({
        revision: rev,
        host: w.host,
        underlayIp: this.src.underlayOf(w.host) ?? '',
        networks: this.src.networks(),
        slices: this.src.slicesOf(w.host),
        full,
        baseRevision: full ? 0 : w.sentRev,
        removedPeers: full ? [] : [...removes].filter((h) => h !== w.host),
        encryption: this.src.encryptionMode?.() ?? '',
        wireguard: this.src.wireguardOf?.(w.host),
      }),
    ).finish();
    const parts: Buffer[] = [Buffer.from(head.buffer, head.byteOffset, head.byteLength)];
    if (full) {
      for (const [name, b] of this.peers) if (name !== w.host) parts.push(b);
    } else {
      for (const name of upserts) {
        const b = this.peers.get(name);
        if (b && name !== w.host) parts.push(b);
      }
    }
    return Buffer.concat(parts);
  }
}
