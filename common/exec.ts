// The one runner for every external command (ovs-ofctl, ip, nft, ...) of the daemons.
// Always a timeout, output trimmed, a debug log line with the duration, and a typed
// error carrying argv, exit code, stderr and duration. Built on node:child_process:
// loading execa took 79 ms of the agent's start (more than Node itself); the lab and
// the tests keep execa.
import { spawn } from 'node:child_process';
import type { Logger } from './log.js';

export interface ExecOptions {
  /** milliseconds; default the runner's */
  timeoutMs?: number;
  input?: string;
  env?: Record<string, string | undefined>;
  /** exit codes that are not errors (the result carries the code) */
  okCodes?: number[];
}

export interface ExecResult {
  stdout: string;
  stderr: string;
  exitCode: number;
  durationMs: number;
}

const SYSTEM_DIRS = ['/usr/local/sbin', '/usr/local/bin', '/usr/sbin', '/usr/bin', '/sbin', '/bin'];

/**
 * PATH for system tools: the system directories first, and never node_modules/.bin,
 * which npm and test runners put in front (ava's dependencies ship a binary called
 * "nft" that would shadow nftables).
 */
export function systemPath(path = process.env.PATH ?? ''): string {
  const rest = path.split(':').filter((d) => d && !d.includes('node_modules') && !SYSTEM_DIRS.includes(d));
  return [...SYSTEM_DIRS, ...rest].join(':');
}

export type Runner = (argv: string[], opts?: ExecOptions) => Promise<ExecResult>;

export class ExecError extends Error {
  readonly code = 'GREMESH_EXEC_FAILED';
  constructor(
    readonly argv: string[],
    readonly exitCode: number | undefined,
    readonly stderr: string,
    readonly durationMs: number,
    readonly timedOut: boolean,
    cause?: unknown,
  ) {
    const what = timedOut
      ? `timed out after ${durationMs} ms`
      : exitCode === undefined
        ? 'could not start'
        : `exited ${exitCode}`;
    const err = stderr.trim().split('\n').filter(Boolean).pop() ?? '';
    super(`${argv.join(' ')}: ${what}${err ? `: ${err}` : ''}`, { cause });
    this.name = 'ExecError';
  }
}

export interface RunnerOptions {
  timeoutMs?: number;
  log?: Logger;
  /** prefix every argv (e.g. ['nsenter', '--net=/run/netns/x']) */
  prefix?: string[];
  env?: Record<string, string | undefined>;
}

let processCount = 0;
/** processes started through any runner of this process so far (the agent reports it: an idle agent starts none) */
export function processesStarted(): number {
  return processCount;
}

interface Finished {
  stdout: string;
  stderr: string;
  /** undefined: killed by a signal or never started */
  exitCode: number | undefined;
  timedOut: boolean;
  startError?: Error;
}

/** spawn, feed stdin, collect both outputs, kill (SIGKILL) after timeoutMs */
function spawnAndWait(argv: string[], env: NodeJS.ProcessEnv, input: string | undefined, timeoutMs: number) {
  return new Promise<Finished>((resolve) => {
    const child = spawn(argv[0]!, argv.slice(1), { env, stdio: ['pipe', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    let timedOut = false;
    let startError: Error | undefined;
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, timeoutMs);
    child.stdout.on('data', (b: Buffer) => out.push(b));
    child.stderr.on('data', (b: Buffer) => err.push(b));
    child.stdin.on('error', () => {
      // the command exited without reading its input: its exit status tells
    });
    child.on('error', (e) => {
      startError = e;
    });
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({
        stdout: Buffer.concat(out).toString('utf8'),
        stderr: Buffer.concat(err).toString('utf8'),
        exitCode: startError ? undefined : (code ?? undefined),
        timedOut,
        startError,
      });
    });
    child.stdin.end(input ?? '');
  });
}

export function createRunner(o: RunnerOptions = {}): Runner {
  const defTimeout = o.timeoutMs ?? 30_000;
  const prefix = o.prefix ?? [];
  return async (argv, opts = {}) => {
    const full = [...prefix, ...argv];
    processCount++;
    const started = performance.now();
    const r = await spawnAndWait(
      full,
      { ...process.env, PATH: systemPath(), ...o.env, ...opts.env },
      opts.input,
      opts.timeoutMs ?? defTimeout,
    );
    const durationMs = Math.round(performance.now() - started);
    o.log?.debug({ argv: full, ms: durationMs, exit: r.exitCode }, 'exec');
    const ok = r.exitCode === 0 || (r.exitCode !== undefined && (opts.okCodes ?? []).includes(r.exitCode));
    if (r.timedOut || !ok) {
      const errText = r.stderr || (r.startError ? r.startError.message : '');
      throw new ExecError(full, r.timedOut ? undefined : r.exitCode, errText, durationMs, r.timedOut, r.startError);
    }
    return { stdout: r.stdout.trim(), stderr: r.stderr, exitCode: r.exitCode ?? 0, durationMs };
  };
}

/** Is `name` on PATH? */
export async function which(name: string): Promise<string | undefined> {
  const r = await spawnAndWait(['sh', '-c', `command -v "$1"`, 'sh', name], { PATH: systemPath() }, undefined, 10_000);
  return r.exitCode === 0 ? r.stdout.trim() : undefined;
}
