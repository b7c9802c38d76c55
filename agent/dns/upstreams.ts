// Pure: the upstream DNS servers: --dns-upstream, or the host's resolv.conf as Docker reads
// it (systemd-resolved's list when resolv.conf names only its 127.0.0.53 stub). They are
// the servers Docker gives containers, so the ones whose queries the host sends to the
// network's resolver; everything not a gremesh name goes on to them.
import { parseIp } from '../../common/ipv4.js';
import { commaList } from '../../common/text.js';

export interface Upstream {
  ip: string;
  port: number;
}

/** Pure: `IP[:PORT],...`; an error message for bad input. */
export function parseUpstreams(v: string): Upstream[] | string {
  const out: Upstream[] = [];
  for (const item of commaList(v)) {
    const m = /^([0-9.]+)(?::(\d{1,5}))?$/.exec(item);
    const port = m?.[2] ? Number(m[2]) : 53;
    if (!m || parseIp(m[1]!) === undefined || port < 1 || port > 65535)
      return `--dns-upstream takes IPv4[:PORT], comma-separated; got "${item}"`;
    if (m[1]!.startsWith('127.'))
      return `--dns-upstream ${item}: a loopback server is not reachable from containers; give the servers it forwards to`;
    out.push({ ip: m[1]!, port });
  }
  if (!out.length) return '--dns-upstream needs at least one server';
  return out;
}

/** Pure: the IPv4 nameservers of a resolv.conf, loopback ones left out (Docker does the same for containers). */
export function resolvConfServers(text: string): Upstream[] {
  const out: Upstream[] = [];
  for (const line of text.split('\n')) {
    const m = /^\s*nameserver\s+(\S+)/.exec(line);
    if (m && parseIp(m[1]!) !== undefined && !m[1]!.startsWith('127.') && !out.some((u) => u.ip === m[1]))
      out.push({ ip: m[1]!, port: 53 });
  }
  return out;
}

/** Where a host's servers are: resolv.conf, or systemd-resolved's own list when resolv.conf has only its stub. */
export function hostUpstreams(read: (path: string) => string | undefined): Upstream[] {
  const main = resolvConfServers(read('/etc/resolv.conf') ?? '');
  if (main.length) return main;
  return resolvConfServers(read('/run/systemd/resolve/resolv.conf') ?? '');
}
