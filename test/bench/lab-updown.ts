// Benchmark: `gremesh-lab up` and `down` wall time for 3 and 8 hosts.
// Usage: node dist/test/bench/lab-updown.js [--repeat N] [--hosts 3,8]
import { parseArgs } from 'node:util';
import { BIN, cli, tempDir } from '../helpers/cli.js';
import * as fs from 'node:fs';
import { summarize } from './stats.js';

const { values } = parseArgs({
  options: { repeat: { type: 'string', default: '3' }, hosts: { type: 'string', default: '3,8' } },
});
const repeat = Number(values.repeat);
const results: Record<string, unknown>[] = [];
for (const n of values.hosts!.split(',').map(Number)) {
  const ups: number[] = [];
  const downs: number[] = [];
  for (let i = 0; i < repeat; i++) {
    const dir = tempDir('gmb');
    let t = performance.now();
    const u = await cli(BIN.lab, ['up', '--hosts', String(n), '--dir', dir], {}, 600_000);
    ups.push(performance.now() - t);
    t = performance.now();
    const d = await cli(BIN.lab, ['down', '--dir', dir], {}, 600_000);
    downs.push(performance.now() - t);
    fs.rmSync(dir, { recursive: true, force: true });
    if (u.exitCode !== 0 || d.exitCode !== 0) throw new Error(`lab failed: ${u.stderr}${d.stderr}`);
  }
  const su = summarize(ups);
  const sd = summarize(downs);
  console.log(`hosts=${n} up   p50=${su.p50.toFixed(0)} ms  max=${su.max.toFixed(0)} ms  (n=${repeat})`);
  console.log(`hosts=${n} down p50=${sd.p50.toFixed(0)} ms  max=${sd.max.toFixed(0)} ms  (n=${repeat})`);
  results.push({ hosts: n, up: su, down: sd });
}
if (process.env.GREMESH_BENCH_JSON) fs.writeFileSync(process.env.GREMESH_BENCH_JSON, JSON.stringify(results, null, 2));
