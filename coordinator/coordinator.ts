// The coordinator: one facade over the parts that each own a job, all on one shared
// state (state.ts: the options, the cache of the Store, the soft state, the event log):
// admission (tokens, Register, certificates, leave: admission.ts), networks and slice
// allocation (networks.ts), and what agents report (soft-state.ts). Durable state lives in
// the Store, one transaction per change; every committed change bumps the revision and
// tells the listeners which hosts' peer records changed.
import { Admission } from './admission.js';
import type { EventLog } from './events.js';
import type {
  ChangeListener,
  DefaultNetwork,
  EndpointView,
  HostRec,
  HostView,
  NetworkView,
  PeerView,
  RegisterRequestView,
  SliceView,
  StatusReport,
  TokenRec,
} from './model.js';
import { Networks, networkView } from './networks.js';
import { Policy, type NetworkPolicyView } from './policy.js';
import { Encryption, type WireguardSelfView } from './encryption.js';
import { checkTunnelIps, type Encryption as EncryptionMode } from '../common/wireguard.js';
import type { PolicyRule } from '../common/policy.js';
import { SoftState } from './soft-state.js';
import { CoordState, type CoordinatorOptions } from './state.js';
import type { Store } from './store.js';

// the view types, where they were before model.ts held them
export type {
  AttachErrorView,
  Change,
  ChangeListener,
  DefaultNetwork,
  EndpointView,
  HostView,
  NetworkView,
  PeerView,
  RegisterRequestView,
  SliceView,
  TunnelView,
} from './model.js';
export { MAX_ENDPOINTS_PER_HOST } from './soft-state.js';
export { changedHosts, type CoordinatorOptions } from './state.js';

export class Coordinator {
  private readonly s: CoordState;
  private readonly admission: Admission;
  private readonly nets: Networks;
  private readonly policy: Policy;
  private readonly encryption: Encryption;
  private readonly softState: SoftState;
  readonly events: EventLog;

  private constructor(store: Store, o: CoordinatorOptions = {}) {
    this.s = new CoordState(store, o);
    this.admission = new Admission(this.s);
    this.nets = new Networks(this.s);
    this.policy = new Policy(this.s);
    this.encryption = new Encryption(this.s);
    this.softState = new SoftState(this.s);
    this.events = this.s.events;
  }

  /** A coordinator on this store, its cache of the store loaded. */
  static async create(store: Store, o: CoordinatorOptions = {}): Promise<Coordinator> {
    const c = new Coordinator(store, o);
    await c.s.reload();
    const shared = store.shared;
    if (shared) {
      // another coordinator on the same store committed a change: reload and tell the listeners
      // (the WatchHub fans it out to the agents watching this one) which hosts changed
      await shared.watchExternal(() =>
        c.s
          .reloadAndTell({ upserts: [], removes: [] }, false)
          .catch((e: Error) => c.s.log.warn({ err: e.message }, 'change made elsewhere not taken in')),
      );
      await shared.soft.watch((host, value) => c.softState.remoteSoft(host, value));
    }
    return c;
  }

  /** true while a host has an open Watch stream */
  get isConnected(): (host: string) => boolean {
    return this.s.isConnected;
  }
  set isConnected(f: (host: string) => boolean) {
    this.s.isConnected = f;
  }

  /** told when a host is admitted with a join token: every stream opened with its earlier identity must end */
  get onAdmitted(): (host: string) => void {
    return this.s.onAdmitted;
  }
  set onAdmitted(f: (host: string) => void) {
    this.s.onAdmitted = f;
  }

  /** Creates the default network on first start (never again: it may be deleted later). */
  init(def?: DefaultNetwork): Promise<void> {
    return this.nets.init(def);
  }

  onChange(l: ChangeListener): void {
    this.s.listeners.push(l);
  }

  revision(): number {
    return this.s.rev;
  }

  // ------------------------------------------------------------ reads (from the cache)

