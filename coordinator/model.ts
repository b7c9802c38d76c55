// Records the coordinator keeps (plain data; the Store persists them) and the views it answers with.
import type { Isolation, PolicyRule } from '../common/policy.js';
import type { ReportedTunnelHealth, TunnelHealth } from '../common/tunnel-health.js';

export interface NetworkRec {
  name: string;
  cidr: string;
  hostPrefixLen: number;
  greKey: number;
  mtu: number;
  createdMs: number;
  /** absent: 'none' (records written before policy) */
  isolation?: Isolation;
  /** absent: none */
  rules?: PolicyRuleRec[];
  /** dual-stack: the network's IPv6 prefix and the length of each host's IPv6 slice (absent: IPv4 only) */
  ipv6Cidr?: string;
  ipv6HostPrefixLen?: number;
}

/** 'none': every container reaches every other (deny rules apply); 'groups': default deny between containers */
export type { Isolation } from '../common/policy.js';
/** a rule: "r7" (unique in the cluster, never reused), allow|deny FROM -> TO [proto [ports]] */
export type PolicyRuleRec = PolicyRule;

export interface HostRec {
  name: string;
  underlayIp: string;
  credentialHash: string;
  agentVersion: string;
  joinedMs: number;
  /** SHA-256 fingerprint of the host's current client certificate (TLS); '' when none */
  certFingerprint: string;
  /** SHA-256 of that certificate's public key (TLS): a join retried after a lost reply must bring the same key; '' when none */
  keyFingerprint: string;
  /** encryption: the WireGuard key the host published, and the rotations asked of it; absent: none yet */
  wireguard?: WireguardRec;
}

/** A host's WireGuard key as it published it (SetWireguardKey), and coordctl rotate-keys. */
export interface WireguardRec {
  /** base64; '' before the host published one */
  publicKey: string;
  port: number;
  /** the rotation that key answers */
  generation: number;
  /** rotations asked for: the host replaces a key whose generation is lower */
  rotation: number;
  /** a rotation waits for the host rotating before it (one host at a time: none loses a packet) */
  queued?: boolean;
}

/** One /hostPrefixLen slice of a network: held by a host, or free (quarantined once released). */
export interface SliceRec {
  network: string;
  idx: number;
  host: string | null;
  /** the last host that held it (a re-joining host gets its slice back) */
  lastHost: string | null;
  /** when it was released; null while held */
  releasedMs: number | null;
}

export type TokenState = 'valid' | 'used' | 'revoked';

export interface TokenRec {
  id: string;
  secretHash: string;
  host: string;
  expiresMs: number;
  state: TokenState;
  createdMs: number;
}

// ------------------------------------------------------------ views
// What the coordinator answers with (built from the records and the soft state agents report);
// coordinator.ts, events.ts, the WatchHub and the gRPC layer all speak these.

export interface SliceView {
  network: string;
  cidr: string;
  /** dual-stack: the IPv6 slice of the same index */
  ipv6Cidr?: string;
}
export interface EndpointView {
  network: string;
  host: string;
  mac: string;
  ip: string;
  containerId: string;
  /** its DNS names in the network (validated, lowercase); absent in records written before names */
  names?: string[];
  /** its policy group (gremesh.group, validated, lowercase); absent: none */
  group?: string;
  /** dual-stack: its IPv6 address (canonical text); absent: none */
  ip6?: string;
}
/** a tunnel as the coordinator shows it: the agents' own type (common/tunnel-health.ts) */
export type TunnelView = TunnelHealth;
export interface AttachErrorView {
  container: string;
  reason: string;
}
export interface PeerView {
  name: string;
  underlayIp: string;
  slices: SliceView[];
  endpoints: EndpointView[];
  /** encryption wireguard, once the peer published its key */
  wireguard?: { publicKey: string; port: number; tunnelIp: string };
}
export interface NetworkView {
  name: string;
  cidr: string;
  hostPrefixLen: number;
  greKey: number;
  mtu: number;
  isolation: Isolation;
  rules: PolicyRuleRec[];
  /** '' and 0: IPv4 only */
  ipv6Cidr: string;
  ipv6HostPrefixLen: number;
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
  /** encryption wireguard: the host's address inside WireGuard and its published key ('' none) */
  tunnelIp: string;
  wireguardPublicKey: string;
}

/** a committed change: its revision, the hosts whose peer records changed or went */
export interface Change {
  revision: number;
  upserts: string[];
  removes: string[];
}
export type ChangeListener = (c: Change) => void;

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

/** a status report as an agent sends it (the coordinator bounds and checks every field) */
export interface StatusReport {
  tunnels: ReportedTunnelHealth[];
  endpoints: (EndpointView & { containerName?: string })[];
  attachErrors: AttachErrorView[];
  certNotBeforeMs?: number;
  certNotAfterMs?: number;
}

// ------------------------------------------------------------ events

export type EventKind =
  | 'host-joined'
  | 'host-left'
  | 'host-down'
  | 'host-up'
  | 'tunnel-down'
  | 'tunnel-up'
  | 'attach-failed'
  | 'policy-changed'
  | 'key-published';

export interface EventView {
  timeMs: number;
  kind: EventKind;
  host: string;
  peer: string;
  detail: string;
}
