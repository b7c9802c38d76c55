// Pure: what a container's attachment should be, from its labels (or an explicit
// `gremesh-agent attach` request) and this host's desired state.
import { isUnicastMac, macFromIp, parseCidr, parseIp } from '../../common/ipv4.js';
import { commaList, quoted } from '../../common/text.js';
import { containerDnsNames } from '../../common/dns-names.js';
import { groupProblem, normalizeGroup } from '../../common/policy.js';
import type { Snapshot } from '../model.js';
import { allocate, holderName, isIp6Key, type IpamTable } from './ipam.js';
import { containerMtu, gateway6Of, gatewayOf, tunnelMtu } from '../bridge/desired.js';
import { cidr6Contains, formatIp6, parseCidr6, parseIp6 } from '../../common/ipv6.js';

export const LABEL = {
  network: 'gremesh.network',
  ip: 'gremesh.ip',
  /** dual-stack networks: a static IPv6 address in this host's IPv6 slice */
  ip6: 'gremesh.ip6',
  mac: 'gremesh.mac',
  mtu: 'gremesh.mtu',
  gateway: 'gremesh.gateway',
  iface: 'gremesh.iface',
  /** more DNS names for a labelled container, comma-separated (as --network-alias on the plugin path) */
  aliases: 'gremesh.aliases',
  /** the container's policy group in its networks (common/policy.ts) */
  group: 'gremesh.group',
} as const;

export interface AttachRequest {
  network: string;
  ip?: string;
  ip6?: string;
  mac?: string;
  mtu?: string;
  gateway?: string;
  iface?: string;
}

export interface AttachSpec {
  network: string;
  ip: string;
  prefixLen: number;
  mac: string;
  mtu: number;
  /** undefined: no default route */
  gateway: string | undefined;
  iface: string;
  /** host-side veth name: gm + 11 hex of the container id */
  hostIf: string;
  /** dual-stack: its IPv6 address, the network's IPv6 prefix length, the IPv6 default route's gateway */
  ip6?: string;
  prefixLen6?: number;
  gateway6?: string;
}

export interface ContainerInfo {
  id: string;
  name: string;
  pid: number;
  networkMode: string;
  labels: Record<string, string>;
  /** the ids of its Docker endpoints (networks joined through a network driver) */
  endpoints?: string[];
  hostname?: string;
  /** its --network-alias values, by Docker endpoint id */
  aliases?: Record<string, string[]>;
}

/** Pure: a container's DNS names and the invalid ones, on one of its Docker endpoints or (no endpoint) by its labels. */
export function namesOf(c: ContainerInfo, endpointId?: string): { names: string[]; invalid: string[] } {
  const aliases = endpointId !== undefined ? (c.aliases?.[endpointId] ?? []) : commaList(c.labels[LABEL.aliases] ?? '');
  return containerDnsNames({ id: c.id, name: c.name, hostname: c.hostname, aliases });
}

/** Pure: a container's policy group (its own gremesh.group label), or the note why its label names none. */
export function groupOf(c: ContainerInfo): { group?: string; problem?: string } {
  const raw = c.labels[LABEL.group];
  if (raw === undefined || raw === '') return {};
  const group = normalizeGroup(raw);
  return group ? { group } : { problem: `attached in no policy group: ${groupProblem(raw)}` };
}

export function requestFromLabels(labels: Record<string, string>): AttachRequest | undefined {
  const network = labels[LABEL.network];
  if (network === undefined) return undefined;
  return {
    network,
    ip: labels[LABEL.ip],
    ip6: labels[LABEL.ip6],
    mac: labels[LABEL.mac],
    mtu: labels[LABEL.mtu],
    gateway: labels[LABEL.gateway],
    iface: labels[LABEL.iface],
  };
}

export function hostIfName(containerId: string): string {
  return `gm${containerId.slice(0, 11)}`;
}

/**
 * Pure: why a requested MAC cannot be used in a network (undefined: it can): not unicast,
 * or another container has it, here or on a peer. `what` names the request in the error.
 */
export function checkMac(
  what: string,
  requested: string | undefined,
  network: string,
  s: Snapshot,
  macTakenHere: (network: string, mac: string) => boolean,
): string | undefined {
  if (requested === undefined) return undefined;
  const mac = requested.toLowerCase();
  if (!isUnicastMac(mac)) return `${what} ${quoted(requested)} is not a unicast MAC address`;
  if (macTakenHere(network, mac)) return `${what} ${mac} is in use by another container on this host`;
  const peer = s.peers.find((p) => p.endpoints.some((e) => e.network === network && e.mac === mac));
  if (peer) return `${what} ${mac} is in use on ${peer.name}`;
  return undefined;
}

