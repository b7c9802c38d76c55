// The one runner for every external command (ovs-vsctl, ovs-ofctl, ip, nft, docker, ...).
// Always a timeout, output trimmed, a debug log line with the duration, and a typed
// error carrying argv, exit code, stderr and duration.
import { execa } from 'execa';
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

export function createRunner(o: RunnerOptions = {}): Runner {
  const defTimeout = o.timeoutMs ?? 30_000;
  const prefix = o.prefix ?? [];
  return async (argv, opts = {}) => {
    const full = [...prefix, ...argv];
    processCount++;
    const started = performance.now();
    const r = await execa(full[0]!, full.slice(1), {
      reject: false,
      timeout: opts.timeoutMs ?? defTimeout,
      input: opts.input,
      env: { PATH: systemPath(), ...o.env, ...opts.env },
      extendEnv: true,
      stripFinalNewline: true,
      encoding: 'utf8',
    });
    const durationMs = Math.round(performance.now() - started);
    const stdout = typeof r.stdout === 'string' ? r.stdout : '';
    const stderr = typeof r.stderr === 'string' ? r.stderr : '';
    o.log?.debug({ argv: full, ms: durationMs, exit: r.exitCode }, 'exec');
    const ok = r.exitCode === 0 || (r.exitCode !== undefined && (opts.okCodes ?? []).includes(r.exitCode));
    if (r.timedOut || !ok) {
      const errText =
        stderr ||
        (r.failed && r.exitCode === undefined ? String((r as { shortMessage?: string }).shortMessage ?? '') : '');
      throw new ExecError(full, r.exitCode, errText, durationMs, Boolean(r.timedOut), r.cause);
    }
    return { stdout: stdout.trim(), stderr, exitCode: r.exitCode ?? 0, durationMs };
  };
}

/** Is `name` on PATH? */
export async function which(name: string): Promise<string | undefined> {
  const r = await execa('sh', ['-c', `command -v "$1"`, 'sh', name], { reject: false, env: { PATH: systemPath() } });
  return r.exitCode === 0 && typeof r.stdout === 'string' ? r.stdout.trim() : undefined;
}
