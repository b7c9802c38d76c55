// The coordinator's shared state: its options, a cache of the Store (reloaded after every
// committed change), the soft state agents report, the event log and the change
// listeners. Admission, networks and soft state (admission.ts, networks.ts, soft-state.ts)
// each own a job and work on this one object; `change` is the one way to commit.
import { randomBytes } from 'node:crypto';
import type { Logger } from '../common/log.js';
import { silentLogger } from '../common/log.js';
import { slice6Cidr, sliceCidr } from './allocator.js';
import { CoordError, StoreConflict } from './errors.js';
import { EventLog } from './events.js';
import type {
  AttachErrorView,
  Change,
  ChangeListener,
  EndpointView,
  HostRec,
  NetworkRec,
  SliceView,
  TunnelView,
} from './model.js';
import type { Store, Tx } from './store.js';
import { DEFAULT_TUNNEL_CIDR, checkTunnelIps, tunnelIpOf, type Encryption } from '../common/wireguard.js';

export interface CoordinatorOptions {
  now?: () => number;
  /** the coordinator's own addresses (listen, advertise): no network may cover them */
  ownAddresses?: string[];
  /** a host with no contact for this long shows as down */
  downAfterMs?: number;
  defaultTokenTtlS?: number;
  log?: Logger;
  /** true while a host has an open Watch stream */
  isConnected?: (host: string) => boolean;
  /** told when a host is admitted with a join token: every stream opened with its earlier identity must end */
  onAdmitted?: (host: string) => void;
  /** TLS: signs a host's CSR into a client certificate (PEM) bound to its name */
  signCsr?: (csr: string, host: string) => Promise<string>;
  /** TLS: SHA-256 fingerprints of a PEM certificate and of its public key */
  fingerprintOf?: (pem: string) => { cert: string; key: string };
  /** TLS: SHA-256 of a CSR's public key (its signature checked), as keyFingerprint of a certificate */
  csrKeyFingerprint?: (csr: string) => Promise<string>;
  /** TLS: a certificate's validity (what coordctl status warns about before the agent reports it) */
  validityOf?: (pem: string) => { notBeforeMs: number; notAfterMs: number };
  /** every GRE packet between hosts inside WireGuard (--encryption); default none */
  encryption?: Encryption;
  /** encryption wireguard: the hosts' addresses inside WireGuard (--tunnel-cidr) */
  tunnelCidr?: string;
}

/** What agents reported of one host (never stored durably). */
export interface Soft {
  lastSeenMs: number;
  tunnels: TunnelView[];
  endpoints: EndpointView[];
  attachErrors: AttachErrorView[];
  /** container names by id, as the agent reported them (trace finds containers by name; never sent to peers) */
  names?: Map<string, string>;
  /** the agent's client certificate, as it reported it */
  cert?: { notBeforeMs: number; notAfterMs: number };
}

/** a Soft as written to a shared store: by which coordinator, names as pairs */
export type SoftRecord = Omit<Soft, 'names'> & { by: string; names: [string, string][] };

/** what a transaction of `change` returns: its result, and the hosts whose peer records changed or went */
export interface Changed<T> {
  result: T;
  upserts: string[];
  removes: string[];
}

/** Pure: the change c plus every host whose record or slices differ between two caches, and those gone. */
export function changedHosts(
  before: { hosts: Map<string, HostRec>; slices: Map<string, SliceView[]> },
  after: { hostMap: Map<string, HostRec>; slicesByHost: Map<string, SliceView[]> },
  c: { upserts: string[]; removes: string[] },
): { upserts: string[]; removes: string[] } {
  const upserts = new Set(c.upserts);
  const removes = new Set(c.removes);
  for (const [name, h] of after.hostMap) {
    const old = before.hosts.get(name);
    if (
      !old ||
      old.underlayIp !== h.underlayIp ||
      JSON.stringify(old.wireguard) !== JSON.stringify(h.wireguard) ||
      JSON.stringify(before.slices.get(name)) !== JSON.stringify(after.slicesByHost.get(name))
    )
      upserts.add(name);
  }
  for (const name of before.hosts.keys()) if (!after.hostMap.has(name)) removes.add(name);
  return { upserts: [...upserts], removes: [...removes] };
}

