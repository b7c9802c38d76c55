// Small helpers every binary shares: argument parsing with one-line usage errors,
// printing tables/json, and turning errors into one line on stderr + exit code.
import { parseArgs, type ParseArgsConfig } from 'node:util';

export class UsageError extends Error {
  readonly code = 'GREMESH_USAGE';
  constructor(message: string) {
    super(message);
    this.name = 'UsageError';
  }
}

export type Options = NonNullable<ParseArgsConfig['options']>;

export interface Parsed {
  values: Record<string, string | boolean | string[] | undefined>;
  positionals: string[];
}

export function parse(args: string[], options: Options, allowPositionals = true): Parsed {
  try {
    const r = parseArgs({
      args,
      options: { ...options, help: { type: 'boolean', short: 'h' } },
      allowPositionals,
      strict: true,
    });
    return { values: r.values as Parsed['values'], positionals: r.positionals };
  } catch (e) {
    throw new UsageError((e as Error).message.split('\n')[0]!);
  }
}

export function table(rows: string[][]): string {
  if (rows.length === 0) return '';
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length)));
  return rows.map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!))).join('  ')).join('\n');
}

export function outputFormat(v: unknown, allowed = ['table', 'json']): string {
  const o = (v as string | undefined) ?? 'table';
  if (!allowed.includes(o)) throw new UsageError(`-o must be one of ${allowed.join(', ')}, got ${o}`);
  return o;
}

/** Run a CLI main; any error becomes one line on stderr and a non-zero exit. */
export function runMain(prog: string, main: (argv: string[]) => Promise<number | void>): void {
  main(process.argv.slice(2)).then(
    (code) => {
      process.exitCode = code ?? 0;
    },
    (e: unknown) => {
      const err = e as Error & { code?: string };
      process.stderr.write(`${prog}: ${err?.message ?? String(e)}\n`);
      if (process.env.GREMESH_DEBUG) process.stderr.write(`${err?.stack}\n`);
      // exit now: a daemon that failed halfway through its start may hold open handles
      // (an etcd watch, a gRPC channel) that would keep it running without serving
      process.exit(err instanceof UsageError ? 2 : 1);
    },
  );
}

export function elapsed(startMs: number): string {
  return `${((performance.now() - startMs) / 1000).toFixed(2)}s`;
}
