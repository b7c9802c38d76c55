// The coordinator's logic: admission, slice allocation, networks, tokens, and the
// soft state agents report (tunnel health, endpoints). Durable state lives in the
// Store, one transaction per change; every committed change bumps the revision and
// tells the listeners which hosts' peer records changed.
import { cidrContains, isUnicastMac, parseCidr, parseIp } from '../common/ipv4.js';
import type { Logger } from '../common/log.js';
import { silentLogger } from '../common/log.js';
import {
  CoordError,
  StoreConflict,
  denied,
  exhausted,
  exists,
  invalid,
  notFound,
  precondition,
  unauthenticated,
} from './errors.js';
import { pickGreKey, pickSlice, sliceCidr, sliceCount } from './allocator.js';
import type { HostRec, NetworkRec, TokenRec } from './model.js';
import type { Store, Tx } from './store.js';
import { hashSecret, newCredential, newToken, parseToken, secretMatches } from './tokens.js';
import {
  MAX_TTL_SECONDS,
  checkName,
  checkNetworkSpec,
  checkOverlayVsUnderlay,
  checkUnderlayIp,
  trunc,
} from './validate.js';
import { EventLog, attachEvents, tunnelEvents } from './events.js';
import { printable } from '../common/text.js';
import { randomBytes } from 'node:crypto';

/** endpoints one host may report: every agent's snapshot carries every host's */
export const MAX_ENDPOINTS_PER_HOST = 4096;

/** store meta: the highest GRE key ever handed out (keys are never reused) */
const GRE_KEY_HIGH = 'greKeyHigh';

const usedToken = (id: string) => unauthenticated(`join token ${id} was already used`);

export interface SliceView {
  network: string;
  cidr: string;
}
export interface EndpointView {
  network: string;
  host: string;
  mac: string;
  ip: string;
  containerId: string;
}
export interface TunnelView {
  peer: string;
  remoteIp: string;
  port: string;
  bfdState: string;
  forwarding: boolean;
  bfdDiagnostic: string;
  bfdFlaps: number;
}
export interface AttachErrorView {
  container: string;
  reason: string;
}
export interface PeerView {
  name: string;
  underlayIp: string;
  slices: SliceView[];
  endpoints: EndpointView[];
}
export interface NetworkView {
  name: string;
  cidr: string;
  hostPrefixLen: number;
  greKey: number;
  mtu: number;
}

export interface HostView {
  name: string;
  underlayIp: string;
  state: 'up' | 'down';
  slices: SliceView[];
  lastSeenMs: number;
  agentVersion: string;
  joinedMs: number;
  tunnels: TunnelView[];
  attachErrors: AttachErrorView[];
  endpoints: number;
  /** the agent's client certificate as it reported it (0: unknown) */
  certNotBeforeMs: number;
  certNotAfterMs: number;
}

export interface Change {
  revision: number;
  upserts: string[];
  removes: string[];
}
export type ChangeListener = (c: Change) => void;

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
  /** TLS: signs a host's CSR into a client certificate (PEM) bound to its name */
  signCsr?: (csr: string, host: string) => Promise<string>;
  /** TLS: SHA-256 fingerprints of a PEM certificate and of its public key */
  fingerprintOf?: (pem: string) => { cert: string; key: string };
  /** TLS: SHA-256 of a CSR's public key (its signature checked), as keyFingerprint of a certificate */
  csrKeyFingerprint?: (csr: string) => Promise<string>;
  /** TLS: a certificate's validity (what coordctl status warns about before the agent reports it) */
  validityOf?: (pem: string) => { notBeforeMs: number; notAfterMs: number };
}

export interface RegisterRequestView {
  name: string;
  token: string;
  credential: string;
  underlayIp: string;
  agentVersion: string;
  csr?: string;
}

export interface DefaultNetwork {
  name: string;
  cidr: string;
  hostPrefixLen: number;
  mtu: number;
}

/** a Soft as written to a shared store: by which coordinator, names as pairs */
type SoftRecord = Omit<Soft, 'names'> & { by: string; names: [string, string][] };

