// Pure validation of user input. Each returns an error message, or undefined when fine.
import { cidrContains, cidrsOverlap, isDnsLabel, parseCidr, parseIp } from '../common/ipv4.js';

export const MIN_MTU = 576;
export const MAX_MTU = 9000;
export const MAX_TTL_SECONDS = 30 * 24 * 3600;

export function checkName(kind: 'host' | 'network', name: string): string | undefined {
  if (!isDnsLabel(name))
    return `${kind} name "${trunc(name)}" is not a DNS label (a-z, 0-9, '-', 1-63 characters, no leading or trailing '-')`;
  return undefined;
}

export function checkUnderlayIp(ip: string): string | undefined {
  const n = parseIp(ip);
  if (n === undefined) return `underlay IP "${trunc(ip)}" is not an IPv4 address`;
  if (n === 0 || ip.startsWith('127.') || n >= 0xe0000000) return `underlay IP ${ip} is not a unicast host address`;
  return undefined;
}

/**
 * Pure: an overlay CIDR must not hold an address the underlay needs (a host's tunnel
 * endpoint, the coordinator's address): tunnels would be routed into the overlay.
 */
export function checkOverlayVsUnderlay(
  networks: { name: string; cidr: string }[],
  addresses: { what: string; ip: string }[],
): string | undefined {
  for (const n of networks) {
    const c = parseCidr(n.cidr);
    if (!c) continue;
    for (const a of addresses) {
      const ip = parseIp(a.ip);
      if (ip !== undefined && cidrContains(c, ip))
        return `${a.what} ${a.ip} is inside network ${n.name} (${n.cidr}): the underlay must stay outside every overlay network`;
    }
  }
  return undefined;
}

export function checkNetworkSpec(
  cidr: string,
  hostPrefixLen: number,
  mtu: number,
  others: { name: string; cidr: string }[],
): string | undefined {
  if (cidr.includes(':')) return `network CIDR "${trunc(cidr)}" is IPv6; gremesh networks are IPv4`;
  const c = parseCidr(cidr);
  if (!c) return `network CIDR "${trunc(cidr)}" is not an IPv4 network (a.b.c.d/n with no host bits set)`;
  if (c.prefix < 8) return `network CIDR ${cidr} is larger than /8`;
  if (!Number.isInteger(hostPrefixLen) || hostPrefixLen <= c.prefix)
    return `host prefix length /${hostPrefixLen} must be longer than the network's /${c.prefix}`;
  if (hostPrefixLen > 29) return `host prefix length /${hostPrefixLen} leaves no room for containers (at most /29)`;
  if (hostPrefixLen - c.prefix > 16)
    return `network ${cidr} with /${hostPrefixLen} slices would have more than 65536 slices`;
  if (mtu !== 0 && (!Number.isInteger(mtu) || mtu < MIN_MTU || mtu > MAX_MTU))
    return `MTU ${mtu} is outside ${MIN_MTU}..${MAX_MTU}`;
  for (const o of others) {
    const oc = parseCidr(o.cidr);
    if (oc && cidrsOverlap(c, oc)) return `network CIDR ${cidr} overlaps network ${o.name} (${o.cidr})`;
  }
  return undefined;
}

export function trunc(s: string, n = 64): string {
  return s.length > n ? `${s.slice(0, n)}...` : s;
}
