// coordctl policy allow|deny|list|delete: the rules inside a network.
import { table, UsageError } from '../../../common/cli.js';
import { describeRule, parsePortRange, type PolicyRule } from '../../../common/policy.js';
import type { NetworkPolicy } from '../../../proto/gen/gremesh/v1/gremesh.js';
import type { Values } from '../args.js';
import type { Command, Ctx } from './command.js';

const USAGE =
  'usage: coordctl policy allow|deny --network N --from GROUP|any|outside --to GROUP|any [--proto tcp|udp|icmp] [--port P[-Q]] | policy list [--network N] | policy delete ID';

/** Pure: the rule a command line asks for (usage errors before dialling) */
export function ruleFromFlags(action: string, values: Values): { network: string; rule: Omit<PolicyRule, 'id'> } {
  const str = (k: string) => values[k] as string | undefined;
  const network = str('network');
  const from = str('from');
  const to = str('to');
  if (!network || !from || !to) throw new UsageError(USAGE);
  const proto = (str('proto') ?? '') as PolicyRule['proto'];
  const port = str('port');
  const range = port === undefined ? { min: 0, max: 0 } : parsePortRange(port);
  if (!range) throw new UsageError(`--port must be P or P-Q (1-65535), got "${port}"`);
  return {
    network,
    rule: { action: action as PolicyRule['action'], from, to, proto, portMin: range.min, portMax: range.max },
  };
}

function check(values: Values, args: string[]): void {
  const [sub, ...rest] = args;
  if (sub === 'allow' || sub === 'deny') {
    if (rest.length) throw new UsageError(USAGE);
    ruleFromFlags(sub, values);
  } else if (sub === 'list') {
    if (rest.length) throw new UsageError(USAGE);
  } else if (sub === 'delete') {
    if (rest.length !== 1) throw new UsageError('usage: coordctl policy delete ID');
  } else throw new UsageError(USAGE);
}

async function policy({ args, values, rpc, out }: Ctx): Promise<number> {
  check(values, args);
  const [sub, ...rest] = args;
  if (sub === 'allow' || sub === 'deny') {
    const { network, rule } = ruleFromFlags(sub, values);
    const r = await rpc<PolicyRule>('addPolicyRule', { network, rule: { id: '', ...rule } });
    out(r, () => `${r.id} ${describeRule(r)} on ${network}`);
    return 0;
  }
  if (sub === 'delete') {
    await rpc('deletePolicyRule', { id: rest[0] });
    out({ deleted: rest[0] }, () => `policy rule ${rest[0]} deleted`);
    return 0;
  }
  const r = await rpc<{ networks: NetworkPolicy[] }>('listPolicy', {
    network: (values.network as string | undefined) ?? '',
  });
  out(r.networks, () =>
    table([
      ['NETWORK', 'ISOLATION', 'ID', 'RULE'],
      ...r.networks.flatMap((n) =>
        n.rules.length
          ? n.rules.map((x) => [n.network, n.isolation, x.id, describeRule(x as PolicyRule)])
          : [[n.network, n.isolation, '-', n.isolation === 'groups' ? 'only within groups' : 'everything allowed']],
      ),
    ]),
  );
  return 0;
}

export const policyCommands: Record<string, Command> = { policy: { check, run: policy } };
