// Benchmark: TCP throughput container to container across two hosts over the GRE
// overlay (iperf3, 1 and 4 streams), against host to host over the underlay, in one run.
// Usage: node dist/test/bench/throughput.js [--seconds 5]
import * as fs from 'node:fs';
import { parseArgs } from 'node:util';
import { execa } from 'execa';
import { BIN, cli, tempDir } from '../helpers/cli.js';
import { readState } from '../../deploy/lab/lab.js';
import { joinAll, startCoordinator } from '../../deploy/lab/mesh.js';
import { IMAGE, hostEnv, hostIp } from '../../deploy/lab/plan.js';
import { systemPath } from '../../common/exec.js';

const { values } = parseArgs({ options: { seconds: { type: 'string', default: '5' } } });
const secs = values.seconds!;
const dir = tempDir('gmp');
const up = await cli(BIN.lab, ['up', '--hosts', '2', '--dir', dir], {}, 600_000);
if (up.exitCode !== 0) throw new Error(up.stderr);
const state = readState(dir)!;
const ns = (h: string) => state.plan.nodes.find((x) => x.name === h)!;
const inHost = async (h: string, argv: string[]) =>
  String(
    (
      await execa('nsenter', [`--net=/run/netns/${ns(h).ns}`, ...argv], {
        env: { PATH: systemPath(), ...hostEnv(dir, ns(h)) },
      })
    ).stdout,
  ).trim();
const results: Record<string, number> = {};
async function iperf(serverNs: string[], clientNs: string[], ip: string, streams: number): Promise<number> {
  const server = execa(serverNs[0]!, [...serverNs.slice(1), 'iperf3', '-s', '-1'], {
    env: { PATH: systemPath() },
    reject: false,
    timeout: 120_000,
  });
  await new Promise((r) => setTimeout(r, 700));
  // the server lives in a namespace `lab down` does not sweep (a container's): stop it ourselves on failure
  const c = await execa(
    clientNs[0]!,
    [...clientNs.slice(1), 'iperf3', '-c', ip, '-t', secs, '-P', String(streams), '-J'],
    { env: { PATH: systemPath() }, timeout: 120_000 },
  ).catch((e: Error) => {
    server.kill('SIGKILL');
    throw e;
  });
  await server;
  return (
    (JSON.parse(String(c.stdout)) as { end: { sum_received: { bits_per_second: number } } }).end.sum_received
      .bits_per_second / 1e9
  );
}
try {
  await startCoordinator(dir);
  await joinAll(dir, ['h1', 'h2']);
  for (const h of ['h1', 'h2'])
    await inHost(h, [
      'docker',
      'run',
      '-d',
      '--net=none',
      '--name',
      `t-${h}`,
      '--label',
      'gremesh.network=default',
      IMAGE,
      'sleep',
      'infinity',
    ]);
  const pid = async (h: string) => inHost(h, ['docker', 'inspect', '-f', '{{.State.Pid}}', `t-${h}`]);
  let ip2 = '';
  for (let i = 0; i < 100 && !ip2; i++) {
    const out = await inHost('h2', [
      'docker',
      'exec',
      't-h2',
      'sh',
      '-c',
      'ip -o link show eth0; ip -4 -o addr show eth0',
    ]).catch(() => '');
    ip2 = /[<,]UP[,>]/.test(out) ? (/inet (\S+)\//.exec(out)?.[1] ?? '') : '';
    if (!ip2) await new Promise((r) => setTimeout(r, 100));
  }
  const c1 = ['nsenter', '-t', await pid('h1'), '-n'];
  const c2 = ['nsenter', '-t', await pid('h2'), '-n'];
  await execa(c1[0]!, [...c1.slice(1), 'ping', '-c', '3', '-W', '1', ip2], { reject: false });
  const h1 = ['nsenter', `--net=/run/netns/${ns('h1').ns}`];
  const h2 = ['nsenter', `--net=/run/netns/${ns('h2').ns}`];
  for (const p of [1, 4]) {
    results[`underlay_${p}`] = await iperf(h2, h1, hostIp(2), p);
    results[`overlay_${p}`] = await iperf(c2, c1, ip2, p);
    console.log(
      `${p} stream${p > 1 ? 's' : ''}: host->host underlay ${results[`underlay_${p}`]!.toFixed(2)} Gbit/s, container->container over GRE ${results[`overlay_${p}`]!.toFixed(2)} Gbit/s (ratio ${(results[`overlay_${p}`]! / results[`underlay_${p}`]!).toFixed(2)})`,
    );
  }
} finally {
  await cli(BIN.lab, ['down', '--dir', dir], {}, 600_000);
  fs.rmSync(dir, { recursive: true, force: true });
}
if (process.env.GREMESH_BENCH_JSON) fs.writeFileSync(process.env.GREMESH_BENCH_JSON, JSON.stringify(results, null, 2));
