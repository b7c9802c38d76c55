// A join burst (test/helpers/join-burst.js) running in a lab namespace, its JSON lines read
// as they come: the fault suite and the etcd suite kill things under it.
import { spawn } from 'node:child_process';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

export const JOIN_BURST = path.resolve(path.dirname(fileURLToPath(import.meta.url)), 'join-burst.js');

export interface BurstEvent {
  event: string;
  name: string;
  ok?: number;
  failed?: number;
  attempts?: number;
  errors?: Record<string, number>;
  error?: string;
  ms?: number;
}

export interface RunningBurst {
  events: BurstEvent[];
  /** the joins acknowledged so far */
  admitted(): BurstEvent[];
  /** the closing line, once it came */
  summary(): BurstEvent | undefined;
  exited(): boolean;
  /** its exit code */
  done: Promise<number>;
}

/** join-burst with these flags (--coordinator, --pki, --count ...) in network namespace ns */
export function startJoinBurst(ns: string, flags: string[]): RunningBurst {
  const events: BurstEvent[] = [];
  const p = spawn('nsenter', [`--net=/run/netns/${ns}`, 'node', JOIN_BURST, ...flags], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  let buf = '';
  p.stdout!.on('data', (d) => {
    buf += String(d);
    const l = buf.split('\n');
    buf = l.pop()!;
    for (const x of l) if (x.trim()) events.push(JSON.parse(x) as BurstEvent);
  });
  return {
    events,
    admitted: () => events.filter((e) => e.event === 'admitted'),
    summary: () => events.find((e) => e.event === 'done'),
    exited: () => p.exitCode !== null,
    done: new Promise<number>((r) => p.on('exit', (c) => r(c ?? -1))),
  };
}
