// Benchmark: for N lab hosts, time from `coordctl join` of the N-th host (plus its agent
// start) until every host holds its tunnel and a ping from the new host to every
// other host's gateway is answered. p50/p99 over repeats.
// Usage: node dist/test/bench/converge.js [--sizes 2,4,8] [--repeat 5]
import * as fs from 'node:fs';
import { parseArgs } from 'node:util';
import { execa } from 'execa';
import { BIN, cli, tempDir } from '../helpers/cli.js';
import { readState } from '../../deploy/lab/lab.js';
import {
  agentStateDir,
  join,
  joinAll,
  startAgent,
  startCoordinator,
  stopProcess,
  coordctl,
} from '../../deploy/lab/mesh.js';
import { hostEnv, hostIp } from '../../deploy/lab/plan.js';
import { ipHex, parseIp } from '../../common/ipv4.js';
import { summarize } from './stats.js';

const { values } = parseArgs({
  options: {
    sizes: { type: 'string', default: '2,4,8' },
    repeat: { type: 'string', default: '5' },
    insecure: { type: 'boolean', default: false },
  },
});
const extra = values.insecure ? ['--insecure'] : [];
const sizes = values.sizes!.split(',').map(Number);
const repeat = Number(values.repeat);
const maxN = Math.max(...sizes);
const dir = tempDir('gmv');
const up = await cli(BIN.lab, ['up', '--hosts', String(maxN), '--dir', dir], {}, 600_000);
if (up.exitCode !== 0) throw new Error(up.stderr);
const state = readState(dir)!;
const inHost = async (h: string, argv: string[], reject = true) => {
  const n = state.plan.nodes.find((x) => x.name === h)!;
  const r = await execa('nsenter', [`--net=/run/netns/${n.ns}`, ...argv], { env: hostEnv(dir, n), reject: false });
  if (reject && r.exitCode !== 0) throw new Error(`${argv.join(' ')}: ${r.stderr}`);
  return r;
};
const gre = (i: number) => `gre-${ipHex(parseIp(hostIp(i))!)}`;
const results: Record<string, unknown>[] = [];
try {
  await startCoordinator(dir, extra);
  for (const n of sizes) {
    const times: number[] = [];
    const tunnelTimes: number[] = [];
    const others = Array.from({ length: n - 1 }, (_, i) => `h${i + 1}`);
    const news = `h${n}`;
    await joinAll(dir, others, extra);
    for (let r = 0; r < repeat; r++) {
      await inHost(news, ['ovs-vsctl', '--if-exists', 'del-br', 'gremesh0']);
      fs.rmSync(agentStateDir(dir, news), { recursive: true, force: true });
      const t0 = performance.now();
      const argv = await join(dir, news);
      startAgent(dir, news, argv, extra);
      // every other host has a tunnel to the new one, and the new one has n-1
      for (;;) {
        const ports = await Promise.all(
          [...others, news].map(async (h) => (await inHost(h, ['ovs-vsctl', 'list-ports', 'gremesh0'], false)).stdout),
        );
        const ok =
          others.every((_, i) => ports[i]!.includes(gre(n))) && (ports[n - 1]!.match(/gre-/g) ?? []).length === n - 1;
        if (ok) break;
        await new Promise((res) => setTimeout(res, 5));
      }
      tunnelTimes.push(performance.now() - t0);
      // a ping from the new host to every other host's gateway (198.18.(63+i).1)
      await Promise.all(
        others.map(async (_, i) => {
          for (;;) {
            const p = await inHost(news, ['ping', '-c', '1', '-W', '0.2', `198.18.${64 + i}.1`], false);
            if (p.exitCode === 0) return;
          }
        }),
      );
      times.push(performance.now() - t0);
      await stopProcess(dir, news, 'agent');
      await coordctl(dir, ['leave', news]);
    }
    const s = summarize(times);
    const st = summarize(tunnelTimes);
    console.log(
      `${values.insecure ? 'insecure' : 'TLS'} N=${n}  join+agent start -> all tunnels: p50=${st.p50.toFixed(0)} ms p99=${st.p99.toFixed(0)} ms; + pings answered: p50=${s.p50.toFixed(0)} ms p99=${s.p99.toFixed(0)} ms (n=${repeat})`,
    );
    results.push({ hosts: n, tls: !values.insecure, tunnels: st, converged: s });
    for (const h of others) await stopProcess(dir, h, 'agent');
    for (const h of others) {
      await coordctl(dir, ['leave', h]);
      await inHost(h, ['ovs-vsctl', '--if-exists', 'del-br', 'gremesh0']);
      fs.rmSync(agentStateDir(dir, h), { recursive: true, force: true });
    }
  }
} finally {
  await cli(BIN.lab, ['down', '--dir', dir], {}, 600_000);
  fs.rmSync(dir, { recursive: true, force: true });
}
if (process.env.GREMESH_BENCH_JSON) fs.writeFileSync(process.env.GREMESH_BENCH_JSON, JSON.stringify(results, null, 2));
