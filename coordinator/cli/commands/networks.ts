// coordctl networks, network create|delete.
import { table, UsageError } from '../../../common/cli.js';
import type { Network } from '../../../proto/gen/gremesh/v1/gremesh.js';
import { want } from '../args.js';
import type { Command, Ctx } from './command.js';

async function networks({ args, rpc, out }: Ctx): Promise<number> {
  want(args, 0, 'networks');
  const r = await rpc<{ networks: Network[] }>('listNetworks', {});
  out(r.networks, () =>
    table([
      ['NAME', 'CIDR', 'SLICE', 'GRE KEY', 'MTU', 'ISOLATION', 'RULES', 'IPV6'],
      ...r.networks.map((n) => [
        n.name,
        n.cidr,
        `/${n.hostPrefixLen}`,
        String(n.greKey),
        n.mtu ? String(n.mtu) : 'auto',
        n.isolation || 'none',
        String(n.rules.length),
        n.ipv6Cidr ? `${n.ipv6Cidr} (/${n.ipv6HostPrefixLen})` : '-',
      ]),
    ]),
  );
  return 0;
}

async function create({ values, rpc, out }: Ctx, rest: string[]): Promise<number> {
  if (rest.length !== 1 || !values.cidr || !values['host-prefix-len'])
    throw new UsageError(
      'usage: coordctl network create NAME --cidr CIDR --host-prefix-len N [--mtu N] [--isolation none|groups] [--ipv6-cidr PREFIX [--ipv6-host-prefix-len N]]',
    );
  const hpl6 = (values['ipv6-host-prefix-len'] as string | undefined) ?? '0';
  if (!/^\d+$/.test(hpl6)) throw new UsageError(`--ipv6-host-prefix-len must be a whole number, got "${hpl6}"`);
  const hpl = values['host-prefix-len'] as string;
  const mtu = (values.mtu as string | undefined) ?? '0';
  if (!/^\d+$/.test(hpl)) throw new UsageError(`--host-prefix-len must be a whole number, got "${hpl}"`);
  if (!/^\d+$/.test(mtu)) throw new UsageError(`--mtu must be a whole number, got "${mtu}"`);
  const n = await rpc<Network>('createNetwork', {
    name: rest[0],
    cidr: values.cidr,
    hostPrefixLen: Number(hpl),
    mtu: Number(mtu),
    isolation: (values.isolation as string | undefined) ?? '',
    ipv6Cidr: (values['ipv6-cidr'] as string | undefined) ?? '',
    ipv6HostPrefixLen: Number(hpl6),
  });
  const six = n.ipv6Cidr ? ` and ${n.ipv6Cidr} (/${n.ipv6HostPrefixLen} per host)` : '';
  out(
    n,
    () =>
      `network ${n.name} ${n.cidr} (/${n.hostPrefixLen} per host)${six}, GRE key ${n.greKey}, isolation ${n.isolation}: created`,
  );
  return 0;
}

async function update({ values, rpc, out }: Ctx, rest: string[]): Promise<number> {
  if (rest.length !== 1 || values.isolation === undefined)
    throw new UsageError('usage: coordctl network update NAME --isolation none|groups');
  const n = await rpc<Network>('updateNetwork', { name: rest[0], isolation: values.isolation });
  out(n, () => `network ${n.name}: isolation ${n.isolation}`);
  return 0;
}

async function remove({ rpc, out }: Ctx, rest: string[]): Promise<number> {
  if (rest.length !== 1) throw new UsageError('usage: coordctl network delete NAME');
  await rpc('deleteNetwork', { name: rest[0] });
  out({ deleted: rest[0] }, () => `network ${rest[0]} deleted`);
  return 0;
}

async function network(ctx: Ctx): Promise<number> {
  const [sub, ...rest] = ctx.args;
  if (sub === 'create') return create(ctx, rest);
  if (sub === 'delete') return remove(ctx, rest);
  if (sub === 'update') return update(ctx, rest);
  throw new UsageError('usage: coordctl network create|update|delete ...');
}

export const networkCommands: Record<string, Command> = {
  networks: { run: networks },
  network: { run: network },
};
