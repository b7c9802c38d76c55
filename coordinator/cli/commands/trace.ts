// coordctl trace SRC DST: why can (not) SRC reach DST.
import { UsageError } from '../../../common/cli.js';
import type { TraceReport } from '../../../proto/gen/gremesh/v1/gremesh.js';
import { formatTrace } from '../../trace-format.js';
import { want, type Values } from '../args.js';
import type { Command, Ctx } from './command.js';

/** the arguments and --proto/--port, checked before dialling */
export function checkTrace(values: Values, args: string[]): void {
  want(args, 2, 'trace SRC DST [--proto icmp|tcp|udp] [--port N]');
  if (values.proto !== undefined && !['icmp', 'tcp', 'udp'].includes(values.proto as string))
    throw new UsageError(`--proto must be icmp, tcp or udp, got "${values.proto}"`);
  if (
    values.port !== undefined &&
    (!/^\d+$/.test(values.port as string) || Number(values.port) < 1 || Number(values.port) > 65535)
  )
    throw new UsageError(`--port must be 1-65535, got "${values.port}"`);
  if (values.port !== undefined && (values.proto ?? 'icmp') === 'icmp')
    throw new UsageError('--port needs --proto tcp or udp');
}

async function trace({ args, values, rpc, out }: Ctx): Promise<number> {
  const r = await rpc<TraceReport>('trace', {
    src: args[0],
    dst: args[1],
    proto: (values.proto as string | undefined) ?? 'icmp',
    port: Number((values.port as string | undefined) ?? 0),
    srcIp: (values['src-ip'] as string | undefined) ?? '',
  });
  out(r, () => formatTrace(r));
  return 0;
}

export const traceCommands: Record<string, Command> = { trace: { check: checkTrace, run: trace } };
