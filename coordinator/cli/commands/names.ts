// coordctl names [NETWORK]: every DNS name the networks' resolvers answer, and who holds it.
import { table, UsageError } from '../../../common/cli.js';
import type { NameEntry } from '../../../proto/gen/gremesh/v1/gremesh.js';
import type { Command, Ctx } from './command.js';

async function names({ args, rpc, out }: Ctx): Promise<number> {
  if (args.length > 1) throw new UsageError('usage: coordctl names [NETWORK]');
  const r = await rpc<{ names: NameEntry[] }>('listNames', { network: args[0] ?? '' });
  out(r.names, () =>
    r.names.length
      ? table([
          ['NETWORK', 'NAME', 'ADDRESSES', 'HOSTS', 'CONTAINERS', 'NOTE'],
          ...r.names.map((n) => [
            n.network,
            n.name,
            n.holders.map((h) => h.ip).join(','),
            n.holders.map((h) => h.host).join(','),
            n.holders.map((h) => h.container || '-').join(','),
            n.holders.length > 1 ? `shared by ${n.holders.length}: answered with all, rotated` : '',
          ]),
        ])
      : 'no names (no container reported one)',
  );
  return 0;
}

export const nameCommands: Record<string, Command> = {
  names: {
    check: (_values, args) => {
      if (args.length > 1) throw new UsageError('usage: coordctl names [NETWORK]');
    },
    run: names,
  },
};
