// Pure: the vocabulary of encryption between hosts, shared by the coordinator (what it
// accepts, the tunnel address it gives each host) and the agent (its keys, its peers).
//   key           a Curve25519 key, 32 bytes, written as WireGuard does (base64, 44 chars);
//                 the UAPI of wireguard-go and the kernel speaks it in hex
//   tunnel IP     the host's address inside WireGuard: GRE runs between tunnel IPs, and a
//                 peer's WireGuard allowed IPs are exactly its tunnel IP
import { cidrContains, cidrSize, formatIp, maskOf, parseCidr, parseIp } from './ipv4.js';

export type Encryption = 'none' | 'wireguard';
export const ENCRYPTIONS: readonly Encryption[] = ['none', 'wireguard'];
export const DEFAULT_WIREGUARD_PORT = 51820;
/** the hosts' addresses inside WireGuard by default (shared address space, RFC 6598) */
export const DEFAULT_TUNNEL_CIDR = '100.64.0.0/16';
/** what WireGuard adds to a packet over an IPv4 underlay: outer IPv4 20, UDP 8, WireGuard 32 */
export const WIREGUARD_OVERHEAD = 60;

const KEY = /^[A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]=$/;

/** A WireGuard key as `wg` prints it: base64 of exactly 32 bytes. */
export function isWireguardKey(k: string): boolean {
  return KEY.test(k) && Buffer.from(k, 'base64').length === 32;
}

export function keyToHex(k: string): string {
  return Buffer.from(k, 'base64').toString('hex');
}

export function keyFromHex(h: string): string {
  return Buffer.from(h, 'hex').toString('base64');
}

/**
 * Pure: a host's tunnel IP, from its underlay IPv4 address: the tunnel CIDR's network part
 * and the underlay address's host part (the low bits). Stateless, so every coordinator of a
 * shared store and every restart agrees; two hosts whose underlay addresses share the low
 * bits would collide, and the coordinator refuses the second (checkTunnelIps). undefined
 * when the result is the CIDR's network or broadcast address.
 */
export function tunnelIpOf(underlayIp: string, tunnelCidr: string): string | undefined {
  const c = parseCidr(tunnelCidr);
  const u = parseIp(underlayIp);
  if (!c || u === undefined) return undefined;
  const host = (u & ~maskOf(c.prefix)) >>> 0;
  if (host === 0 || host === cidrSize(c) - 1) return undefined;
  return formatIp((c.base | host) >>> 0);
}

/** Pure: why --tunnel-cidr is unusable, or undefined. */
export function checkTunnelCidr(v: string): string | undefined {
  const c = parseCidr(v);
  if (!c) return `--tunnel-cidr must be an IPv4 CIDR with no host bits (e.g. 100.64.0.0/16); got "${v}"`;
  if (c.prefix < 8 || c.prefix > 30) return `--tunnel-cidr needs a prefix from /8 to /30; got /${c.prefix}`;
  return undefined;
}

/**
 * Pure: the first problem with these hosts' tunnel IPs (a host that gets none, two hosts that
 * get the same one, a tunnel IP inside an overlay network), or undefined.
 */
export function checkTunnelIps(
  hosts: { name: string; underlayIp: string }[],
  tunnelCidr: string,
  overlays: { name: string; cidr: string }[] = [],
): string | undefined {
  const seen = new Map<string, string>();
  const tc = parseCidr(tunnelCidr)!;
  for (const o of overlays) {
    const oc = parseCidr(o.cidr);
    if (oc && (cidrContains(oc, tc.base) || cidrContains(tc, oc.base)))
      return `the tunnel CIDR ${tunnelCidr} overlaps network ${o.name} (${o.cidr})`;
  }
  for (const h of hosts) {
    if (h.underlayIp.includes(':'))
      return `host ${h.name}'s underlay is IPv6 (${h.underlayIp}): encryption (WireGuard tunnel IPs) needs an IPv4 underlay`;
    const t = tunnelIpOf(h.underlayIp, tunnelCidr);
    if (!t)
      return `host ${h.name} (underlay ${h.underlayIp}) gets no tunnel IP in ${tunnelCidr} (its host bits are all 0 or all 1)`;
    const other = seen.get(t);
    if (other)
      return `hosts ${other} and ${h.name} would share tunnel IP ${t} in ${tunnelCidr} (same low bits of their underlay addresses): use a longer --tunnel-cidr prefix`;
    seen.set(t, h.name);
  }
  return undefined;
}
