// Pure IPv4 helpers: parsing, CIDR arithmetic. Numbers are unsigned 32-bit.

export interface Cidr {
  base: number;
  prefix: number;
}

const OCTET = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)$/;

export function parseIp(s: string): number | undefined {
  const parts = s.split('.');
  if (parts.length !== 4 || !parts.every((p) => OCTET.test(p))) return undefined;
  return parts.reduce((acc, p) => acc * 256 + Number(p), 0);
}

export function formatIp(n: number): string {
  return [24, 16, 8, 0].map((s) => Math.floor(n / 2 ** s) % 256).join('.');
}

export function maskOf(prefix: number): number {
  return prefix === 0 ? 0 : (0xffffffff - (2 ** (32 - prefix) - 1)) >>> 0;
}

/** Parses "a.b.c.d/n"; the address must be the network address (no host bits). */
export function parseCidr(s: string): Cidr | undefined {
  const m = /^([^/]+)\/(\d{1,2})$/.exec(s);
  if (!m) return undefined;
  const base = parseIp(m[1]!);
  const prefix = Number(m[2]);
  if (base === undefined || prefix > 32) return undefined;
  if ((base & ~maskOf(prefix)) >>> 0 !== 0) return undefined;
  return { base, prefix };
}

export function formatCidr(c: Cidr): string {
  return `${formatIp(c.base)}/${c.prefix}`;
}

export function cidrSize(c: Cidr): number {
  return 2 ** (32 - c.prefix);
}

export function cidrContains(c: Cidr, ip: number): boolean {
  return ip >= c.base && ip < c.base + cidrSize(c);
}

export function cidrsOverlap(a: Cidr, b: Cidr): boolean {
  return a.base < b.base + cidrSize(b) && b.base < a.base + cidrSize(a);
}

/** The i-th /sub slice of c. */
export function subnetAt(c: Cidr, sub: number, i: number): Cidr {
  return { base: c.base + i * 2 ** (32 - sub), prefix: sub };
}

/** Index of slice `s` within `c` at prefix `s.prefix`. */
export function subnetIndex(c: Cidr, s: Cidr): number {
  return (s.base - c.base) / 2 ** (32 - s.prefix);
}

/** 8 lowercase hex digits of an IPv4 address (GRE port names). */
export function ipHex(ip: number): string {
  return ip.toString(16).padStart(8, '0');
}

/** A locally administered unicast MAC derived from an IPv4 address: 0a:58:a.b.c.d (as CNI does). */
export function macFromIp(ip: number): string {
  const o = formatIp(ip)
    .split('.')
    .map((x) => Number(x).toString(16).padStart(2, '0'));
  return ['0a', '58', ...o].join(':');
}

export function isDnsLabel(s: string): boolean {
  return /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/.test(s);
}

/** Pure: a lowercase unicast MAC (not multicast or broadcast, not all zeros). */
export function isUnicastMac(mac: string): boolean {
  return (
    /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/.test(mac) &&
    (parseInt(mac.slice(0, 2), 16) & 1) === 0 &&
    mac !== '00:00:00:00:00:00'
  );
}
