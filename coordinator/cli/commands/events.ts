// coordctl events [--since DUR] [--follow]: the coordinator's event log, streamed.
import type * as G from '@grpc/grpc-js';
import type { Event } from '../../../proto/gen/gremesh/v1/gremesh.js';
import { durationFlag, want, type Values } from '../args.js';
import type { Command, Ctx } from './command.js';

/** the arguments and --since (seconds, 0: from the start), checked before dialling */
export function checkEvents(values: Values, args: string[]): number {
  want(args, 0, 'events [--since DUR] [--follow]');
  return durationFlag(values, 'since', '10m');
}

/** one event: JSON with -o json, else time, kind, host -> peer, detail */
export function formatEvent(e: Event, fmt: string): string {
  return fmt === 'json'
    ? JSON.stringify(e)
    : `${new Date(Number(e.timeMs)).toISOString()}  ${e.kind.padEnd(13)} ${e.host}${e.peer ? ` -> ${e.peer}` : ''}  ${e.detail}`;
}

async function events({ values, args, fmt, addr, timeoutS, client, grpc }: Ctx): Promise<number> {
  const sinceS = checkEvents(values, args);
  const req = { sinceMs: sinceS ? Date.now() - sinceS * 1000 : 0, follow: values.follow === true };
  const stream = client.events(
    req,
    new grpc.Metadata(),
    values.follow ? {} : { deadline: Date.now() + timeoutS * 1000 },
  );
  await new Promise<void>((resolve, reject) => {
    stream.on('data', (e: Event) => process.stdout.write(`${formatEvent(e, fmt)}\n`));
    stream.on('end', resolve);
    stream.on('error', (e: G.ServiceError) =>
      e.code === grpc.status.CANCELLED
        ? resolve()
        : reject(
            new Error(
              e.code === grpc.status.UNAVAILABLE
                ? `cannot reach coordinator at ${addr}: ${e.details}`
                : e.details || e.message,
            ),
          ),
    );
    const stop = () => {
      stream.cancel();
      resolve();
    };
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
  });
  return 0;
}

export const eventCommands: Record<string, Command> = {
  events: {
    check: (values, args) => {
      checkEvents(values, args);
    },
    run: events,
  },
};
