// Benchmark: IPv6 beside IPv4 on one 2-host lab, a dual-stack network, the same run:
// container start (docker run on h1) -> first ping across to h2's container answered, over
// IPv4 and over IPv6 (alternating, --count each), and TCP between the same two containers
// over IPv4 and over IPv6 (iperf3, 1 and 4 streams, median of --runs).
// Usage: node dist/test/bench/ipv6.js [--seconds 3] [--runs 3] [--count 5]
import * as fs from 'node:fs';
import { parseArgs } from 'node:util';
import { execa } from 'execa';
import { BIN, cli, tempDir } from '../helpers/cli.js';
import { readState } from '../../deploy/lab/lab.js';
import { coordctl, joinAll, startCoordinator } from '../../deploy/lab/mesh.js';
import { IMAGE, hostEnv } from '../../deploy/lab/plan.js';
import { systemPath } from '../../common/exec.js';
import { summarize } from './stats.js';

const { values } = parseArgs({
  options: {
    seconds: { type: 'string', default: '3' },
    runs: { type: 'string', default: '3' },
    count: { type: 'string', default: '5' },
  },
});
const runs = Number(values.runs);
const count = Number(values.count);
const dir = tempDir('gm6');
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor((xs.length - 1) / 2)]!;
const result: Record<string, unknown> = { date: new Date().toISOString() };
const spawned: { kill: (s?: NodeJS.Signals) => boolean }[] = [];

const up = await cli(BIN.lab, ['up', '--hosts', '2', '--dir', dir], {}, 600_000);
if (up.exitCode !== 0) throw new Error(up.stderr);
const state = readState(dir)!;
const node = (h: string) => state.plan.nodes.find((x) => x.name === h)!;
const docker = async (h: string, a: string[]) =>
  String(
    (
      await execa('nsenter', [`--net=/run/netns/${node(h).ns}`, 'docker', ...a], {
        env: { PATH: systemPath(), ...hostEnv(dir, node(h)) },
      })
    ).stdout,
  ).trim();
const pidOf = async (h: string, c: string) => Number(await docker(h, ['inspect', '-f', '{{.State.Pid}}', c]));
const inC = (pid: number, argv: string[], reject = true) =>
  execa('nsenter', ['-t', String(pid), '-n', ...argv], { env: { PATH: systemPath() }, reject, timeout: 120_000 });
const start = (h: string, name: string) =>
  docker(h, ['run', '-d', '--net=none', '--name', name, '-l', 'gremesh.network=six', IMAGE, 'sleep', 'infinity']);
/** the container's address of a family once its agent attached it */
async function addressOf(pid: number, family: 4 | 6): Promise<string> {
  const re = family === 4 ? /inet (\S+)\// : /inet6 (\S+)\/\d+ scope global/;
  for (let i = 0; i < 1000; i++) {
    const m = re.exec(String((await inC(pid, ['ip', `-${family}`, '-o', 'addr', 'show', 'eth0'], false)).stdout));
    if (m) return m[1]!;
    await new Promise((r) => setTimeout(r, 10));
  }
  throw new Error(`no IPv${family} address`);
}

async function iperf(server: number, client: number, ip: string, streams: number): Promise<number> {
  const srv = inC(server, ['iperf3', '-s', '-1'], false);
  spawned.push(srv);
  await new Promise((r) => setTimeout(r, 500));
  const c = await inC(client, ['iperf3', '-c', ip, '-t', values.seconds!, '-P', String(streams), '-J']);
  await srv;
  return (
    (JSON.parse(String(c.stdout)) as { end: { sum_received: { bits_per_second: number } } }).end.sum_received
      .bits_per_second / 1e9
  );
}

/** docker run on h1 -> its first ping to dst (h2's container) answered */
async function attachTime(name: string, dst: string, family: 4 | 6): Promise<number> {
  const t0 = performance.now();
  await start('h1', name);
  const pid = await pidOf('h1', name);
  await addressOf(pid, family);
  for (;;) {
    const r = await inC(pid, ['ping', `-${family}`, '-c', '1', '-W', '0.2', dst], false);
    if (r.exitCode === 0) break;
    if (performance.now() - t0 > 30_000) throw new Error(`${name}: no answer in 30 s`);
  }
  const ms = performance.now() - t0;
  await docker('h1', ['rm', '-f', name]);
  return ms;
}

try {
  await startCoordinator(dir);
  await joinAll(dir, ['h1', 'h2']);
  const args = ['network', 'create', 'six', '--cidr', '198.19.0.0/16', '--host-prefix-len', '24'];
  const made = await coordctl(dir, [...args, '--ipv6-cidr', 'fd00:19::/48']);
  if (made.exitCode !== 0) throw new Error(made.stderr);
  await start('h1', 't1');
  await start('h2', 't2');
  const [p1, p2] = [await pidOf('h1', 't1'), await pidOf('h2', 't2')];
  const dst = { 4: await addressOf(p2, 4), 6: await addressOf(p2, 6) };
  await addressOf(p1, 6);
  // warm: the first container of a network on a host pays for its flows and ND once
  await attachTime('warm', dst[4], 4);
  const attach: Record<4 | 6, number[]> = { 4: [], 6: [] };
  for (let i = 0; i < count; i++)
    for (const f of i % 2 ? ([6, 4] as const) : ([4, 6] as const))
      attach[f].push(await attachTime(`a${f}-${i}`, dst[f], f));
  const tcp: Record<string, number[]> = { v4s1: [], v6s1: [], v4s4: [], v6s4: [] };
  for (let r = 0; r < runs; r++)
    for (const s of [1, 4]) {
      tcp[`v4s${s}`]!.push(await iperf(p2, p1, dst[4], s));
      tcp[`v6s${s}`]!.push(await iperf(p2, p1, dst[6], s));
    }
  const a4 = summarize(attach[4]);
  const a6 = summarize(attach[6]);
  result.attach = { v4: a4, v6: a6, ratio: a6.p50 / a4.p50 };
  result.tcp = tcp;
  result.ratio = {
    streams1: median(tcp.v6s1!) / median(tcp.v4s1!),
    streams4: median(tcp.v6s4!) / median(tcp.v4s4!),
  };
  const g = (x: number[]) => median(x).toFixed(2);
  const r = result.ratio as { streams1: number; streams4: number };
  process.stdout.write(
    `container start -> first ping across answered, ${count} each, alternating: IPv4 p50 ${Math.round(a4.p50)} ms, IPv6 p50 ${Math.round(a6.p50)} ms (${(a6.p50 / a4.p50).toFixed(2)}x)\n` +
      `TCP h1 -> h2 between the same containers, median of ${runs}:\n` +
      `  1 stream  IPv4 ${g(tcp.v4s1!)} vs IPv6 ${g(tcp.v6s1!)} Gbit/s (${r.streams1.toFixed(2)}x)\n` +
      `  4 streams IPv4 ${g(tcp.v4s4!)} vs IPv6 ${g(tcp.v6s4!)} Gbit/s (${r.streams4.toFixed(2)}x)\n`,
  );
} finally {
  for (const p of spawned) p.kill('SIGKILL');
  await cli(BIN.lab, ['down', '--dir', dir], {}, 600_000);
  fs.rmSync(dir, { recursive: true, force: true });
}
if (process.env.GREMESH_BENCH_JSON) fs.writeFileSync(process.env.GREMESH_BENCH_JSON, JSON.stringify(result, null, 2));
