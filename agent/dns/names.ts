// Pure: the names each network's resolver answers (this host's containers from its own
// ports, every other host's from the coordinator's snapshot), and what to do with a query.
import { parseIp } from '../../common/ipv4.js';
import type { LocalPort, Snapshot } from '../model.js';
import { CLASS_IN, RCODE, TYPE, type Question } from './codec.js';

export interface NameRecord {
  ip: string;
  host: string;
  containerId: string;
}
/** network -> name -> its records (sorted by address) */
export type NameTable = Map<string, Map<string, NameRecord[]>>;

/** addresses in one answer: 16 A records fit a 512-byte UDP reply with any name */
export const MAX_ANSWERS = 16;

/** Pure: every name of every network, from this host's ports and its peers' endpoints. */
export function buildNameTable(s: Snapshot | undefined, locals: LocalPort[]): NameTable {
  const t: NameTable = new Map();
  const add = (network: string, names: string[] | undefined, r: NameRecord) => {
    let byName = t.get(network);
    if (!byName) t.set(network, (byName = new Map()));
    for (const n of names ?? []) {
      const list = byName.get(n) ?? [];
      if (!list.some((x) => x.ip === r.ip)) list.push(r);
      byName.set(n, list);
    }
  };
  for (const l of locals)
    if (!l.gateway) add(l.network, l.names, { ip: l.ip, host: s?.host ?? '', containerId: l.containerId });
  for (const p of s?.peers ?? [])
    for (const e of p.endpoints) add(e.network, e.names, { ip: e.ip, host: p.name, containerId: e.containerId });
  for (const byName of t.values())
    for (const list of byName.values()) list.sort((a, b) => parseIp(a.ip)! - parseIp(b.ip)!);
  return t;
}

export type Decision = { answer: true; rcode: number; addresses: string[] } | { answer: false };

/**
 * Pure: answer a question about a name of this network (A: its addresses, starting at
 * `turn` for round-robin; another type: none, NOERROR); anything else is forwarded.
 */
export function decide(t: NameTable, network: string, q: Question, turn: number): Decision {
  const records = q.class === CLASS_IN ? t.get(network)?.get(q.name) : undefined;
  if (!records?.length) return { answer: false };
  if (q.type !== TYPE.A && q.type !== TYPE.ANY) return { answer: true, rcode: RCODE.NOERROR, addresses: [] };
  const start = turn % records.length;
  const rotated = [...records.slice(start), ...records.slice(0, start)].map((r) => r.ip);
  return { answer: true, rcode: RCODE.NOERROR, addresses: rotated.slice(0, MAX_ANSWERS) };
}