/** What Docker asks for one endpoint (the plugin path): the address our IPAM gave it, maybe a MAC. */
export interface EndpointRequest {
  network: string;
  ip: string;
  /** `docker run --mac-address` */
  mac?: string;
  /** the Docker network's com.docker.network.driver.mtu, honoured when smaller */
  mtu?: number;
  /** a Docker network made with --ipv6: the IPv6 address our IPAM gave */
  ip6?: string;
}

export interface EndpointPlan {
  network: string;
  ip: string;
  prefixLen: number;
  mac: string;
  mtu: number;
  gateway: string;
  /** dual-stack: its IPv6 address, the network's IPv6 prefix length, this host's IPv6 gateway */
  ip6?: string;
  prefixLen6?: number;
  gateway6?: string;
}

/**
 * Pure: an endpoint Docker creates on a gremesh network, planned as a labelled container
 * is (same MAC rule, MTU and gateway); the address comes from our IPAM beforehand.
 */
export function planEndpoint(
  r: EndpointRequest,
  s: Snapshot,
  underlayMtu: number,
  macTakenHere: (network: string, mac: string) => boolean,
): EndpointPlan | { error: string } {
  const net = s.networks.find((n) => n.name === r.network);
  if (!net) return { error: `gremesh network ${quoted(r.network)} no longer exists` };
  const slice = s.slices.find((x) => x.network === net.name);
  if (!slice) return { error: `this host has no slice of network ${net.name} yet` };
  const macError = checkMac('--mac-address', r.mac, net.name, s, macTakenHere);
  if (macError) return { error: macError };
  const gw = gatewayOf(slice.cidr, net.cidr);
  let six: Pick<EndpointPlan, 'ip6' | 'prefixLen6' | 'gateway6'> = {};
  if (r.ip6 !== undefined) {
    if (!net.ipv6Cidr || !slice.ipv6Cidr) return { error: `gremesh network ${net.name} has no IPv6 prefix` };
    const n = parseIp6(r.ip6);
    if (n === undefined || !cidr6Contains(parseCidr6(slice.ipv6Cidr)!, n))
      return { error: `IPv6 address ${quoted(r.ip6)} is not in this host's IPv6 slice ${slice.ipv6Cidr}` };
    const g = gateway6Of(slice.ipv6Cidr, net.ipv6Cidr);
    six = { ip6: formatIp6(n), prefixLen6: g.prefixLen6, gateway6: g.ip6 };
  }
  return {
    network: net.name,
    ip: r.ip,
    prefixLen: gw.prefixLen,
    mac: r.mac?.toLowerCase() ?? macFromIp(parseIp(r.ip)!),
    mtu: Math.min(containerMtu(net.mtu, tunnelMtu(s, underlayMtu)), r.mtu ?? Infinity),
    gateway: gw.ip,
    ...six,
  };
}

/** host-side and (until Docker moves it) container-side veth of an endpoint: gm/gn + 11 hex */
export function endpointIfNames(endpointId: string): { hostIf: string; peerIf: string } {
  return { hostIf: `gm${endpointId.slice(0, 11)}`, peerIf: `gn${endpointId.slice(0, 11)}` };
}

const IFACE_RE = /^[A-Za-z0-9_.-]{1,15}$/;

