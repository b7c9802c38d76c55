// coordctl's dispatcher: parse the command line, check the command's arguments before
// dialling, dial, run the command from the table, close the clients.
import { UsageError } from '../../common/cli.js';
import { HELP, parseGlobal } from './args.js';
import { printer } from './output.js';
import { dial } from './rpc.js';
import type { Command } from './commands/command.js';
import { hostCommands } from './commands/hosts.js';
import { networkCommands } from './commands/networks.js';
import { tokenCommands } from './commands/tokens.js';
import { traceCommands } from './commands/trace.js';
import { eventCommands } from './commands/events.js';
import { nameCommands } from './commands/names.js';
import { policyCommands } from './commands/policy.js';
import { keyCommands } from './commands/keys.js';

/** every command, by its name on the command line */
export const COMMANDS: Record<string, Command> = {
  ...hostCommands,
  ...networkCommands,
  ...tokenCommands,
  ...traceCommands,
  ...eventCommands,
  ...nameCommands,
  ...policyCommands,
  ...keyCommands,
};

/** The command to run, its arguments checked; a usage error before anything is dialled. */
export function commandFor(cmd: string, values: Parameters<NonNullable<Command['check']>>[0], args: string[]): Command {
  const c = Object.hasOwn(COMMANDS, cmd) ? COMMANDS[cmd] : undefined;
  c?.check?.(values, args);
  if (!c) throw new UsageError(`unknown command "${cmd}" (try --help)`);
  return c;
}

export async function main(argv: string[]): Promise<number> {
  const g = parseGlobal(argv);
  if (g.help) {
    process.stdout.write(HELP);
    return g.code;
  }
  const command = commandFor(g.cmd, g.values, g.args);
  const d = await dial(g.values, g.addr, g.timeoutS);
  try {
    return await command.run({ ...g, rpc: d.rpc, client: d.client, grpc: d.grpc, out: printer(g.fmt) });
  } finally {
    d.close();
  }
}
