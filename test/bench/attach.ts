// Benchmark: container start to first answered cross-host ping, gremesh side by side
// with the manual recipe (ovs-docker add-port --ipaddress --gateway --mtu on a bridge
// with a pre-built GRE tunnel), in the same lab, interleaved, timed the same way:
// T0 when `docker run -d --net=none` returns; T1 when a ping from inside the new
// container (probed from its namespace, not docker exec) to a container on the other
// host is first answered. Usage: node dist/test/bench/attach.js [--count 50]
import * as fs from 'node:fs';
import { parseArgs } from 'node:util';
import { execa } from 'execa';
import { BIN, cli, tempDir } from '../helpers/cli.js';
import { readState } from '../../deploy/lab/lab.js';
import { joinAll, startCoordinator } from '../../deploy/lab/mesh.js';
import { IMAGE, hostEnv, hostIp } from '../../deploy/lab/plan.js';
import { systemPath } from '../../common/exec.js';
import { summarize } from './stats.js';

const { values } = parseArgs({ options: { count: { type: 'string', default: '50' } } });
const count = Number(values.count);
const dir = tempDir('gma');
const up = await cli(BIN.lab, ['up', '--hosts', '2', '--dir', dir], {}, 600_000);
if (up.exitCode !== 0) throw new Error(up.stderr);
const state = readState(dir)!;
const inHost = async (h: string, argv: string[], reject = true) => {
  const n = state.plan.nodes.find((x) => x.name === h)!;
  const r = await execa('nsenter', [`--net=/run/netns/${n.ns}`, ...argv], {
    env: { PATH: systemPath(), ...hostEnv(dir, n) },
    reject,
  });
  return String(r.stdout ?? '').trim();
};
const docker = (h: string, a: string[]) => inHost(h, ['docker', ...a]);
/** probe from the container's namespace until one ping is answered (5 ms between tries) */
const probe = (pid: string, ip: string) =>
  execa(
    'nsenter',
    ['-t', pid, '-n', 'sh', '-c', `until ping -c 1 -W 0.1 -q ${ip} >/dev/null 2>&1; do sleep 0.005; done`],
    { env: { PATH: systemPath() }, timeout: 30_000 },
  );
const results: Record<string, unknown> = {};
try {
  // gremesh on both hosts, a target container on h2
  await startCoordinator(dir);
  await joinAll(dir, ['h1', 'h2']);
  await docker('h2', [
    'run',
    '-d',
    '--net=none',
    '--name',
    'gm-target',
    '--label',
    'gremesh.network=default',
    IMAGE,
    'sleep',
    'infinity',
  ]);
  // the manual recipe: its own bridge (normal switching) and a pre-built GRE tunnel
  for (const [h, peer] of [
    ['h1', hostIp(2)],
    ['h2', hostIp(1)],
  ] as const) {
    await inHost(h, [
      'ovs-vsctl',
      '--may-exist',
      'add-br',
      'br-man',
      '--',
      'set',
      'bridge',
      'br-man',
      'datapath_type=netdev',
      '--',
      '--may-exist',
      'add-port',
      'br-man',
      'gre-man',
      '--',
      'set',
      'interface',
      'gre-man',
      'type=gre',
      `options:remote_ip=${peer}`,
      'options:key=99',
    ]);
  }
  await docker('h2', ['run', '-d', '--net=none', '--name', 'man-target', IMAGE, 'sleep', 'infinity']);
  await inHost('h2', [
    'ovs-docker',
    'add-port',
    'br-man',
    'eth0',
    'man-target',
    '--ipaddress=198.19.0.2/24',
    '--gateway=198.19.0.1',
    '--mtu=1458',
  ]);
  const gmTarget = await (async () => {
    for (;;) {
      const out = await docker('h2', ['exec', 'gm-target', 'ip', '-4', '-o', 'addr', 'show', 'eth0']).catch(() => '');
      const m = /inet (\S+)\//.exec(out);
      if (m) return m[1]!;
      await new Promise((r) => setTimeout(r, 50));
    }
  })();
  const gm: number[] = [];
  const man: number[] = [];
  const one = async (kind: 'gremesh' | 'manual', i: number) => {
    const name = `${kind === 'gremesh' ? 'g' : 'm'}${i}`;
    const labels = kind === 'gremesh' ? ['--label', 'gremesh.network=default'] : [];
    await docker('h1', ['run', '-d', '--net=none', '--name', name, ...labels, IMAGE, 'sleep', 'infinity']);
    const t0 = performance.now();
    if (kind === 'manual') {
      await inHost('h1', [
        'ovs-docker',
        'add-port',
        'br-man',
        'eth0',
        name,
        `--ipaddress=198.19.0.${10 + (i % 200)}/24`,
        '--gateway=198.19.0.1',
        '--mtu=1458',
      ]);
    }
    const pid = await docker('h1', ['inspect', '-f', '{{.State.Pid}}', name]);
    await probe(pid, kind === 'gremesh' ? gmTarget : '198.19.0.2');
    const ms = performance.now() - t0;
    if (kind === 'manual') await inHost('h1', ['ovs-docker', 'del-port', 'br-man', 'eth0', name]);
    await docker('h1', ['rm', '-f', name]);
    return ms;
  };
  // warm both paths (the first packet over a fresh tunnel waits for address resolution)
  await one('gremesh', 999);
  await one('manual', 999);
  for (let i = 0; i < count; i++) {
    gm.push(await one('gremesh', i));
    man.push(await one('manual', i));
  }
  const g = summarize(gm);
  const m = summarize(man);
  console.log(`container start -> first cross-host ping answered (${count} containers each, interleaved):`);
  console.log(`  gremesh (label, agent attaches)          p50=${g.p50.toFixed(0)} ms  p99=${g.p99.toFixed(0)} ms`);
  console.log(`  manual recipe (ovs-docker add-port ...)   p50=${m.p50.toFixed(0)} ms  p99=${m.p99.toFixed(0)} ms`);
  Object.assign(results, { count, gremesh: g, manual: m });
} finally {
  await cli(BIN.lab, ['down', '--dir', dir], {}, 600_000);
  fs.rmSync(dir, { recursive: true, force: true });
}
if (process.env.GREMESH_BENCH_JSON) fs.writeFileSync(process.env.GREMESH_BENCH_JSON, JSON.stringify(results, null, 2));
