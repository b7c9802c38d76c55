// coordctl rotate-keys [HOST]: new WireGuard keys for one host or all (encryption wireguard).
import { UsageError } from '../../../common/cli.js';
import type { Values } from '../args.js';
import type { Command, Ctx } from './command.js';

function check(_values: Values, args: string[]): void {
  if (args.length > 1) throw new UsageError('usage: coordctl rotate-keys [HOST]');
}

async function rotateKeys({ args, rpc, out }: Ctx): Promise<number> {
  const r = await rpc<{ hosts: string[] }>('rotateKeys', { host: args[0] ?? '' });
  out(r, () =>
    r.hosts.length
      ? `new WireGuard keys asked of ${r.hosts.join(', ')}: each switches, then publishes; peers follow (coordctl hosts shows the keys)`
      : 'no hosts',
  );
  return 0;
}

export const keyCommands: Record<string, Command> = { 'rotate-keys': { check, run: rotateKeys } };
