// coordctl's printing: -o json (the reply as it came) or a table/text, and the cells hosts share.
import type { HostInfo } from '../../proto/gen/gremesh/v1/gremesh.js';

export type Out = (v: unknown, text: () => string) => void;

/** print v as indented JSON with -o json, else the text */
export function printer(fmt: string, write: (s: string) => void = (s) => process.stdout.write(s)): Out {
  return (v, text) => write(fmt === 'json' ? `${JSON.stringify(v, null, 2)}\n` : `${text()}\n`);
}

/** "12s ago", "3m ago", "2h ago", or "never" */
export const ago = (ms: number, now = Date.now()): string => {
  if (!ms) return 'never';
  const s = Math.max(0, Math.round((now - ms) / 1000));
  return s < 60 ? `${s}s ago` : s < 3600 ? `${Math.round(s / 60)}m ago` : `${Math.round(s / 3600)}h ago`;
};

/** a host's slices: the CIDR (and IPv6 slice: CIDR+IPV6), or network:CIDR when it has several */
export const slices = (h: HostInfo): string =>
  h.slices
    .map((s) => {
      const both = s.ipv6Cidr ? `${s.cidr}+${s.ipv6Cidr}` : s.cidr;
      return h.slices.length > 1 ? `${s.network}:${both}` : both;
    })
    .join(',') || '-';

/** "2/3 up (h3:down)" */
export const tunnels = (h: HostInfo): string => {
  if (!h.tunnels.length) return '-';
  const up = h.tunnels.filter((t) => t.bfdState === 'up').length;
  const bad = h.tunnels.filter((t) => t.bfdState !== 'up').map((t) => `${t.peer}:${t.bfdState || 'unknown'}`);
  return `${up}/${h.tunnels.length} up${bad.length ? ` (${bad.join(' ')})` : ''}`;
};