interface Soft {
  lastSeenMs: number;
  tunnels: TunnelView[];
  endpoints: EndpointView[];
  attachErrors: AttachErrorView[];
  /** container names by id, as the agent reported them (trace finds containers by name; never sent to peers) */
  names?: Map<string, string>;
  /** the agent's client certificate, as it reported it */
  cert?: { notBeforeMs: number; notAfterMs: number };
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
      JSON.stringify(before.slices.get(name)) !== JSON.stringify(after.slicesByHost.get(name))
    )
      upserts.add(name);
  }
  for (const name of before.hosts.keys()) if (!after.hostMap.has(name)) removes.add(name);
  return { upserts: [...upserts], removes: [...removes] };
}

export class Coordinator {
  private readonly now: () => number;
  private readonly downAfterMs: number;
  private readonly ownAddresses: string[];
  private readonly defaultTtlS: number;
  private readonly log: Logger;
  private listeners: ChangeListener[] = [];
  private soft = new Map<string, Soft>();
  /** host states as last seen by checkLiveness (host-down/host-up events) */
  private liveness = new Map<string, 'up' | 'down'>();
  readonly events = new EventLog();
  isConnected: (host: string) => boolean;
  private readonly signCsr?: (csr: string, host: string) => Promise<string>;
  private readonly fingerprintOf?: (pem: string) => { cert: string; key: string };
  private readonly csrKeyFingerprint?: (csr: string) => Promise<string>;
  private readonly validityOf?: (pem: string) => { notBeforeMs: number; notAfterMs: number };

  // a cache of the store, reloaded after every committed change
  private rev = 0;
  private nets: NetworkRec[] = [];
  private hostMap = new Map<string, HostRec>();
  private slicesByHost = new Map<string, SliceView[]>();

  private constructor(
    private readonly store: Store,
    o: CoordinatorOptions = {},
  ) {
    this.now = o.now ?? Date.now;
    this.downAfterMs = o.downAfterMs ?? 30_000;
    this.ownAddresses = o.ownAddresses ?? [];
    this.defaultTtlS = o.defaultTokenTtlS ?? 24 * 3600;
    this.log = o.log ?? silentLogger;
    this.isConnected = o.isConnected ?? (() => false);
    this.signCsr = o.signCsr;
    this.fingerprintOf = o.fingerprintOf;
    this.csrKeyFingerprint = o.csrKeyFingerprint;
    this.validityOf = o.validityOf;
  }

  /** A coordinator on this store, its cache of the store loaded. */
  static async create(store: Store, o: CoordinatorOptions = {}): Promise<Coordinator> {
    const c = new Coordinator(store, o);
    await c.reload();
    await store.watchExternal?.(() =>
      c.externalChange().catch((e: Error) => c.log.warn({ err: e.message }, 'change made elsewhere not taken in')),
    );
    await store.soft?.watch((host, value) => c.remoteSoft(host, value));
    return c;
  }

  /** this process, in the soft records it writes to a shared store */
  private readonly id = randomBytes(6).toString('hex');

  /**
   * A shared store (etcd): what agents reported here, for every other coordinator. Failing to
   * write it fails nothing here: the next report writes it again.
   */
  private async publishSoft(name: string): Promise<void> {
    const s = this.soft.get(name);
    if (!this.store.soft || !s) return;
    const rec: SoftRecord = { ...s, by: this.id, names: [...(s.names ?? [])] };
    await this.store.soft.publish(name, JSON.stringify(rec)).catch((e: Error) => {
      this.log.warn({ host: name, err: e.message }, 'soft state not shared');
    });
  }

  /**
   * A soft record another coordinator wrote (an agent reporting there). Kept unless the agent
   * watches through this coordinator; a record gone (its writer's lease ran out)
   * changes nothing: the host ages into "down" unless it reports somewhere.
   */
  private remoteSoft(host: string, value: string | undefined): void {
    if (value === undefined) return;
    let rec: SoftRecord;
    try {
      rec = JSON.parse(value) as SoftRecord;
    } catch {
      return;
    }
    if (rec.by === this.id) return;
    // the agent reports to one coordinator at a time, and the watch brings records in the
    // order etcd took them: the newest is the one to keep, unless the agent is here now
    // (no clocks compared: coordinators' clocks may differ)
    const mine = this.soft.get(host);
    if (this.isConnected(host)) return;
    if (JSON.stringify(mine?.endpoints ?? []) !== JSON.stringify(rec.endpoints ?? [])) this.endpointsChanged.add(host);
    this.soft.set(host, {
      lastSeenMs: rec.lastSeenMs,
      tunnels: rec.tunnels ?? [],
      endpoints: rec.endpoints ?? [],
      attachErrors: rec.attachErrors ?? [],
      names: new Map(rec.names ?? []),
      cert: rec.cert,
    });
  }