export class CoordState {
  readonly now: () => number;
  readonly downAfterMs: number;
  readonly ownAddresses: string[];
  readonly defaultTtlS: number;
  readonly log: Logger;
  readonly signCsr?: (csr: string, host: string) => Promise<string>;
  readonly fingerprintOf?: (pem: string) => { cert: string; key: string };
  readonly csrKeyFingerprint?: (csr: string) => Promise<string>;
  readonly validityOf?: (pem: string) => { notBeforeMs: number; notAfterMs: number };
  isConnected: (host: string) => boolean;
  onAdmitted: (host: string) => void;
  readonly encryption: Encryption;
  readonly tunnelCidr: string;

  readonly listeners: ChangeListener[] = [];
  readonly events = new EventLog();
  readonly soft = new Map<string, Soft>();
  /** host states as last seen by checkLiveness (host-down/host-up events) */
  readonly liveness = new Map<string, 'up' | 'down'>();
  /** this process, in the soft records it writes to a shared store */
  readonly id = randomBytes(6).toString('hex');
  /** hosts whose endpoints came in from another coordinator since the last fan-out of its changes */
  readonly endpointsChanged = new Set<string>();
  /** the revision listeners were last told of */
  private notified = 0;

  // a cache of the store, reloaded after every committed change
  rev = 0;
  nets: NetworkRec[] = [];
  hostMap = new Map<string, HostRec>();
  slicesByHost = new Map<string, SliceView[]>();

  constructor(
    readonly store: Store,
    o: CoordinatorOptions = {},
  ) {
    this.now = o.now ?? Date.now;
    this.downAfterMs = o.downAfterMs ?? 30_000;
    this.ownAddresses = o.ownAddresses ?? [];
    this.defaultTtlS = o.defaultTokenTtlS ?? 24 * 3600;
    this.log = o.log ?? silentLogger;
    this.isConnected = o.isConnected ?? (() => false);
    this.onAdmitted = o.onAdmitted ?? (() => {});
    this.signCsr = o.signCsr;
    this.fingerprintOf = o.fingerprintOf;
    this.csrKeyFingerprint = o.csrKeyFingerprint;
    this.validityOf = o.validityOf;
    this.encryption = o.encryption ?? 'none';
    this.tunnelCidr = o.tunnelCidr ?? DEFAULT_TUNNEL_CIDR;
  }

  /** encryption wireguard: a host's address inside WireGuard (undefined: off, or none fits) */
  tunnelIpOf(h: { underlayIp: string }): string | undefined {
    return this.encryption === 'wireguard' ? tunnelIpOf(h.underlayIp, this.tunnelCidr) : undefined;
  }

  /** encryption wireguard: INVALID when host h would get no tunnel IP, or another host's */
  checkTunnelIps(hosts: HostRec[], h: { name: string; underlayIp: string }): void {
    if (this.encryption !== 'wireguard') return;
    const problem = checkTunnelIps([...hosts.filter((x) => x.name !== h.name), h], this.tunnelCidr);
    if (problem) throw new CoordError('INVALID_ARGUMENT', problem);
  }

  /** encryption wireguard: how peers reach host h inside WireGuard, once it published its key */
  wireguardPeer(h: HostRec): { publicKey: string; port: number; tunnelIp: string } | undefined {
    const tunnelIp = this.tunnelIpOf(h);
    const w = h.wireguard;
    if (!tunnelIp || !w?.publicKey) return undefined;
    return { publicKey: w.publicKey, port: w.port, tunnelIp };
  }

  slicesOf(name: string): SliceView[] {
    return this.slicesByHost.get(name) ?? [];
  }

  touch(name: string): void {
    const s = this.soft.get(name) ?? { lastSeenMs: 0, tunnels: [], endpoints: [], attachErrors: [] };
    s.lastSeenMs = this.now();
    this.soft.set(name, s);
  }