export function planAttachment(
  c: ContainerInfo,
  r: AttachRequest,
  s: Snapshot,
  ipam: IpamTable,
  underlayMtu: number,
  /** whether another container (or a gateway) on this host's bridge has this MAC in this network (a peer's come from the snapshot) */
  macTakenHere: (network: string, mac: string) => boolean = () => false,
  /** whether another container on this host's bridge has this IPv6 address in this network */
  ip6TakenHere: (network: string, ip6: string) => boolean = () => false,
): AttachSpec | { error: string } {
  if (c.networkMode !== 'none')
    return { error: `network mode is ${quoted(c.networkMode)}, gremesh attaches only containers run with --net=none` };
  const net = s.networks.find((n) => n.name === r.network);
  if (!net)
    return {
      error: `unknown network ${quoted(r.network)} (known: ${s.networks.map((n) => n.name).join(', ') || 'none'})`,
    };
  const slice = s.slices.find((x) => x.network === net.name);
  if (!slice) return { error: `this host has no slice of network ${net.name} yet` };
  const mac = r.mac?.toLowerCase();
  const macError = checkMac('gremesh.mac', r.mac, net.name, s, macTakenHere);
  if (macError) return { error: macError };
  let mtu = containerMtu(net.mtu, tunnelMtu(s, underlayMtu));
  if (r.mtu !== undefined) {
    if (!/^\d+$/.test(r.mtu) || Number(r.mtu) < 576 || Number(r.mtu) > mtu)
      return { error: `gremesh.mtu ${quoted(r.mtu)} must be 576..${mtu} (the overlay carries at most ${mtu})` };
    mtu = Number(r.mtu);
  }
  const iface = r.iface ?? 'eth0';
  if (!IFACE_RE.test(iface))
    return { error: `gremesh.iface ${quoted(r.iface ?? '')} is not an interface name (1-15 characters)` };
  const gw = gatewayOf(slice.cidr, net.cidr);
  let gateway: string | undefined = gw.ip;
  if (r.gateway !== undefined) {
    if (r.gateway === 'none') gateway = undefined;
    else if (parseIp(r.gateway) === undefined)
      return { error: `gremesh.gateway ${quoted(r.gateway)} is not an IPv4 address or "none"` };
    else gateway = r.gateway;
  }
  const a = allocate(ipam, net.name, slice.cidr, c.id, r.ip);
  if ('error' in a) return a;
  const six = planIpv6(net, slice, a.ip, r.ip6, (ip6) => ip6TakenHere(net.name, ip6));
  if (six && 'error' in six) return six;
  return {
    network: net.name,
    ip: a.ip,
    prefixLen: gw.prefixLen,
    mac: mac ?? macFromIp(parseIp(a.ip)!),
    mtu,
    gateway,
    iface,
    hostIf: hostIfName(c.id),
    ...(six ? { ip6: six.ip6, prefixLen6: six.prefixLen6, ...(gateway ? { gateway6: six.gateway6 } : {}) } : {}),
  };
}

/**
 * Pure: a container's IPv6 address on a dual-stack network: the requested one (inside this
 * host's IPv6 slice, not its network address or gateway, outside the block the IPv4
 * addresses map to, free here), else the one its IPv4 address maps to: the IPv6 slice
 * plus the IPv4 address's offset in its slice (198.21.1.5 in 198.21.1.0/24 -> slice6::5).
 * Stateless: unique because the IPv4 address is, the same after any restart.
 * undefined: the network is IPv4 only (a requested address is then an error).
 */
export function planIpv6(
  net: { name: string; ipv6Cidr?: string },
  slice: { cidr: string; ipv6Cidr?: string },
  ip: string,
  want: string | undefined,
  takenHere: (ip6: string) => boolean,
): { ip6: string; prefixLen6: number; gateway6: string } | { error: string } | undefined {
  if (!net.ipv6Cidr || !slice.ipv6Cidr) {
    if (want !== undefined) return { error: `gremesh.ip6: network ${net.name} has no IPv6 prefix` };
    return undefined;
  }
  const { ip6: gateway6, prefixLen6 } = gateway6Of(slice.ipv6Cidr, net.ipv6Cidr);
  const s6 = { cidr: slice.cidr, ipv6Cidr: slice.ipv6Cidr };
  if (want === undefined) return { ip6: derivedIpv6(s6, ip), prefixLen6, gateway6 };
  const a = staticIpv6('gremesh.ip6', s6, want, (ip6) =>
    takenHere(ip6) ? 'another container on this host' : undefined,
  );
  return 'error' in a ? a : { ip6: a.ip6, prefixLen6, gateway6 };
}

/** a host's slices of a dual-stack network */
type Slice6 = { cidr: string; ipv6Cidr: string };

/** Pure: the IPv6 address an IPv4 address of the slice maps to: the IPv6 slice plus its offset in the IPv4 slice. */
export function derivedIpv6(slice: Slice6, ip: string): string {
  return formatIp6(parseCidr6(slice.ipv6Cidr)!.base + BigInt(parseIp(ip)! - parseCidr(slice.cidr)!.base));
}

/** the block of the IPv6 slice the IPv4 addresses map to: its first address and size */
function derivedBlock(slice: Slice6): { base: bigint; size: bigint } {
  return { base: parseCidr6(slice.ipv6Cidr)!.base, size: BigInt(2 ** (32 - parseCidr(slice.cidr)!.prefix)) };
}

