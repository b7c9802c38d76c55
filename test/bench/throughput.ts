// Benchmark: TCP throughput container to container across two hosts over the GRE
// overlay (iperf3, 1 and 4 streams), against plain OVS GRE between the same two hosts (a
// bridge with one GRE port each and two containers plugged by ovs-docker at the same MTU
// and offload settings: the datapath's ceiling) and host to host over the underlay,
// interleaved, several runs; the ratio is the median's.
// Usage: node dist/test/bench/throughput.js [--seconds 5] [--runs 3]
import * as fs from 'node:fs';
import { parseArgs } from 'node:util';
import { execa } from 'execa';
import { BIN, cli, tempDir } from '../helpers/cli.js';
import { readState } from '../../deploy/lab/lab.js';
import { joinAll, startCoordinator } from '../../deploy/lab/mesh.js';
import { IMAGE, hostEnv, hostIp } from '../../deploy/lab/plan.js';
import { systemPath } from '../../common/exec.js';

const { values } = parseArgs({
  options: { seconds: { type: 'string', default: '5' }, runs: { type: 'string', default: '3' } },
});
const secs = values.seconds!;
const runs = Number(values.runs);
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
const results: Record<string, number | number[]> = {};
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor((xs.length - 1) / 2)]!;
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
  // plain OVS GRE: its own bridge (normal switching), one GRE port per host, a container on
  // each plugged by ovs-docker at the overlay's MTU, checksum offload off as gremesh does
  const plain: Record<string, string[]> = {};
  for (const [h, peer, i] of [
    ['h1', hostIp(2), 1],
    ['h2', hostIp(1), 2],
  ] as const) {
    await inHost(h, [
      'ovs-vsctl',
      '--may-exist',
      'add-br',
      'br-plain',
      '--',
      'set',
      'bridge',
      'br-plain',
      'datapath_type=netdev',
      '--',
      '--may-exist',
      'add-port',
      'br-plain',
      'gre-plain',
      '--',
      'set',
      'interface',
      'gre-plain',
      'type=gre',
      `options:remote_ip=${peer}`,
      'options:key=77',
    ]);
    await inHost(h, ['docker', 'run', '-d', '--net=none', '--name', `p-${h}`, IMAGE, 'sleep', 'infinity']);
    await inHost(h, [
      'ovs-docker',
      'add-port',
      'br-plain',
      'eth0',
      `p-${h}`,
      `--ipaddress=198.19.2.${i}/24`,
      '--mtu=1458',
    ]);
    const port = await inHost(h, [
      'ovs-vsctl',
      '--bare',
      '--columns=name',
      'find',
      'interface',
      `external_ids:container_id=p-${h}`,
    ]);
    await inHost(h, ['ethtool', '-K', port, 'tx', 'off']);
    const ppid = await inHost(h, ['docker', 'inspect', '-f', '{{.State.Pid}}', `p-${h}`]);
    plain[h] = ['nsenter', '-t', ppid, '-n'];
    await execa('nsenter', ['-t', ppid, '-n', 'ethtool', '-K', 'eth0', 'tx', 'off'], { env: { PATH: systemPath() } });
  }
  await execa(plain.h1![0]!, [...plain.h1!.slice(1), 'ping', '-c', '3', '-W', '1', '198.19.2.2'], { reject: false });
  const kinds = {
    underlay: [h2, h1, hostIp(2)],
    plain: [plain.h2!, plain.h1!, '198.19.2.2'],
    overlay: [c2, c1, ip2],
  } as const;
  for (const p of [1, 4]) {
    const got: Record<string, number[]> = { underlay: [], plain: [], overlay: [] };
    for (let r = 0; r < runs; r++)
      for (const [k, [srv, cl, ip]] of Object.entries(kinds)) got[k]!.push(await iperf([...srv], [...cl], ip, p));
    for (const k of Object.keys(got)) {
      results[`${k}_${p}`] = median(got[k]!);
      results[`${k}_${p}_runs`] = got[k]!;
    }
    const f = (k: string) => `${median(got[k]!).toFixed(2)} Gbit/s (${got[k]!.map((x) => x.toFixed(2)).join(', ')})`;
    console.log(
      `${p} stream${p > 1 ? 's' : ''}, median of ${runs} interleaved runs: gremesh container->container ${f('overlay')}; ` +
        `plain OVS GRE ${f('plain')}; host->host underlay ${f('underlay')}; ` +
        `gremesh / plain GRE ${(median(got.overlay!) / median(got.plain!)).toFixed(2)}`,
    );
  }
} finally {
  await cli(BIN.lab, ['down', '--dir', dir], {}, 600_000);
  fs.rmSync(dir, { recursive: true, force: true });
}
if (process.env.GREMESH_BENCH_JSON) fs.writeFileSync(process.env.GREMESH_BENCH_JSON, JSON.stringify(results, null, 2));
