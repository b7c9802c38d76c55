// Pure: the names view (coordctl names): every DNS name agents reported, per network, with
// the addresses (and hosts, containers) that every network's resolvers answer for it.
import { parseIp } from '../common/ipv4.js';
import type { EndpointView } from './model.js';

export interface NameHolderView {
  ip: string;
  host: string;
  container: string;
}
export interface NameEntryView {
  network: string;
  name: string;
  holders: NameHolderView[];
}

/** Pure: names sorted by network and name; holders by address. `network` '' means every one. */
export function computeNames(endpoints: (EndpointView & { name: string })[], network = ''): NameEntryView[] {
  const byKey = new Map<string, NameEntryView>();
  for (const e of endpoints) {
    if (network && e.network !== network) continue;
    for (const n of e.names ?? []) {
      const key = `${e.network}\u0000${n}`;
      const entry = byKey.get(key) ?? { network: e.network, name: n, holders: [] };
      if (!entry.holders.some((h) => h.ip === e.ip)) entry.holders.push({ ip: e.ip, host: e.host, container: e.name });
      byKey.set(key, entry);
    }
  }
  for (const e of byKey.values()) e.holders.sort((a, b) => parseIp(a.ip)! - parseIp(b.ip)!);
  return [...byKey.values()].sort((a, b) => a.network.localeCompare(b.network) || a.name.localeCompare(b.name));
}
