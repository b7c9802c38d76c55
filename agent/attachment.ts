// Pure: what a container's attachment should be, from its labels (or an explicit
// `gremesh-agent attach` request) and this host's desired state.
import { isUnicastMac, macFromIp, parseIp } from '../common/ipv4.js';
import { quoted } from '../common/text.js';
import type { Snapshot } from './model.js';
import { allocate, type IpamTable } from './ipam.js';
import { containerMtu, gatewayOf } from './desired.js';

export const LABEL = {
  network: 'gremesh.network',
  ip: 'gremesh.ip',
  mac: 'gremesh.mac',
  mtu: 'gremesh.mtu',
  gateway: 'gremesh.gateway',
  iface: 'gremesh.iface',
} as const;

export interface AttachRequest {
  network: string;
  ip?: string;
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
}

export interface ContainerInfo {
  id: string;
  name: string;
  pid: number;
  networkMode: string;
  labels: Record<string, string>;
}

export function requestFromLabels(labels: Record<string, string>): AttachRequest | undefined {
  const network = labels[LABEL.network];
  if (network === undefined) return undefined;
  return {
    network,
    ip: labels[LABEL.ip],
    mac: labels[LABEL.mac],
    mtu: labels[LABEL.mtu],
    gateway: labels[LABEL.gateway],
    iface: labels[LABEL.iface],
  };
}

export function hostIfName(containerId: string): string {
  return `gm${containerId.slice(0, 11)}`;
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
  if (mac !== undefined && !isUnicastMac(mac))
    return { error: `gremesh.mac ${quoted(r.mac ?? '')} is not a unicast MAC address` };
  if (mac !== undefined) {
    if (macTakenHere(net.name, mac)) return { error: `gremesh.mac ${mac} is in use by another container on this host` };
    const peer = s.peers.find((p) => p.endpoints.some((e) => e.network === net.name && e.mac === mac));
    if (peer) return { error: `gremesh.mac ${mac} is in use on ${peer.name}` };
  }
  let mtu = containerMtu(net.mtu, underlayMtu);
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
  return {
    network: net.name,
    ip: a.ip,
    prefixLen: gw.prefixLen,
    mac: mac ?? macFromIp(parseIp(a.ip)!),
    mtu,
    gateway,
    iface,
    hostIf: hostIfName(c.id),
  };
}