  networks(): NetworkView[] {
    return this.s.nets.map(networkView);
  }
  hostNames(): string[] {
    return [...this.s.hostMap.keys()];
  }
  hasHost(name: string): boolean {
    return this.s.hostMap.has(name);
  }
  underlayOf(name: string): string | undefined {
    return this.s.hostMap.get(name)?.underlayIp;
  }
  slicesOf(name: string): SliceView[] {
    return this.s.slicesOf(name);
  }
  peer(name: string): PeerView | undefined {
    return this.softState.peer(name);
  }
  hosts(): HostView[] {
    return this.softState.hosts();
  }
  host(name: string): HostView {
    return this.softState.host(name);
  }
  /** every endpoint agents reported, with the container's name where known */
  endpointsWithNames(): (EndpointView & { name: string })[] {
    return this.softState.endpointsWithNames();
  }
  /** host-down / host-up events for hosts whose state changed since the last call (call it every second or so) */
  checkLiveness(): void {
    this.softState.checkLiveness();
  }

  // ------------------------------------------------------------ admission

  tokens(): Promise<(Omit<TokenRec, 'secretHash' | 'state'> & { state: string })[]> {
    return this.admission.tokens();
  }
  joinHost(name: string, ttlS = 0): Promise<{ token: string; expiresMs: number }> {
    return this.admission.joinHost(name, ttlS);
  }
  revokeToken(id: string): Promise<void> {
    return this.admission.revokeToken(id);
  }
  /**
   * Admits a host with a join token (and, with TLS, signs its CSR), or lets an admitted
   * host back in: with TLS by its client certificate (callerFingerprint), else by its credential.
   */
  register(r: RegisterRequestView, callerFingerprint?: string): Promise<{ credential: string; certificate: string }> {
    return this.admission.register(r, callerFingerprint);
  }
  /** TLS: the host named in the certificate, if that certificate is the host's current one. */
  authenticateCert(name: string, fingerprint: string): HostRec {
    return this.admission.authenticateCert(name, fingerprint);
  }
  /** TLS: a host renews its certificate over its current one (a new key, the same name). */
  renew(name: string, callerFingerprint: string, csr: string): Promise<string> {
    return this.admission.renew(name, callerFingerprint, csr);
  }
  /** The host record if name + credential match; UNAUTHENTICATED otherwise. */
  authenticate(name: string, credential: string): HostRec {
    return this.admission.authenticate(name, credential);
  }
  removeHost(name: string): Promise<void> {
    return this.admission.removeHost(name);
  }

  // ------------------------------------------------------------ networks

  createNetwork(
    name: string,
    cidr: string,
    hostPrefixLen: number,
    mtu: number,
    isolation = '',
    ipv6?: { cidr: string; hostPrefixLen: number },
  ): Promise<NetworkView> {
    return this.nets.createNetwork(name, cidr, hostPrefixLen, mtu, isolation, ipv6);
  }
  async updateNetwork(name: string, isolation: string): Promise<NetworkView> {
    return networkView(await this.policy.setIsolation(name, isolation));
  }
  addPolicyRule(network: string, rule: Omit<PolicyRule, 'id'>): Promise<PolicyRule> {
    return this.policy.addRule(network, rule);
  }
  deletePolicyRule(id: string): Promise<void> {
    return this.policy.deleteRule(id);
  }
  listPolicy(network: string): NetworkPolicyView[] {
    return this.policy.list(network);
  }
  deleteNetwork(name: string): Promise<void> {
    return this.nets.deleteNetwork(name);
  }

  // ------------------------------------------------------------ encryption

  encryptionMode(): EncryptionMode {
    return this.encryption.mode;
  }
  /** encryption wireguard: what host `name` needs of its own WireGuard (undefined: off) */
  wireguardOf(name: string): WireguardSelfView | undefined {
    return this.encryption.selfOf(name);
  }
  /** the caller must already be authenticated as host `name` */
  setWireguardKey(name: string, publicKey: string, port: number, generation: number): Promise<void> {
    return this.encryption.setKey(name, publicKey, port, generation);
  }
  /** encryption wireguard: why the hosts and networks there are cannot get tunnel IPs, or undefined */
  encryptionProblem(): string | undefined {
    if (this.s.encryption !== 'wireguard') return undefined;
    return checkTunnelIps([...this.s.hostMap.values()], this.s.tunnelCidr, this.s.nets);
  }
  rotateKeys(host: string): Promise<string[]> {
    return this.encryption.rotate(host);
  }

  // ------------------------------------------------------------ soft state

  touch(name: string): void {
    this.s.touch(name);
  }
  /** the caller must already be authenticated as host `name` (certificate or credential) */
  reportStatus(name: string, r: StatusReport): Promise<void> {
    return this.softState.reportStatus(name, r);
  }
}
