// The fault suite at full length (`make soak`): a 300 s coordinator outage, 1000 churn
// cycles, the 100-join burst with 100 container starts, 100 attachments across an agent
// kill; certificates of 30 s renewed for 3 minutes; 50 and 100 container start/stop
// cycles in the containers and plugin suites. The same cases as `make test`, which runs them scaled down to stay within 12
// minutes. Prints ava's output as it goes and, with GREMESH_BENCH_JSON, writes each
// case's outcome, duration and figures (its t.log lines) for the report.
// Usage: node dist/test/bench/soak.js
import * as fs from 'node:fs';
import * as path from 'node:path';
import { spawn } from 'node:child_process';
import { ROOT } from '../helpers/cli.js';

export interface SoakCase {
  title: string;
  ok: boolean;
  seconds: number;
  figures: string[];
}

/** the test files the soak runs at full length (ava names them this way) */
export const SOAK_FILES = ['faults', 'renewal', 'etcd', 'containers', 'plugin'];

/** Pure: an ava duration ("557ms", "5.6s", "3m 20.1s", "5m") in seconds. */
export function avaDuration(d: string): number {
  let s = 0;
  for (const [, n, u] of d.matchAll(/(\d+(?:\.\d+)?)(ms|s|m)/g))
    s += Number(n) * (u === 'ms' ? 0.001 : u === 'm' ? 60 : 1);
  return s;
}

/** Pure: ava's verbose output → one entry per fault case. */
export function parseAvaVerbose(text: string): SoakCase[] {
  const cases: SoakCase[] = [];
  let current: SoakCase | undefined;
  for (const line of text.split('\n')) {
    // ava names the file ("faults › ") only when it runs several
    const m =
      /^\s+([✔✘])\s+(?:\[fail\]: )?(?:([\w-]+) › )?(.*?)(?: \(([\d.]+(?:ms|s|m)(?: [\d.]+(?:ms|s|m))*)\))?\s*$/.exec(
        line,
      );
    if (m && (m[2] === undefined || SOAK_FILES.includes(m[2]))) {
      const seconds = avaDuration(m[4] ?? '');
      current = { title: m[3]!, ok: m[1] === '✔', seconds, figures: [] };
      cases.push(current);
      continue;
    }
    if (/^\s+[✔✘]/.test(line)) current = undefined; // another file's test: its figures are not ours
    const info = /^\s+ℹ (.*)$/.exec(line);
    if (info && current) current.figures.push(info[1]!);
  }
  return cases;
}

const isMain = process.argv[1] && path.resolve(process.argv[1]) === path.resolve(new URL(import.meta.url).pathname);
if (isMain) {
  const argv = [
    path.join(ROOT, 'test/run-e2e.sh'),
    '--timeout',
    '30m',
    ...SOAK_FILES.map((f) => `dist/test/e2e/${f}.test.js`),
  ];
  const started = new Date();
  let text = '';
  const child = spawn('bash', argv, { cwd: ROOT, env: { ...process.env, GREMESH_SOAK: '1' } });
  child.stdout.on('data', (d: Buffer) => {
    text += String(d);
    process.stdout.write(d);
  });
  child.stderr.on('data', (d: Buffer) => {
    text += String(d);
    process.stderr.write(d);
  });
  const code = await new Promise<number>((r) => child.on('exit', (c) => r(c ?? 1)));
  const cases = parseAvaVerbose(text);
  const result = {
    date: started.toISOString(),
    command: `GREMESH_SOAK=1 bash test/run-e2e.sh --timeout 30m ${SOAK_FILES.map((f) => `dist/test/e2e/${f}.test.js`).join(' ')} (make soak)`,
    exitCode: code,
    minutes: (Date.now() - started.getTime()) / 60_000,
    cases,
  };
  if (process.env.GREMESH_BENCH_JSON) fs.writeFileSync(process.env.GREMESH_BENCH_JSON, JSON.stringify(result, null, 2));
  process.exit(code);
}
