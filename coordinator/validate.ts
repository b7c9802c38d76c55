// Pure validation of user input. Each returns an error message, or undefined when fine.
import { cidrContains, cidrsOverlap, isDnsLabel, parseCidr, parseIp } from '../common/ipv4.js';
import { cidr6Contains, cidrs6Overlap, formatIp6, parseCidr6, parseIp6 } from '../common/ipv6.js';

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
  if (n === undefined && ip.includes(':')) {
    // an IPv6 underlay: ip6gre tunnels to the other IPv6-underlay hosts
    const six = parseIp6(ip);
    if (six === undefined) return `underlay IP "${trunc(ip)}" is not an IPv4 or IPv6 address`;
    if (formatIp6(six) !== ip) return `underlay IP "${trunc(ip)}" is not in canonical form (${formatIp6(six)})`;
    const top = six >> 112n;
    if (top >= 0xff00n || (top & 0xffc0n) === 0xfe80n || six >> 64n === 0n)
      return `underlay IP ${ip} is not a global or unique-local unicast IPv6 address`;
    return undefined;
  }
  if (n === undefined) return `underlay IP "${trunc(ip)}" is not an IPv4 or IPv6 address`;
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
  if (cidr.includes(':'))
    return `network CIDR "${trunc(cidr)}" is IPv6: give it with --ipv6-cidr beside an IPv4 --cidr (dual-stack)`;
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

/** the default size of each host's IPv6 slice (SLAAC-sized, as every IPv6 LAN) */
export const DEFAULT_IPV6_HOST_PREFIX_LEN = 64;

/**
 * Pure: a network's IPv6 prefix beside its IPv4 CIDR. Its slices pair with the IPv4 ones
 * by index, so it needs at least as many; it must be unicast (not link-local, multicast,
 * loopback) and overlap no other network's IPv6 prefix nor any IPv6 underlay address.
 */
export function checkIpv6Spec(
  ipv6Cidr: string,
  ipv6HostPrefixLen: number,
  v4: { cidr: string; hostPrefixLen: number },
  others: { name: string; ipv6Cidr?: string }[],
  addresses: { what: string; ip: string }[] = [],
): string | undefined {
  const c = parseCidr6(ipv6Cidr);
  if (!c) return `IPv6 prefix "${trunc(ipv6Cidr)}" is not an IPv6 network (like fd00:21::/48, with no host bits set)`;
  if (c.prefix < 16) return `IPv6 prefix ${ipv6Cidr} is larger than /16`;
  const top = c.base >> 112n;
  if (top >= 0xff00n || (top & 0xffc0n) === 0xfe80n || c.base >> 96n === 0n)
    return `IPv6 prefix ${ipv6Cidr} is not global or unique-local unicast (link-local, multicast and ::/32 are refused)`;
  if (!Number.isInteger(ipv6HostPrefixLen) || ipv6HostPrefixLen <= c.prefix)
    return `IPv6 host prefix length /${ipv6HostPrefixLen} must be longer than the IPv6 prefix's /${c.prefix}`;
  if (ipv6HostPrefixLen > 120)
    return `IPv6 host prefix length /${ipv6HostPrefixLen} leaves no room for containers (at most /120)`;
  const v4c = parseCidr(v4.cidr);
  const v4Slices = v4c ? v4.hostPrefixLen - v4c.prefix : 0;
  if (ipv6HostPrefixLen - c.prefix < v4Slices)
    return `IPv6 prefix ${ipv6Cidr} has ${2 ** (ipv6HostPrefixLen - c.prefix)} /${ipv6HostPrefixLen} slices, fewer than the ${2 ** v4Slices} /${v4.hostPrefixLen} IPv4 slices of ${v4.cidr} (each host gets one of each, same index)`;
  for (const o of others) {
    const oc = o.ipv6Cidr ? parseCidr6(o.ipv6Cidr) : undefined;
    if (oc && cidrs6Overlap(c, oc)) return `IPv6 prefix ${ipv6Cidr} overlaps network ${o.name} (${o.ipv6Cidr})`;
  }
  for (const a of addresses) {
    const ip = parseIp6(a.ip);
    if (ip !== undefined && cidr6Contains(c, ip))
      return `${a.what} ${a.ip} is inside IPv6 prefix ${ipv6Cidr}: the underlay must stay outside every overlay network`;
  }
  return undefined;
}

export function trunc(s: string, n = 64): string {
  return s.length > n ? `${s.slice(0, n)}...` : s;
}