/**
 * Pure: a requested IPv6 address, checked: an IPv6 address inside this host's IPv6 slice,
 * above the block the IPv4 addresses map to, not in use (`inUse` names who has it).
 * `what` names the request in errors (gremesh.ip6, or Docker's --ip6).
 */
export function staticIpv6(
  what: string,
  slice: Slice6,
  want: string,
  inUse: (ip6: string) => string | undefined,
): { ip6: string } | { error: string } {
  const s6 = parseCidr6(slice.ipv6Cidr)!;
  const block = derivedBlock(slice);
  const n = parseIp6(want);
  if (n === undefined) return { error: `${what} ${quoted(want)} is not an IPv6 address` };
  if (!cidr6Contains(s6, n)) return { error: `${what} ${want} is not in this host's IPv6 slice ${slice.ipv6Cidr}` };
  if (n - block.base < block.size)
    return {
      error: `${what} ${want} is in ${formatIp6(block.base)}-${formatIp6(block.base + block.size - 1n)}, where the IPv4 addresses map to: choose one above`,
    };
  const ip6 = formatIp6(n);
  const holder = inUse(ip6);
  if (holder) return { error: `${what} ${ip6} is in use by ${holder}` };
  return { ip6 };
}

/**
 * Pure: the IPv4 reservation of the endpoint asking for its IPv6 address, when that is certain:
 * the only reservation for Docker (`docker:TIME:N`) in the network not yet paired with an
 * IPv6 address (see dockerIpv6).
 */
export function ownReservation(t: IpamTable, network: string): { ip: string; holder: string } | undefined {
  const used = Object.entries(t[network] ?? {});
  const paired = new Set(used.flatMap(([ip, h]) => (isIp6Key(ip) ? [h] : [])));
  const unpaired = used.filter(([ip, h]) => !isIp6Key(ip) && h.startsWith('docker:') && !paired.has(h));
  return unpaired.length === 1 ? { ip: unpaired[0]![0], holder: unpaired[0]![1] } : undefined;
}

/**
 * Pure: the IPv6 address Docker's IPAM hands out on a dual-stack network (the plugin path).
 * Docker asks for an endpoint's IPv4 address, then for its IPv6 one, but the second request
 * does not say which endpoint it is for. The tie: the IPv4 reservations for Docker
 * (`docker:TIME:N`) not yet paired with an IPv6 address. When there is exactly one, it is
 * this endpoint's own (every endpoint asking for IPv6 has one unpaired, until its IPv6
 * request pairs it), and the address is the one its IPv4 address maps to, as on the label
 * path. When several endpoints are being created at once the tie is ambiguous: the lowest
 * free address above the mapped block, which no IPv4 address maps to. A requested one
 * (--ip6) is checked as gremesh.ip6 is. `pairWith`: the reservation this address is held
 * with (undefined: a holder of its own). Every address handed out is held in the table, so
 * whatever was chosen stays unique; `takenHere` covers the ports on the bridge (labelled
 * containers' gremesh.ip6).
 */
export function dockerIpv6(
  t: IpamTable,
  network: string,
  slice: Slice6,
  want: string | undefined,
  takenHere: (ip6: string) => boolean,
): { ip6: string; pairWith?: string } | { error: string } {
  const used = t[network] ?? {};
  const inUse = (ip6: string) =>
    used[ip6] ? holderName(used[ip6]) : takenHere(ip6) ? 'another container on this host' : undefined;
  const own = ownReservation(t, network);
  const pairWith = own?.holder;
  const answer = (ip6: string) => ({ ip6, ...(pairWith ? { pairWith } : {}) });
  if (want !== undefined) {
    const a = staticIpv6('--ip6', slice, want, inUse);
    return 'error' in a ? a : answer(a.ip6);
  }
  if (own) {
    const ip6 = derivedIpv6(slice, own.ip);
    if (!inUse(ip6)) return answer(ip6);
  }
  const s6 = parseCidr6(slice.ipv6Cidr)!;
  const block = derivedBlock(slice);
  const end = 1n << BigInt(128 - s6.prefix);
  // at most one more than the addresses in use is looked at
  for (let i = block.size; i < end; i++) {
    const ip6 = formatIp6(s6.base + i);
    if (!inUse(ip6)) return answer(ip6);
  }
  return { error: `no free IPv6 address left in this host's IPv6 slice ${slice.ipv6Cidr} of network ${network}` };
}
