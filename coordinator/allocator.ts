// Pure: which slice of a network a host gets.
import { parseCidr, subnetAt, formatCidr } from '../common/ipv4.js';
import { formatCidr6, parseCidr6, subnetAt6 } from '../common/ipv6.js';
import type { NetworkRec, SliceRec } from './model.js';

export function sliceCount(n: Pick<NetworkRec, 'cidr' | 'hostPrefixLen'>): number {
  const c = parseCidr(n.cidr)!;
  return 2 ** (n.hostPrefixLen - c.prefix);
}

export function sliceCidr(n: Pick<NetworkRec, 'cidr' | 'hostPrefixLen'>, idx: number): string {
  return formatCidr(subnetAt(parseCidr(n.cidr)!, n.hostPrefixLen, idx));
}

/** A dual-stack network's IPv6 slice: the one with the IPv4 slice's index (one record, both families). */
export function slice6Cidr(n: Pick<NetworkRec, 'ipv6Cidr' | 'ipv6HostPrefixLen'>, idx: number): string | undefined {
  const c = n.ipv6Cidr ? parseCidr6(n.ipv6Cidr) : undefined;
  return c && n.ipv6HostPrefixLen ? formatCidr6(subnetAt6(c, n.ipv6HostPrefixLen, idx)) : undefined;
}

/**
 * The slice index for `host`, given every slice record of the network:
 * 1. the slice the host holds already;
 * 2. a released slice this host held last (a re-join gets its subnet back);
 * 3. the lowest index never used;
 * 4. the released slice that has been in quarantine longest;
 * undefined when the network is full.
 */
export function pickSlice(
  n: Pick<NetworkRec, 'cidr' | 'hostPrefixLen'>,
  slices: SliceRec[],
  host: string,
): number | undefined {
  const held = slices.find((s) => s.host === host);
  if (held) return held.idx;
  const mine = slices.find((s) => s.host === null && s.lastHost === host);
  if (mine) return mine.idx;
  const used = new Set(slices.map((s) => s.idx));
  const total = sliceCount(n);
  // records exist only for slices ever handed out, so the first gap is the lowest never-used index
  for (let i = 0; i < total; i++) if (!used.has(i)) return i;
  const free = slices
    .filter((s) => s.host === null)
    .sort((a, b) => (a.releasedMs ?? 0) - (b.releasedMs ?? 0) || a.idx - b.idx);
  return free[0]?.idx;
}

/** The lowest GRE key not used by another network (keys start at 1). */
/**
 * Pure: a GRE key no network ever had: one above the highest in use and the highest
 * ever handed out (`everIssued`, kept in the store). A deleted network's key is never
 * given again: a host cut off from the coordinator may still carry the old network.
 */
export function pickGreKey(networks: Pick<NetworkRec, 'greKey'>[], everIssued = 0): number {
  return Math.max(everIssued, 0, ...networks.map((n) => n.greKey)) + 1;
}
