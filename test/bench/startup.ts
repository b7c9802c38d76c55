// Start time of the binaries beside a bare `node -e 0`, interleaved in one run:
// `gremesh-agent --help`, `coordctl --help`, `gremesh-coordinator --help`.
// Usage: node dist/test/bench/startup.js [--repeat 15]
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import { parseArgs } from 'node:util';
import { BIN } from '../helpers/cli.js';
import { summarize } from './stats.js';

const { values } = parseArgs({ options: { repeat: { type: 'string', default: '15' } } });
const cases: [string, string[]][] = [
  ['node -e 0', ['-e', '0']],
  ['gremesh-agent --help', [BIN.agent, '--help']],
  ['coordctl --help', [BIN.coordctl, '--help']],
  ['gremesh-coordinator --help', [BIN.coordinator, '--help']],
];
const times = new Map<string, number[]>(cases.map(([n]) => [n, []]));
for (let i = 0; i < Number(values.repeat); i++) {
  for (const [name, argv] of cases) {
    const t0 = performance.now();
    const r = spawnSync(process.execPath, argv, { stdio: 'ignore' });
    if (r.status !== 0) throw new Error(`${name} exited ${r.status}`);
    times.get(name)!.push(performance.now() - t0);
  }
}
const base = summarize(times.get('node -e 0')!).p50;
const rows = cases.map(([name]) => {
  const s = summarize(times.get(name)!);
  return { name, p50: s.p50, p99: s.p99, ratio: s.p50 / base };
});
for (const r of rows)
  process.stdout.write(
    `${r.name.padEnd(28)} p50 ${r.p50.toFixed(0).padStart(4)} ms  p99 ${r.p99.toFixed(0).padStart(4)} ms  ${r.ratio.toFixed(2)}x node\n`,
  );
if (process.env.GREMESH_BENCH_JSON) fs.writeFileSync(process.env.GREMESH_BENCH_JSON, JSON.stringify(rows, null, 2));
