// coordctl token list | token revoke ID.
import { table, UsageError } from '../../../common/cli.js';
import type { Command, Ctx } from './command.js';

async function token({ args, rpc, out }: Ctx): Promise<number> {
  const [sub, ...rest] = args;
  if (sub === 'list' && rest.length === 0) {
    const r = await rpc<{ tokens: { id: string; host: string; expiresMs: number; state: string }[] }>('listTokens', {});
    out(r.tokens, () =>
      table([
        ['ID', 'HOST', 'STATE', 'EXPIRES'],
        ...r.tokens.map((t) => [t.id, t.host, t.state, new Date(t.expiresMs).toISOString()]),
      ]),
    );
    return 0;
  }
  if (sub === 'revoke' && rest.length === 1) {
    await rpc('revokeToken', { id: rest[0] });
    out({ revoked: rest[0] }, () => `token ${rest[0]} revoked`);
    return 0;
  }
  throw new UsageError('usage: coordctl token list | token revoke ID');
}

export const tokenCommands: Record<string, Command> = { token: { run: token } };
