// The agent's view of the coordinator's desired state (after applying deltas), and
// what it observes of OVS.
import type { Isolation, PolicyRule } from '../common/policy.js';

export interface NetworkSpec {
  name: string;
  cidr: string;
  hostPrefixLen: number;
  greKey: number;
  mtu: number;
  /** absent: 'none' */
  isolation?: Isolation;
  /** absent: none */
  rules?: PolicyRule[];
  /** dual-stack: the IPv6 prefix and each host's IPv6 slice length */
  ipv6Cidr?: string;
  ipv6HostPrefixLen?: number;
}
export interface SliceSpec {
  network: string;
  cidr: string;
  /** dual-stack: this host's IPv6 slice */
  ipv6Cidr?: string;
}
export interface EndpointSpec {
  network: string;
  host: string;
  mac: string;
  ip: string;
  containerId: string;
  /** its DNS names in the network (lowercase, valid): container name, aliases, hostname */
  names?: string[];
  /** its policy group (lowercase, valid); absent: none */
  group?: string;
  /** dual-stack: its IPv6 address */
  ip6?: string;
}
export interface PeerSpec {
  name: string;
  underlayIp: string;
  slices: SliceSpec[];
  endpoints: EndpointSpec[];
  /** encryption wireguard: the peer's key, port and tunnel IP, once it published its key */
  wireguard?: WireguardPeerSpec;
}
export interface WireguardPeerSpec {
  publicKey: string;
  port: number;
  tunnelIp: string;
}
/** encryption wireguard: this host's part */
export interface EncryptionSpec {
  tunnelIp: string;
  tunnelCidr: string;
  /** the key the coordinator holds for this host ('' none yet) */
  publicKey: string;
  /** rotations asked for: a key of a lower generation is replaced */
  rotation: number;
  /** the rotation the held key answers */
  generation: number;
}

export interface Snapshot {
  revision: number;
  host: string;
  underlayIp: string;
  networks: NetworkSpec[];
  slices: SliceSpec[];
  peers: PeerSpec[];
  /** present when every GRE packet between hosts must travel inside WireGuard */
  encryption?: EncryptionSpec;
}

/** An OVS interface as observed (one row of the Interface table, with its bridge). */
export interface OvsInterface {
  name: string;
  bridge: string | undefined;
  type: string;
  ofport: number;
  options: Record<string, string>;
  externalIds: Record<string, string>;
  /** the Port row's external_ids */
  portExternalIds: Record<string, string>;
  bfdStatus: Record<string, string>;
  macInUse: string;
  mtu: number;
  error: string;
  /** "up" | "down" (carrier); a container's veth is down until its interface inside is up */
  linkState: string;
  /** the kernel's ifindex of the device (0 if none): a new one means the device was recreated */
  ifindex: number;
}

export interface OvsBridge {
  name: string;
  datapathType: string;
  failMode: string;
  protocols: string[];
  externalIds: Record<string, string>;
}

export interface OvsState {
  bridges: OvsBridge[];
  interfaces: OvsInterface[];
}

/** A port carrying traffic of one network on this host: a container, or our gateway. */
export interface LocalPort {
  port: string;
  network: string;
  ip: string;
  mac: string;
  gateway: boolean;
  containerId: string;
  /** the container's name, when whoever plugged it said (gremesh-container) */
  containerName?: string;
  /** its DNS names in the network (gremesh-names), when whoever plugged it said */
  names?: string[];
  /** its policy group (gremesh-group), when whoever plugged it said */
  group?: string;
  /** dual-stack: its IPv6 address (gremesh-ip6); for the gateway, the slice's first */
  ip6?: string;
}

export { OWNER_KEY, OWNER } from './ovs/ids.js';
export const COOKIE = '0x67726d';
