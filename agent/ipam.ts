// Local address management: which container holds which address of this host's
// slice. Pure allocation; the table persists as one JSON file in the state dir.
import * as fs from 'node:fs';
import { cidrContains, formatIp, parseCidr, parseIp } from '../common/ipv4.js';
import { writeFileAtomic } from './state-file.js';

/** network -> ip -> container id */
export type IpamTable = Record<string, Record<string, string>>;

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
export function allocate(t: IpamTable, network: string, slice: string, id: string, want?: string): Allocation {
  const used = t[network] ?? {};
  const held = Object.entries(used).find(([, c]) => c === id)?.[0];
  if (held && (!want || want === held)) return { ip: held };
  if (want) {
    if (parseIp(want) === undefined) return { error: `gremesh.ip "${want}" is not an IPv4 address` };
    if (!usable(slice, want))
      return { error: `gremesh.ip ${want} is not a usable address of this host's slice ${slice}` };
    if (used[want] && used[want] !== id)
      return { error: `gremesh.ip ${want} is taken by container ${used[want]!.slice(0, 12)}` };
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

export function bind(t: IpamTable, network: string, ip: string, id: string): IpamTable {
  const next = structuredClone(t);
  const n = (next[network] ??= {});
  for (const [k, v] of Object.entries(n)) if (v === id) delete n[k];
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

export class FileIpam {
  table: IpamTable;
  constructor(private readonly file: string) {
    try {
      this.table = JSON.parse(fs.readFileSync(file, 'utf8')) as IpamTable;
    } catch {
      this.table = {};
    }
  }
  save(t: IpamTable): void {
    this.table = t;
    writeFileAtomic(this.file, JSON.stringify(t, null, 1));
  }
}
