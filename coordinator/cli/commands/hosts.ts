// coordctl join, leave, hosts, host, status: admitting hosts and looking at them.
import { table } from '../../../common/cli.js';
import type { HostInfo, Network } from '../../../proto/gen/gremesh/v1/gremesh.js';
import { agentEnvFile } from '../../agent-env.js';
import { certWarnings } from '../../trace-format.js';
import { durationFlag, want } from '../args.js';
import { ago, slices, tunnels } from '../output.js';
import type { Command, Ctx } from './command.js';

/** the gremesh-agent command line printed by join */
export function joinCommandLine(
  r: { coordinator: string; token: string; caHash: string },
  name: string,
  underlayIp: string | undefined,
): string {
  const parts = ['gremesh-agent', '--coordinator', r.coordinator, '--name', name, '--join-token', r.token];
  if (r.caHash) parts.push('--ca-hash', r.caHash);
  if (underlayIp) parts.push('--underlay-ip', underlayIp);
  return parts.join(' ');
}

async function join({ args, values, fmt, rpc, out }: Ctx): Promise<number> {
  want(args, 1, 'join NAME [--ttl DUR] [--underlay-ip IP]');
  const ttl = durationFlag(values, 'ttl', '30m or 24h');
  const name = args[0]!;
  const r = await rpc<{ token: string; expiresMs: number; coordinator: string; caHash: string }>('joinHost', {
    name,
    ttlSeconds: ttl,
  });
  const command = joinCommandLine(r, name, values['underlay-ip'] as string | undefined);
  if (fmt === 'env') {
    process.stdout.write(
      agentEnvFile({
        coordinator: r.coordinator,
        name,
        token: r.token,
        caHash: r.caHash,
        underlayIp: values['underlay-ip'] as string | undefined,
      }),
    );
    return 0;
  }
  const expires = new Date(r.expiresMs).toISOString();
  out(
    { host: name, token: r.token, caHash: r.caHash, expiresMs: r.expiresMs, expires, command },
    () => `join token for ${name} (one use, expires ${expires}); run on ${name} as root:\n  ${command}`,
  );
  return 0;
}

async function leave({ args, rpc, out }: Ctx): Promise<number> {
  want(args, 1, 'leave NAME');
  await rpc('removeHost', { name: args[0] });
  out({ removed: args[0] }, () => `host ${args[0]} removed; its tunnels go from every peer`);
  return 0;
}

async function hosts({ args, rpc, out }: Ctx): Promise<number> {
  want(args, 0, 'hosts');
  const r = await rpc<{ hosts: HostInfo[] }>('listHosts', {});
  out(r.hosts, () =>
    table([
      ['NAME', 'UNDERLAY', 'SLICES', 'STATE', 'LAST SEEN', 'VERSION'],
      ...r.hosts.map((h) => [h.name, h.underlayIp, slices(h), h.state, ago(h.lastSeenMs), h.agentVersion || '-']),
    ]),
  );
  return 0;
}

/** one host as text: its line, slices, tunnels table, attach errors */
export function formatHost(h: HostInfo): string {
  return [
    `${h.name}  ${h.underlayIp}  ${h.state}  last seen ${ago(h.lastSeenMs)}  agent ${h.agentVersion || '-'}`,
    `slices: ${slices(h)}   endpoints: ${h.endpoints}`,
    h.tunnels.length
      ? table([
          ['PEER', 'REMOTE', 'PORT', 'BFD', 'FORWARDING'],
          ...h.tunnels.map((t) => [t.peer, t.remoteIp, t.port, t.bfdState || '-', String(t.forwarding)]),
        ])
      : 'tunnels: none reported',
    ...h.attachErrors.map((a) => `attach error: ${a.container}: ${a.reason}`),
  ].join('\n');
}

async function host({ args, rpc, out }: Ctx): Promise<number> {
  want(args, 1, 'host NAME');
  const h = await rpc<HostInfo>('getHost', { name: args[0] });
  out(h, () => formatHost(h));
  return 0;
}

interface Status {
  revision: number;
  hosts: HostInfo[];
  networks: Network[];
  watchers: number;
  certificates: { name: string; notBeforeMs: number; notAfterMs: number }[];
}

/** status as text: warnings, the summary line, the hosts table, the networks table */
export function formatStatus(s: Status, warnings: string[]): string {
  return [
    ...warnings.map((w) => `WARNING: ${w}`),
    `revision ${s.revision}, ${s.hosts.length} hosts (${s.hosts.filter((h) => h.state === 'up').length} up), ${s.watchers} agents watching`,
    table([
      ['HOST', 'UNDERLAY', 'STATE', 'TUNNELS (BFD)', 'ENDPOINTS', 'ATTACH ERRORS'],
      ...s.hosts.map((h) => [
        h.name,
        h.underlayIp,
        h.state,
        tunnels(h),
        String(h.endpoints),
        h.attachErrors.map((a) => `${a.container}: ${a.reason}`).join('; ') || '-',
      ]),
    ]),
    table([
      ['NETWORK', 'CIDR', 'SLICE', 'GRE KEY'],
      ...s.networks.map((n) => [n.name, n.cidr, `/${n.hostPrefixLen}`, String(n.greKey)]),
    ]),
  ].join('\n');
}

async function status({ args, rpc, out }: Ctx): Promise<number> {
  want(args, 0, 'status');
  const s = await rpc<Status>('getStatus', {});
  const warnings = certWarnings(s.certificates ?? [], s.hosts, Date.now());
  out({ ...s, warnings }, () => formatStatus(s, warnings));
  return 0;
}

export const hostCommands: Record<string, Command> = {
  join: { run: join },
  leave: { run: leave },
  hosts: { run: hosts },
  host: { run: host },
  status: { run: status },
};
