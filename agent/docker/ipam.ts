// Local address management: which container holds which address of this host's
// slice. Pure allocation; the table persists as one JSON file in the state dir.
import { quoted } from '../../common/text.js';
import { cidrContains, formatIp, parseCidr, parseIp } from '../../common/ipv4.js';
import { canonicalIp6 } from '../../common/ipv6.js';
import { JsonFile } from '../state-file.js';

/**
 * network -> ip -> container id. Dual-stack networks: the IPv6 addresses handed to Docker
 * (the plugin path) are held here too, keyed by their RFC 5952 text, by the same holder as
 * the endpoint's IPv4 address; a labelled container's IPv6 address is derived, not held.
 */
export type IpamTable = Record<string, Record<string, string>>;

/** Whether a key of the table is an IPv6 address. */
export function isIp6Key(ip: string): boolean {
  return ip.includes(':');
}

/** The usable addresses of a slice: not the network address, the gateway (.1) or broadcast. */
export function usable(slice: string, ip: string): boolean {
  const c = parseCidr(slice);
  const n = parseIp(ip);
  if (!c || n === undefined || !cidrContains(c, n)) return false;
  const size = 2 ** (32 - c.prefix);
  return n !== c.base && n !== c.base + 1 && n !== c.base + size - 1;
}

export type Allocation = { ip: string } | { error: string };

/**
 * The address for container `id` in `network`: the one it holds already; else the
 * requested static one if usable and free; else the lowest free one.
 */
export function allocate(
  t: IpamTable,
  network: string,
  slice: string,
  id: string,
  want?: string,
  /** how the asker names a requested address in errors: the label, or Docker's --ip */
  what = 'gremesh.ip',
): Allocation {
  const used = t[network] ?? {};
  // an address held from an earlier slice (the host re-joined and got another) is not kept
  const held = Object.entries(used).find(([ip, c]) => c === id && usable(slice, ip))?.[0];
  if (held && (!want || want === held)) return { ip: held };
  if (want) {
    if (parseIp(want) === undefined) return { error: `${what} ${quoted(want)} is not an IPv4 address` };
    if (!usable(slice, want)) return { error: `${what} ${want} is not a usable address of this host's slice ${slice}` };
    if (used[want] && used[want] !== id) return { error: `${what} ${want} is taken by ${holderName(used[want]!)}` };
    return { ip: want };
  }
  const c = parseCidr(slice)!;
  const size = 2 ** (32 - c.prefix);
  for (let i = 2; i < size - 1; i++) {
    const ip = formatIp(c.base + i);
    if (!used[ip]) return { ip };
  }
  return { error: `no free address left in this host's slice ${slice} of network ${network}` };
}

/**
 * Who holds an address: a container id (labels, attach by hand), `ep:ID` (a Docker
 * endpoint of the plugin) or `docker:TIME:N` (handed to Docker, its endpoint not made yet).
 */
export function holderName(holder: string): string {
  if (holder.startsWith('ep:')) return `Docker endpoint ${holder.slice(3, 15)}`;
  if (holder.startsWith('docker:')) return 'a Docker endpoint being created';
  return `container ${holder.slice(0, 12)}`;
}

/** Whether a holder is a container (the label path) rather than Docker's plugin path. */
export function isContainerHolder(holder: string): boolean {
  return !holder.includes(':');
}

/** id holds ip in network, and no other address of ip's family there (its other family's stays). */
export function bind(t: IpamTable, network: string, ip: string, id: string): IpamTable {
  const next = structuredClone(t);
  const n = (next[network] ??= {});
  for (const [k, v] of Object.entries(n)) if (v === id && isIp6Key(k) === isIp6Key(ip)) delete n[k];
  n[ip] = id;
  return next;
}

export function release(t: IpamTable, id: string): IpamTable {
  const next = structuredClone(t);
  for (const n of Object.values(next)) for (const [k, v] of Object.entries(n)) if (v === id) delete n[k];
  return next;
}

export function holders(t: IpamTable): Set<string> {
  return new Set(Object.values(t).flatMap((n) => Object.values(n)));
}

/** Pure: a parsed address table, or why it is not one. */
export function parseIpamTable(text: string): IpamTable | string {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (e) {
    return `not JSON (${(e as Error).message})`;
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return 'not an object of networks';
  for (const [net, ips] of Object.entries(v)) {
    if (typeof ips !== 'object' || ips === null || Array.isArray(ips)) return `network ${quoted(net)} is not an object`;
    for (const [ip, id] of Object.entries(ips as Record<string, unknown>))
      if ((parseIp(ip) === undefined && canonicalIp6(ip) !== ip) || typeof id !== 'string')
        return `entry ${quoted(`${net}/${ip}`)} is not address -> id`;
  }
  return v as IpamTable;
}

/**
 * The address table on disk (the allocator above stays pure; this only keeps its state).
 * A file that is not a table is never read as empty (that would hand out addresses in
 * use): it is moved aside (ipam.json.corrupt-TIME), said loudly, and `corrupt` marks that
 * the table must be rebuilt from what survives: the bindings on the bridge's ports (the
 * container pass does it before any allocation).
 */
export class FileIpam extends JsonFile<IpamTable> {
  constructor(file: string) {
    super(file, () => ({}), parseIpamTable);
  }
  get table(): IpamTable {
    return this.value;
  }
}