  /** the revision listeners were last told of */
  private notified = 0;

  /**
   * Another coordinator on the same store committed a change: reload and tell the listeners
   * (the WatchHub fans it out to the agents watching this one) which hosts changed: by the
   * difference of the cache, and by the endpoints other coordinators shared.
   */
  private async externalChange(): Promise<void> {
    await this.reloadAndTell({ upserts: [], removes: [] }, false);
  }

  /**
   * The cache read again, and the listeners told of the change c (always, with force) plus,
   * on a shared store, of every host whose record or slices differ from the cache before
   * (another coordinator's change, taken in by this read or by a transaction that ran again)
   * and every host whose endpoints another coordinator shared. A host admitted anew elsewhere
   * (a new credential) loses the streams it had here.
   */
  private async reloadAndTell(c: { upserts: string[]; removes: string[] }, force: boolean): Promise<void> {
    const before = { hosts: this.hostMap, slices: this.slicesByHost };
    await this.reload();
    let { upserts, removes } = c;
    if (this.store.watchExternal) {
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

  /** hosts whose endpoints came in from another coordinator since the last fan-out of its changes */
  private endpointsChanged = new Set<string>();

  /** Creates the default network on first start (never again: it may be deleted later). */
  async init(def?: DefaultNetwork): Promise<void> {
    const first = await this.store.tx((t) => t.meta('initialized') === undefined);
    if (!first) return;
    // a start that died between the two commits left the network without the mark: no second create
    if (def && !this.nets.some((n) => n.name === def.name))
      await this.createNetwork(def.name, def.cidr, def.hostPrefixLen, def.mtu);
    await this.store.tx((t) => t.setMeta('initialized', String(this.now())));
  }

  /** told when a host is admitted with a join token: every stream opened with its earlier identity must end */
  onAdmitted: (host: string) => void = () => {};

  onChange(l: ChangeListener): void {
    this.listeners.push(l);
  }

  revision(): number {
    return this.rev;
  }

  // ------------------------------------------------------------ reads (from the cache)

  networks(): NetworkView[] {
    return this.nets.map(({ createdMs: _c, ...n }) => n);
  }
  hostNames(): string[] {
    return [...this.hostMap.keys()];
  }
  hasHost(name: string): boolean {
    return this.hostMap.has(name);
  }
  underlayOf(name: string): string | undefined {
    return this.hostMap.get(name)?.underlayIp;
  }
  slicesOf(name: string): SliceView[] {
    return this.slicesByHost.get(name) ?? [];
  }

  peer(name: string): PeerView | undefined {
    const h = this.hostMap.get(name);
    if (!h) return undefined;
    return {
      name,
      underlayIp: h.underlayIp,
      slices: this.slicesOf(name),
      endpoints: this.soft.get(name)?.endpoints ?? [],
    };
  }

  hosts(): HostView[] {
    return [...this.hostMap.values()].map((h) => this.hostView(h));
  }

  /** host-down / host-up events for hosts whose state changed since the last call (call it every second or so) */
  checkLiveness(): void {
    for (const h of this.hosts()) {
      const before = this.liveness.get(h.name);
      this.liveness.set(h.name, h.state);
      if (before === undefined || before === h.state) continue;
      this.events.add({
        timeMs: this.now(),
        kind: h.state === 'down' ? 'host-down' : 'host-up',
        host: h.name,
        peer: '',
        detail:
          h.state === 'down'
            ? `no contact for ${Math.round((this.now() - h.lastSeenMs) / 1000)} s (down after ${this.downAfterMs / 1000} s)`
            : 'in contact again',
      });
    }
  }

  /** every endpoint agents reported, with the container's name where known */
  endpointsWithNames(): (EndpointView & { name: string })[] {
    return [...this.soft.values()].flatMap((s) =>
      s.endpoints.map((e) => ({ ...e, name: s.names?.get(e.containerId) ?? '' })),
    );
  }

  host(name: string): HostView {
    const h = this.hostMap.get(name);
    if (!h) throw notFound(`no host named "${trunc(name)}"`);
    return this.hostView(h);
  }

  private hostView(h: HostRec): HostView {
    const s = this.soft.get(h.name);
    const lastSeenMs = this.isConnected(h.name) ? this.now() : (s?.lastSeenMs ?? 0);
    return {
      name: h.name,
      underlayIp: h.underlayIp,
      slices: this.slicesOf(h.name),
      lastSeenMs,
      agentVersion: h.agentVersion,
      joinedMs: h.joinedMs,
      state: lastSeenMs > 0 && this.now() - lastSeenMs <= this.downAfterMs ? 'up' : 'down',
      tunnels: s?.tunnels ?? [],
      attachErrors: s?.attachErrors ?? [],
      endpoints: s?.endpoints.length ?? 0,
      certNotBeforeMs: s?.cert?.notBeforeMs ?? 0,
      certNotAfterMs: s?.cert?.notAfterMs ?? 0,
    };
  }

  async tokens(): Promise<(Omit<TokenRec, 'secretHash' | 'state'> & { state: string })[]> {
    const now = this.now();
    return (await this.store.tx((t) => t.tokens())).map(({ secretHash: _s, ...t }) => ({
      ...t,
      state: t.state === 'valid' && t.expiresMs <= now ? 'expired' : t.state,
    }));
  }

  // ------------------------------------------------------------ writes

  /** One transaction; bumps the revision; reloads the cache; tells listeners. */
  private async change<T>(
    what: string,
    fn: (t: Tx) => { result: T; upserts: string[]; removes: string[] },
  ): Promise<T> {
    let out: { result: T; upserts: string[]; removes: string[] };
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

  private async reload(): Promise<void> {
    // read in the transaction, set after it: a transaction that runs again leaves no trace
    const read = (t: Tx) => ({
      rev: Number(t.meta('revision') ?? '0'),
      nets: t.networks(),
      hosts: t.hosts(),
      slices: t.slices(),
    });
    // a shared store's copy is what its watch brought in: no round trip (none either without quorum)
    const r = this.store.cached?.(read) ?? (await this.store.tx(read));
    this.rev = r.rev;
    this.nets = r.nets;
    this.hostMap = new Map(r.hosts.map((h) => [h.name, h]));
    const byHost = new Map<string, SliceView[]>();
    const netByName = new Map(this.nets.map((n) => [n.name, n]));
    for (const s of r.slices) {
      if (s.host === null) continue;
      const n = netByName.get(s.network)!;
      const list = byHost.get(s.host) ?? [];
      list.push({ network: s.network, cidr: sliceCidr(n, s.idx) });
      byHost.set(s.host, list);
    }
    this.slicesByHost = byHost;
  }

  async joinHost(name: string, ttlS = 0): Promise<{ token: string; expiresMs: number }> {
    const bad = checkName('host', name);
    if (bad) throw invalid(bad);
    if (!Number.isInteger(ttlS) || ttlS < 0 || ttlS > MAX_TTL_SECONDS)
      throw invalid(`token TTL must be 1..${MAX_TTL_SECONDS} seconds`);
    const tk = newToken();
    const expiresMs = this.now() + (ttlS || this.defaultTtlS) * 1000;
    await this.store.tx((t) => {
      if (t.token(tk.id)) throw new CoordError('ABORTED', 'token id collision, try again');
      t.putToken({
        id: tk.id,
        secretHash: hashSecret(tk.secret),
        host: name,
        expiresMs,
        state: 'valid',
        createdMs: this.now(),
      });
    });
    this.log.info({ host: name, token: tk.id, expiresMs }, 'join token issued');
    return { token: tk.token, expiresMs };
  }

  async revokeToken(id: string): Promise<void> {
    const found = await this.store.tx((t) => {
      const tok = t.token(id);
      if (!tok) return undefined;
      if (tok.state === 'valid') t.putToken({ ...tok, state: 'revoked' });
      return tok;
    });
    if (!found) throw notFound(`no join token "${trunc(id)}"`);
    if (found.state === 'used')
      throw precondition(
        `join token ${found.id} was already used by host ${found.host}: revoking it changes nothing; to cut the host off: coordctl leave ${found.host}`,
      );
  }

  /** The token must be usable by this host: checked before anything is signed, again in the transaction. */
  private checkToken(t: Tx, id: string, secret: string, name: string, allowUsed = false): TokenRec {
    const tok = t.token(id);
    if (!tok || !secretMatches(secret, tok.secretHash)) throw unauthenticated(`unknown join token ${id}`);
    if (tok.state === 'revoked') throw unauthenticated(`join token ${tok.id} was revoked`);
    if (tok.state === 'used' && !(allowUsed && tok.host === name)) throw usedToken(tok.id);
    if (tok.expiresMs <= this.now())
      throw unauthenticated(`join token ${tok.id} expired at ${new Date(tok.expiresMs).toISOString()}`);
    if (tok.host !== name) throw denied(`join token ${tok.id} is for host ${tok.host}, not ${name}`);
    return tok;
  }

  /**
   * Admits a host with a join token (and, with TLS, signs its CSR), or lets an admitted
   * host back in: with TLS by its client certificate (callerFingerprint), else by its credential.
   */
  async register(
    r: RegisterRequestView,
    callerFingerprint?: string,
  ): Promise<{ credential: string; certificate: string }> {
    const bad =
      checkName('host', r.name) ??
      checkUnderlayIp(r.underlayIp) ??
      checkOverlayVsUnderlay(this.nets, [{ what: `host ${r.name}'s underlay IP`, ip: r.underlayIp }]);
    if (bad) throw invalid(bad);
    if (r.agentVersion.length > 64) throw invalid('agent version longer than 64 characters');
    if (callerFingerprint) {
      this.authenticateCert(r.name, callerFingerprint);
      await this.reRegister(r);
      return { credential: '', certificate: '' };
    }
    if (r.credential) {
      if (this.signCsr)
        throw unauthenticated('this coordinator uses TLS: re-register with the host certificate, not a credential');
      this.authenticate(r.name, r.credential);
      await this.reRegister(r);
      return { credential: r.credential, certificate: '' };
    }
    if (!r.token) throw unauthenticated('Register needs a join token, or the host certificate');
    const parsed = parseToken(r.token);
    if (!parsed) throw unauthenticated('malformed join token (want [a-z0-9]{6}.[a-z0-9]{16})');
    let certificate = '';
    let certFingerprint = '';
    let keyFingerprint = '';
    if (this.signCsr) {
      if (!r.csr || r.csr.length > 8192 || !r.csr.includes('BEGIN CERTIFICATE REQUEST'))
        throw invalid('Register with a join token needs a PEM certificate request (csr)');
      // a join whose reply was lost (coordinator killed, or too slow, after the commit) is
      // retried with the same token: a used token passes here, and the commit below takes it
      // only with the key the host was admitted with
      const tok = await this.store.tx((t) => this.checkToken(t, parsed.id, parsed.secret, r.name, true));
      // a used token signs nothing for another key: compare the CSR's key first
      if (tok.state === 'used') {
        let key = '';
        try {
          key = this.csrKeyFingerprint ? await this.csrKeyFingerprint(r.csr) : '';
        } catch (e) {
          throw invalid(`the certificate request could not be read: ${(e as Error).message.split('\n')[0]}`);
        }
        if (!key || this.hostMap.get(r.name)?.keyFingerprint !== key) throw usedToken(tok.id);
      }
      try {
        certificate = await this.signCsr(r.csr, r.name);
      } catch (e) {
        throw invalid(`the certificate request could not be signed: ${(e as Error).message.split('\n')[0]}`);
      }
      const fp = this.fingerprintOf!(certificate);
      certFingerprint = fp.cert;
      keyFingerprint = fp.key;
    }
    const credential = newCredential();
    await this.change('register', (t) => {
      const tok = this.checkToken(t, parsed.id, parsed.secret, r.name, !!keyFingerprint);
      if (tok.state === 'used' && t.host(r.name)?.keyFingerprint !== keyFingerprint) throw usedToken(tok.id);
      if (tok.state === 'used')
        this.log.warn(
          { host: r.name, token: tok.id },
          'join retried with the same key (its first reply was lost): certificate issued again',
        );
      const other = t.hosts().find((h) => h.underlayIp === r.underlayIp && h.name !== r.name);
      if (other) throw exists(`underlay IP ${r.underlayIp} is already used by host ${other.name}`);
      const prev = t.host(r.name);
      for (const n of t.networks()) this.allocate(t, n, r.name);
      t.putHost({
        name: r.name,
        underlayIp: r.underlayIp,
        credentialHash: hashSecret(credential),
        agentVersion: r.agentVersion,
        joinedMs: prev?.joinedMs ?? this.now(),
        certFingerprint,
        keyFingerprint,
      });
      t.putToken({ ...tok, state: 'used' });
      return { result: undefined, upserts: [r.name], removes: [] };
    });
    this.touch(r.name);
    this.log.info({ host: r.name, underlayIp: r.underlayIp, slices: this.slicesOf(r.name) }, 'host admitted');
    if (certificate && this.validityOf) this.soft.get(r.name)!.cert = this.validityOf(certificate);
    await this.publishSoft(r.name);
    this.onAdmitted(r.name);
    this.events.add({
      timeMs: this.now(),
      kind: 'host-joined',
      host: r.name,
      peer: '',
      detail: `underlay ${r.underlayIp}, slices ${
        this.slicesOf(r.name)
          .map((x) => x.cidr)
          .join(', ') || 'none'
      }`,
    });
    this.liveness.set(r.name, 'up');
    return { credential: this.signCsr ? '' : credential, certificate };
  }

  /** TLS: the host named in the certificate, if that certificate is the host's current one. */
  authenticateCert(name: string, fingerprint: string): HostRec {
    const h = this.hostMap.get(name);
    if (!h || !h.certFingerprint || h.certFingerprint !== fingerprint)
      throw unauthenticated(`certificate for host "${trunc(name)}" is not current (host removed or re-joined)`);
    return h;
  }

  /**
   * TLS: a host renews its certificate over its current one (a new key, the same name).
   * The new certificate becomes the only current one; streams opened with the old one go
   * on (the agent moves to the new one and resumes its Watch with a delta).
   */
  async renew(name: string, callerFingerprint: string, csr: string): Promise<string> {
    if (!this.signCsr || !this.fingerprintOf) throw precondition('this coordinator runs without TLS: nothing to renew');
    this.authenticateCert(name, callerFingerprint);
    if (!csr || csr.length > 8192 || !csr.includes('BEGIN CERTIFICATE REQUEST'))
      throw invalid('Renew needs a PEM certificate request (csr)');
    let certificate: string;
    try {
      certificate = await this.signCsr(csr, name);
    } catch (e) {
      throw invalid(`the certificate request could not be signed: ${(e as Error).message.split('\n')[0]}`);
    }
    const fp = this.fingerprintOf(certificate);
    await this.store.tx((t) => {
      const h = t.host(name);
      if (!h || h.certFingerprint !== callerFingerprint)
        throw unauthenticated(`certificate for host "${trunc(name)}" is not current (host removed or re-joined)`);
      t.putHost({ ...h, certFingerprint: fp.cert, keyFingerprint: fp.key });
    });
    await this.reloadAndTell({ upserts: [], removes: [] }, false);
    this.touch(name);
    if (this.validityOf) this.soft.get(name)!.cert = this.validityOf(certificate);
    await this.publishSoft(name);
    this.log.info({ host: name }, 'host certificate renewed');
    return certificate;
  }

  private async reRegister(r: { name: string; underlayIp: string; agentVersion: string }): Promise<void> {
    const h = this.hostMap.get(r.name)!;
    const missing = this.nets.some((n) => !this.slicesOf(r.name).some((s) => s.network === n.name));
    if (h.underlayIp !== r.underlayIp || h.agentVersion !== r.agentVersion || missing) {
      await this.change('register', (t) => {
        const other = t.hosts().find((x) => x.underlayIp === r.underlayIp && x.name !== r.name);
        if (other) throw exists(`underlay IP ${r.underlayIp} is already used by host ${other.name}`);
        for (const n of t.networks()) this.allocate(t, n, r.name);
        t.putHost({ ...t.host(r.name)!, underlayIp: r.underlayIp, agentVersion: r.agentVersion });
        return { result: undefined, upserts: [r.name], removes: [] };
      });
    }
    this.touch(r.name);
  }

  private allocate(t: Tx, n: NetworkRec, host: string): void {
    const slices = t.slices(n.name);
    const idx = pickSlice(n, slices, host);
    if (idx === undefined) {
      throw exhausted(
        `network ${n.name} (${n.cidr}) is full: all ${sliceCount(n)} /${n.hostPrefixLen} slices are taken`,
      );
    }
    const cur = slices.find((s) => s.idx === idx);
    if (cur?.host === host) return;
    t.putSlice({ network: n.name, idx, host, lastHost: host, releasedMs: null });
  }

  /** The host record if name + credential match; UNAUTHENTICATED otherwise. */
  authenticate(name: string, credential: string): HostRec {
    const h = this.hostMap.get(name);
    if (!h || !credential || !secretMatches(credential, h.credentialHash))
      throw unauthenticated(`unknown host "${trunc(name)}" or wrong credential`);
    return h;
  }

  async removeHost(name: string): Promise<void> {
    if (!this.hostMap.has(name)) throw notFound(`no host named "${trunc(name)}"`);
    await this.change('leave', (t) => {
      if (!t.host(name)) throw notFound(`no host named "${trunc(name)}"`);
      for (const s of t.slices()) {
        if (s.host === name) t.putSlice({ ...s, host: null, lastHost: name, releasedMs: this.now() });
      }
      for (const tok of t.tokens())
        if (tok.host === name && tok.state === 'valid') t.putToken({ ...tok, state: 'revoked' });
      t.deleteHost(name);
      return { result: undefined, upserts: [], removes: [name] };
    });
    this.soft.delete(name);
    await this.store.soft?.remove(name).catch(() => {});
    this.liveness.delete(name);
    this.log.info({ host: name }, 'host removed');
    this.events.add({ timeMs: this.now(), kind: 'host-left', host: name, peer: '', detail: 'coordctl leave' });
  }

  async createNetwork(name: string, cidr: string, hostPrefixLen: number, mtu: number): Promise<NetworkView> {
    const bad = checkName('network', name) ?? checkNetworkSpec(cidr, hostPrefixLen, mtu, []);
    if (bad) throw invalid(bad);
    const net = await this.change('network create', (t) => {
      if (t.network(name)) throw exists(`network ${name} already exists`);
      const overlap =
        checkNetworkSpec(cidr, hostPrefixLen, mtu, t.networks()) ??
        checkOverlayVsUnderlay(
          [{ name, cidr }],
          [
            ...t.hosts().map((h) => ({ what: `host ${h.name}'s underlay IP`, ip: h.underlayIp })),
            ...this.ownAddresses.map((ip) => ({ what: "the coordinator's address", ip })),
          ],
        );
      if (overlap) throw invalid(overlap);
      const greKey = pickGreKey(t.networks(), Number(t.meta(GRE_KEY_HIGH) ?? 0));
      const n: NetworkRec = { name, cidr, hostPrefixLen, greKey, mtu, createdMs: this.now() };
      t.putNetwork(n);
      t.setMeta(GRE_KEY_HIGH, String(greKey));
      const hosts = t.hosts();
      if (hosts.length > sliceCount(n)) {
        throw exhausted(
          `network ${name} (${cidr}) has ${sliceCount(n)} /${hostPrefixLen} slices for ${hosts.length} admitted hosts`,
        );
      }
      for (const h of hosts) this.allocate(t, n, h.name);
      return { result: n, upserts: hosts.map((h) => h.name), removes: [] };
    });
    this.log.info({ network: name, cidr, hostPrefixLen, greKey: net.greKey }, 'network created');
    const { createdMs: _c, ...view } = net;
    return view;
  }

  async deleteNetwork(name: string): Promise<void> {
    if (!this.nets.some((n) => n.name === name)) throw notFound(`no network named "${trunc(name)}"`);
    const attached = [...this.soft.entries()].flatMap(([h, s]) =>
      s.endpoints.filter((e) => e.network === name).map(() => h),
    );
    if (attached.length) {
      throw precondition(
        `network ${name} still has ${attached.length} attached containers (on ${[...new Set(attached)].join(', ')})`,
      );
    }
    await this.change('network delete', (t) => {
      t.deleteNetwork(name);
      return { result: undefined, upserts: t.hosts().map((h) => h.name), removes: [] };
    });
    this.log.info({ network: name }, 'network deleted');
  }

  // ------------------------------------------------------------ soft state

  touch(name: string): void {
    const s = this.soft.get(name) ?? { lastSeenMs: 0, tunnels: [], endpoints: [], attachErrors: [] };
    s.lastSeenMs = this.now();
    this.soft.set(name, s);
  }

  /** the caller must already be authenticated as host `name` (certificate or credential) */
  async reportStatus(
    name: string,
    r: {
      tunnels: (Omit<TunnelView, 'bfdDiagnostic' | 'bfdFlaps'> & { bfdDiagnostic?: string; bfdFlaps?: number })[];
      endpoints: (EndpointView & { containerName?: string })[];
      attachErrors: AttachErrorView[];
      certNotBeforeMs?: number;
      certNotAfterMs?: number;
    },
  ): Promise<void> {
    if (!this.hostMap.has(name)) throw notFound(`no host named "${trunc(name)}"`);
    if (r.tunnels.length > 10_000 || r.endpoints.length > 65_536 || r.attachErrors.length > 10_000)
      throw invalid('status report too large');
    if (r.endpoints.length > MAX_ENDPOINTS_PER_HOST)
      throw invalid(
        `host ${name} reports ${r.endpoints.length} endpoints; at most ${MAX_ENDPOINTS_PER_HOST} per host (every agent receives them all)`,
      );
    const endpoints: EndpointView[] = [];
    const refused: AttachErrorView[] = [];
    const macOwner = new Map<string, string>();
    for (const [h, other] of this.soft)
      if (h !== name) for (const x of other.endpoints) macOwner.set(`${x.network}/${x.mac}`, h);
    for (const e of r.endpoints) {
      const slice = this.slicesOf(name).find((s) => s.network === e.network);
      if (!slice) throw invalid(`endpoint ${trunc(e.ip)}: host ${name} has no slice of network "${trunc(e.network)}"`);
      const ip = parseIp(e.ip);
      if (ip === undefined || !cidrContains(parseCidr(slice.cidr)!, ip))
        throw invalid(`endpoint IP "${trunc(e.ip)}" is not in ${name}'s slice ${slice.cidr}`);
      if (!/^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/.test(e.mac))
        throw invalid(`endpoint MAC "${trunc(e.mac)}" is not a lowercase MAC address`);
      // a group address, or a MAC another host already reported in this network: not passed
      // on (no host may draw another's traffic by claiming its MAC); said in attach errors
      if (!isUnicastMac(e.mac)) {
        refused.push({
          container: printable(e.containerId.slice(0, 12), 64),
          reason: `endpoint MAC ${e.mac} is not unicast: not passed to peers`,
        });
        continue;
      }
      const owner = macOwner.get(`${e.network}/${e.mac}`);
      if (owner !== undefined && owner !== name) {
        refused.push({
          container: printable(e.containerId.slice(0, 12), 64),
          reason: `endpoint MAC ${e.mac} is already ${owner}'s in network ${printable(e.network, 64)}: not passed to peers`,
        });
        continue;
      }
      endpoints.push({ network: e.network, host: name, mac: e.mac, ip: e.ip, containerId: trunc(e.containerId, 64) });
    }
    endpoints.sort((a, b) => a.network.localeCompare(b.network) || a.ip.localeCompare(b.ip));
    this.touch(name);
    const s = this.soft.get(name)!;
    const tunnels = r.tunnels.map((x) => ({
      ...x,
      peer: trunc(x.peer),
      port: trunc(x.port),
      remoteIp: trunc(x.remoteIp),
      bfdState: trunc(x.bfdState, 16),
      bfdDiagnostic: trunc(x.bfdDiagnostic ?? '', 64),
      bfdFlaps: Number(x.bfdFlaps ?? 0),
    }));
    // printed by coordctl: no terminal control sequences, bounded length, whatever the agent sent
    const attachErrors = [
      ...r.attachErrors
        .slice(0, 1000)
        .map((x) => ({ container: printable(x.container, 64), reason: printable(x.reason, 256) })),
      ...refused.slice(0, 100),
    ];
    for (const e of [
      ...tunnelEvents(name, s.tunnels, tunnels, this.now()),
      ...attachEvents(name, s.attachErrors, attachErrors, this.now()),
    ])
      this.events.add(e);
    s.tunnels = tunnels;
    s.attachErrors = attachErrors;
    // the newest certificate wins (a report sent just before a renewal carries the old one)
    if (r.certNotAfterMs && Number(r.certNotAfterMs) >= (s.cert?.notAfterMs ?? 0))
      s.cert = { notBeforeMs: Number(r.certNotBeforeMs ?? 0), notAfterMs: Number(r.certNotAfterMs) };
    s.names = new Map(
      r.endpoints
        .filter((e) => e.containerId && e.containerName)
        .map((e) => [trunc(e.containerId, 64), printable(e.containerName!, 64)]),
    );
    const changed = JSON.stringify(s.endpoints) !== JSON.stringify(endpoints);
    s.endpoints = endpoints;
    // shared before the change: a coordinator that hears of the change has the endpoints already
    await this.publishSoft(name);
    if (changed) await this.change('endpoints', () => ({ result: undefined, upserts: [name], removes: [] }));
  }
}