  /**
   * A shared store (etcd): what agents reported here, for every other coordinator. Failing to
   * write it fails nothing here: the next report writes it again.
   */
  async publishSoft(name: string): Promise<void> {
    const s = this.soft.get(name);
    const shared = this.store.shared;
    if (!shared || !s) return;
    const rec: SoftRecord = { ...s, by: this.id, names: [...(s.names ?? [])] };
    await shared.soft.publish(name, JSON.stringify(rec)).catch((e: Error) => {
      this.log.warn({ host: name, err: e.message }, 'soft state not shared');
    });
  }

  /** One transaction; bumps the revision; reloads the cache; tells listeners. */
  async change<T>(what: string, fn: (t: Tx) => Changed<T>): Promise<T> {
    let out: Changed<T>;
    try {
      out = await this.store.tx((t) => {
        const r = fn(t);
        t.setMeta('revision', String(Number(t.meta('revision') ?? '0') + 1));
        return r;
      });
    } catch (e) {
      if (e instanceof StoreConflict)
        throw new CoordError('ABORTED', `${what}: conflicting change, try again (${e.message})`);
      throw e;
    }
    await this.reloadAndTell({ upserts: out.upserts, removes: out.removes }, true);
    return out.result;
  }

  async reload(): Promise<void> {
    // read in the transaction, set after it: a transaction that runs again leaves no trace
    const read = (t: Tx) => ({
      rev: Number(t.meta('revision') ?? '0'),
      nets: t.networks(),
      hosts: t.hosts(),
      slices: t.slices(),
    });
    // a shared store's copy is what its watch brought in: no round trip (none either without quorum)
    const r = this.store.shared?.cached(read) ?? (await this.store.tx(read));
    this.rev = r.rev;
    this.nets = r.nets;
    this.hostMap = new Map(r.hosts.map((h) => [h.name, h]));
    const byHost = new Map<string, SliceView[]>();
    const netByName = new Map(this.nets.map((n) => [n.name, n]));
    for (const s of r.slices) {
      if (s.host === null) continue;
      const n = netByName.get(s.network)!;
      const list = byHost.get(s.host) ?? [];
      const ipv6Cidr = slice6Cidr(n, s.idx);
      list.push({ network: s.network, cidr: sliceCidr(n, s.idx), ...(ipv6Cidr ? { ipv6Cidr } : {}) });
      byHost.set(s.host, list);
    }
    this.slicesByHost = byHost;
  }

  /**
   * The cache read again, and the listeners told of the change c (always, with force) plus,
   * on a shared store, of every host whose record or slices differ from the cache before
   * (another coordinator's change, taken in by this read or by a transaction that ran again)
   * and every host whose endpoints another coordinator shared. A host admitted anew elsewhere
   * (a new credential) loses the streams it had here.
   */
  async reloadAndTell(c: { upserts: string[]; removes: string[] }, force: boolean): Promise<void> {
    const before = { hosts: this.hostMap, slices: this.slicesByHost };
    await this.reload();
    let { upserts, removes } = c;
    if (this.store.shared) {
      for (const h of this.soft.keys()) if (!this.hostMap.has(h)) this.soft.delete(h);
      const shared = [...this.endpointsChanged].filter((h) => this.hostMap.has(h));
      this.endpointsChanged.clear();
      ({ upserts, removes } = changedHosts(
        before,
        { hostMap: this.hostMap, slicesByHost: this.slicesByHost },
        { upserts: [...upserts, ...shared], removes },
      ));
      for (const [name, h] of this.hostMap) {
        const old = before.hosts.get(name);
        if (old && old.credentialHash !== h.credentialHash && !c.upserts.includes(name)) this.onAdmitted(name);
      }
    }
    if (!force && this.rev <= this.notified && upserts.length === 0 && removes.length === 0) return;
    this.notified = Math.max(this.notified, this.rev);
    const change: Change = { revision: this.rev, upserts, removes };
    for (const l of this.listeners) l(change);
  }
}
