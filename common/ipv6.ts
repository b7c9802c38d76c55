// Pure IPv6 helpers: parsing, RFC 5952 text, CIDR arithmetic, EUI-64 link-local addresses.
// Addresses are unsigned 128-bit bigints.

export interface Cidr6 {
  base: bigint;
  prefix: number;
}

const MAX = (1n << 128n) - 1n;
const GROUP = /^[0-9a-f]{1,4}$/i;

/** "fd00::1" -> 128-bit number; undefined for anything else (no zone, no embedded IPv4) */
export function parseIp6(s: string): bigint | undefined {
  if (!/^[0-9a-f:]+$/i.test(s) || s.length > 39) return undefined;
  const halves = s.split('::');
  if (halves.length > 2) return undefined;
  const groups = (h: string) => (h === '' ? [] : h.split(':'));
  const head = groups(halves[0]!);
  const tail = halves.length === 2 ? groups(halves[1]!) : [];
  if (![...head, ...tail].every((g) => GROUP.test(g))) return undefined;
  const n = head.length + tail.length;
  if (halves.length === 1 ? n !== 8 : n > 7) return undefined;
  const all = [...head, ...Array<string>(8 - n).fill('0'), ...tail];
  return all.reduce((acc, g) => (acc << 16n) | BigInt(parseInt(g, 16)), 0n);
}

/** RFC 5952: lowercase, no leading zeros, the longest run (>1) of zero groups as "::" (the first such) */
export function formatIp6(n: bigint): string {
  const g = Array.from({ length: 8 }, (_, i) => Number((n >> BigInt(112 - 16 * i)) & 0xffffn));
  let best = -1;
  let bestLen = 1;
  for (let i = 0; i < 8;) {
    if (g[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && g[j] === 0) j++;
    if (j - i > bestLen) [best, bestLen] = [i, j - i];
    i = j;
  }
  const hex = (xs: number[]) => xs.map((x) => x.toString(16)).join(':');
  if (best < 0) return hex(g);
  return `${hex(g.slice(0, best))}::${hex(g.slice(best + bestLen))}`;
}

export function maskOf6(prefix: number): bigint {
  return prefix === 0 ? 0n : (MAX << BigInt(128 - prefix)) & MAX;
}

/** "fd00:21::/48" (the address must be the network address: no host bits) */
export function parseCidr6(s: string): Cidr6 | undefined {
  const m = /^([^/]+)\/(\d{1,3})$/.exec(s);
  if (!m) return undefined;
  const base = parseIp6(m[1]!);
  const prefix = Number(m[2]);
  if (base === undefined || prefix > 128) return undefined;
  if ((base & ~maskOf6(prefix) & MAX) !== 0n) return undefined;
  return { base, prefix };
}

export function formatCidr6(c: Cidr6): string {
  return `${formatIp6(c.base)}/${c.prefix}`;
}

/** "fd00::5/64" -> address and prefix (host bits allowed) */
export function parseIfaceCidr6(s: string): { ip: bigint; prefix: number } | undefined {
  const m = /^([^/]+)\/(\d{1,3})$/.exec(s);
  const ip = m ? parseIp6(m[1]!) : undefined;
  const prefix = Number(m?.[2]);
  return ip === undefined || prefix > 128 ? undefined : { ip, prefix };
}

export function cidr6Contains(c: Cidr6, ip: bigint): boolean {
  return (ip & maskOf6(c.prefix)) === c.base;
}

export function cidrs6Overlap(a: Cidr6, b: Cidr6): boolean {
  const p = Math.min(a.prefix, b.prefix);
  return (a.base & maskOf6(p)) === (b.base & maskOf6(p));
}

/** The i-th /sub slice of c. */
export function subnetAt6(c: Cidr6, sub: number, i: number): Cidr6 {
  return { base: c.base + (BigInt(i) << BigInt(128 - sub)), prefix: sub };
}

/** Text that names an IPv6 address (for "which family is this?" decisions). */
export function isIp6(s: string): boolean {
  return parseIp6(s) !== undefined;
}

/** The address in canonical (RFC 5952) text, or undefined when it is not one. */
export function canonicalIp6(s: string): string | undefined {
  const n = parseIp6(s);
  return n === undefined ? undefined : formatIp6(n);
}

/** fe80::/64 with the modified EUI-64 interface identifier of a MAC (RFC 4291 2.5.1): a port's own link-local address */
export function linkLocalOf(mac: string): string {
  const b = mac.split(':').map((x) => parseInt(x, 16));
  const eui = [b[0]! ^ 0x02, b[1]!, b[2]!, 0xff, 0xfe, b[3]!, b[4]!, b[5]!];
  const iid = eui.reduce((acc, x) => (acc << 8n) | BigInt(x), 0n);
  return formatIp6((0xfe80n << 112n) | iid);
}

/** The solicited-node multicast group of an address (ff02::1:ffXX:XXXX) */
export function solicitedNodeOf(ip: bigint): bigint {
  return (0xff02n << 112n) | (0x1ffn << 24n) | (ip & 0xffffffn);
}

/** 16 bytes, network order */
export function ip6Bytes(s: string): Buffer {
  const n = parseIp6(s);
  if (n === undefined) throw new Error(`"${s}" is not an IPv6 address`);
  return Buffer.from(n.toString(16).padStart(32, '0'), 'hex');
}
