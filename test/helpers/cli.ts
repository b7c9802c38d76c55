// Run the project's binaries as a user does: as subprocesses.
import { execa } from 'execa';
import * as path from 'node:path';
import * as fs from 'node:fs';
import * as os from 'node:os';
import { fileURLToPath } from 'node:url';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
export const BIN = {
  lab: path.join(ROOT, 'dist/deploy/lab/main.js'),
  coordinator: path.join(ROOT, 'dist/coordinator/main.js'),
  coordctl: path.join(ROOT, 'dist/coordinator/cli.js'),
  agent: path.join(ROOT, 'dist/agent/main.js'),
};

export interface CliResult {
  stdout: string;
  stderr: string;
  exitCode: number;
}

export async function cli(
  bin: string,
  args: string[],
  env: Record<string, string> = {},
  timeoutMs = 120_000,
): Promise<CliResult> {
  const r = await execa('node', [bin, ...args], { reject: false, env, timeout: timeoutMs, stdin: 'ignore' });
  return { stdout: String(r.stdout ?? ''), stderr: String(r.stderr ?? ''), exitCode: r.exitCode ?? -1 };
}

/** A fresh short temp dir (unix sockets live under it). */
export function tempDir(prefix = 'gm'): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), `${prefix}-`));
}

export const isRoot = process.getuid?.() === 0;
