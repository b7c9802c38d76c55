// Benchmark: container start to first answered cross-host ping, gremesh side by side
// with the manual recipe (ovs-docker add-port --ipaddress --gateway --mtu on a bridge
// with a pre-built GRE tunnel) and with OVN (a logical switch port, the veth plugged by
// ovs-docker and bound by iface-id), in the same lab, interleaved, timed the same way:
// T0 just before `docker run` is called (with the plugin, attaching is part of `docker
// run --network` itself; the others attach after it returns); T1 when a ping from inside the new
// container (probed from its namespace, not docker exec) to a container on the other
// host is first answered.
// Then: gremesh's attach phases (from the agent's log), the same with 100 containers
// already running on the host, and the first container on a fresh tunnel (a host that
// has just joined: its container is started as soon as its GRE port exists).
// Usage: node dist/test/bench/attach.js [--count 50] [--busy 100] [--fresh 4]
import * as fs from 'node:fs';
import { parseArgs } from 'node:util';
import { execa } from 'execa';
import { BIN, cli, tempDir } from '../helpers/cli.js';
import { readState } from '../../deploy/lab/lab.js';
import { agentLog, join, joinAll, startAgent, startCoordinator } from '../../deploy/lab/mesh.js';
import { IMAGE, hostEnv, hostIp, hostPaths } from '../../deploy/lab/plan.js';
import { createRunner, systemPath } from '../../common/exec.js';
import { OvsdbClient } from '../../agent/ovs/ovsdb/client.js';
import { toMap } from '../../agent/ovs/ovsdb/rows.js';
import { silentLogger } from '../../common/log.js';
import { summarize, type Summary } from './stats.js';
import { configureChassis, ovnNbctl, startOvnCentral, startOvnController } from './ovn.js';

const { values } = parseArgs({
  options: {
    count: { type: 'string', default: '50' },
    busy: { type: 'string', default: '100' },
    fresh: { type: 'string', default: '4' },
  },
});
const count = Number(values.count);
const busy = Number(values.busy);
const fresh = Number(values.fresh);
const dir = tempDir('gma');
const up = await cli(BIN.lab, ['up', '--hosts', String(2 + fresh), '--dir', dir], {}, 600_000);
if (up.exitCode !== 0) throw new Error(up.stderr);
const state = readState(dir)!;
const run = createRunner({ timeoutMs: 60_000 });
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
const addressOf = async (h: string, name: string) => {
  for (;;) {
    const out = await docker(h, ['exec', name, 'ip', '-4', '-o', 'addr', 'show', 'eth0']).catch(() => '');
    const m = /inet (\S+)\//.exec(out);
    if (m) return m[1]!;
    await new Promise((r) => setTimeout(r, 50));
  }
};
const OVN_MTU = '1442'; // geneve: 58 bytes of headers on a 1500-byte underlay
const ovnMac = (i: number) =>
  `0a:00:00:01:${((i >> 8) & 0xff).toString(16).padStart(2, '0')}:${(i & 0xff).toString(16).padStart(2, '0')}`;
/** the veth ovs-docker made for a container (its name is random) */
const ovsDockerPort = (h: string, name: string) =>
  inHost(h, ['ovs-vsctl', '--bare', '--columns=name', 'find', 'interface', `external_ids:container_id=${name}`]);
/** 'docker': `docker run -d --net=none` and its pid alone, the part every other kind pays too */
type Kind = 'gremesh' | 'network' | 'manual' | 'ovn' | 'docker';
const KINDS: Kind[] = ['gremesh', 'network', 'manual', 'ovn', 'docker'];
const PHASES = ['inspect', 'veth', 'port', 'flows', 'up'] as const;
interface Attached {
  container: string;
  time: number;
  phasesMs: Record<(typeof PHASES)[number], number>;
}
const attachedLines = (h: string) =>
  fs
    .readFileSync(agentLog(dir, h), 'utf8')
    .split('\n')
    .filter((l) => l.includes('"container attached"'))
    .map((l) => JSON.parse(l) as Attached);

const results: Record<string, unknown> = {};
try {
  // gremesh on both hosts, a target container on h2
  await startCoordinator(dir);
  // GREMESH_BENCH_AGENT_FLAGS="--log-level debug" (with GREMESH_BENCH_LOGS=DIR to keep the logs)
  await joinAll(dir, ['h1', 'h2'], (process.env.GREMESH_BENCH_AGENT_FLAGS ?? '').split(' ').filter(Boolean));
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
  // OVN: central in ctl, a chassis on h1 and h2, one logical switch, a target port on h2
  await startOvnCentral(dir, state, run);
  for (const h of ['h1', 'h2']) {
    await configureChassis(dir, state, run, h);
    await startOvnController(dir, state, run, h);
  }
  await ovnNbctl(dir, run, ['ls-add', 'ls0']);
  const ovnPlug = async (h: string, name: string, i: number) => {
    const ip = `198.19.1.${i}`;
    await ovnNbctl(dir, run, ['lsp-add', 'ls0', name, '--', 'lsp-set-addresses', name, `${ovnMac(i)} ${ip}`]);
    await inHost(h, [
      'ovs-docker',
      'add-port',
      'br-int',
      'eth0',
      name,
      `--ipaddress=${ip}/24`,
      `--macaddress=${ovnMac(i)}`,
      `--mtu=${OVN_MTU}`,
    ]);
    await inHost(h, ['ovs-vsctl', 'set', 'interface', await ovsDockerPort(h, name), `external_ids:iface-id=${name}`]);
  };
  await docker('h2', ['run', '-d', '--net=none', '--name', 'ovn-target', IMAGE, 'sleep', 'infinity']);
  await ovnPlug('h2', 'ovn-target', 2);
  const gmTarget = await addressOf('h2', 'gm-target');

  const startedAt = new Map<string, number>();
  /** a slow sample: was the agent late (attached long after T0) or the first packets? */
  const explain = (name: string, ms: number) => {
    const l = attachedLines('h1').find((x) => x.container === name);
    const t0 = startedAt.get(name)!;
    return l
      ? `slow: ${name} ${ms.toFixed(0)} ms; attached ${l.time - t0} ms after T0 (phases ${JSON.stringify(l.phasesMs)}), first reply ${(ms - (l.time - t0)).toFixed(0)} ms after that`
      : `slow: ${name} ${ms.toFixed(0)} ms, not in the agent's log`;
  };
  const one = async (kind: Kind, i: number) => {
    const name = `${kind[0]}${i}`;
    const how =
      kind === 'gremesh'
        ? ['--net=none', '--label', 'gremesh.network=default']
        : kind === 'network'
          ? ['--network', 'gremesh-default']
          : ['--net=none'];
    const t0 = performance.now();
    await docker('h1', ['run', '-d', ...how, '--name', name, IMAGE, 'sleep', 'infinity']);
    startedAt.set(name, Date.now());
    if (kind === 'manual')
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
    if (kind === 'ovn') await ovnPlug('h1', name, 10 + (i % 200));
    const pid = await docker('h1', ['inspect', '-f', '{{.State.Pid}}', name]);
    if (kind !== 'docker')
      await probe(pid, kind === 'manual' ? '198.19.0.2' : kind === 'ovn' ? '198.19.1.2' : gmTarget);
    const ms = performance.now() - t0;
    if (kind === 'manual') await inHost('h1', ['ovs-docker', 'del-port', 'br-man', 'eth0', name]);
    if (kind === 'ovn') {
      await inHost('h1', ['ovs-docker', 'del-port', 'br-int', 'eth0', name]);
      await ovnNbctl(dir, run, ['lsp-del', name]);
    }
    await docker('h1', ['rm', '-f', name]);
    return ms;
  };
  const phasesOf = (names: Set<string>) => {
    const lines = attachedLines('h1').filter((l) => names.has(l.container));
    return Object.fromEntries(PHASES.map((p) => [p, summarize(lines.map((l) => l.phasesMs[p])).p50])) as Record<
      (typeof PHASES)[number],
      number
    >;
  };
  // warm every path (the first packet over a fresh tunnel waits for address resolution)
  for (const k of KINDS) await one(k, 999);
  const samples: Record<Kind, number[]> = { gremesh: [], network: [], manual: [], ovn: [], docker: [] };
  for (let i = 0; i < count; i++) for (const k of KINDS) samples[k].push(await one(k, i));
  const s = Object.fromEntries(Object.entries(samples).map(([k, v]) => [k, summarize(v)])) as Record<Kind, Summary>;
  const phases = phasesOf(new Set(Array.from({ length: count }, (_, i) => `g${i}`)));
  // the slow ones: where did the time go?
  for (const [i, ms] of samples.gremesh.entries()) if (ms > 3 * s.gremesh.p50) console.log(`  ${explain(`g${i}`, ms)}`);
  const row = (label: string, x: Summary) =>
    `  ${label.padEnd(62)} p50=${x.p50.toFixed(0).padStart(4)} ms  p99=${x.p99.toFixed(0).padStart(4)} ms`;
  const fmtPhases = (p: Record<string, number>) =>
    PHASES.map((k) => `${k} ${p[k]!.toFixed(0)}`).join(', ') + ' ms (p50 each)';
  console.log(`container start -> first cross-host ping answered (${count} containers each, interleaved):`);
  console.log(row('gremesh (docker run --network, the plugin attaches)', s.network));
  console.log(row('gremesh (label, agent attaches)', s.gremesh));
  console.log(row('manual recipe (ovs-docker add-port ..., pre-built GRE)', s.manual));
  console.log(row('OVN (lsp-add, ovs-docker add-port, iface-id)', s.ovn));
  console.log(row('docker run --net=none alone (no network: what every row above pays)', s.docker));
  console.log(
    `  gremesh / OVN p50: ${(s.gremesh.p50 / s.ovn.p50).toFixed(2)} (plugin ${(s.network.p50 / s.ovn.p50).toFixed(2)})`,
  );
  // what each tool adds to a bare docker run: the part a network can make faster
  const beyond = (x: Summary) => Math.max(0, x.p50 - s.docker.p50);
  console.log(
    `  beyond docker run alone, p50: gremesh label ${beyond(s.gremesh).toFixed(0)} ms, plugin ${beyond(s.network).toFixed(0)} ms, ` +
      `recipe ${beyond(s.manual).toFixed(0)} ms, OVN ${beyond(s.ovn).toFixed(0)} ms; gremesh / OVN ${(beyond(s.gremesh) / beyond(s.ovn)).toFixed(2)} (plugin ${(beyond(s.network) / beyond(s.ovn)).toFixed(2)})`,
  );
  console.log(`  gremesh phases, Docker's start event -> ...: ${fmtPhases(phases)}`);
  Object.assign(results, {
    count,
    network: s.network,
    gremesh: s.gremesh,
    manual: s.manual,
    ovn: s.ovn,
    dockerAlone: s.docker,
    phases,
  });

  // ---- the same with `busy` labelled containers already running on h1
  if (busy > 0) {
    process.stdout.write(`starting ${busy} containers on h1 ...`);
    for (let i = 0; i < busy; i++)
      await docker('h1', [
        'run',
        '-d',
        '--net=none',
        '--name',
        `busy${i}`,
        '--label',
        'gremesh.network=default',
        IMAGE,
        'sleep',
        'infinity',
      ]);
    // every one attached before measuring
    for (;;) {
      const n = new Set(attachedLines('h1').map((l) => l.container)).size;
      if ([...Array(busy).keys()].every((i) => attachedLines('h1').some((l) => l.container === `busy${i}`))) break;
      process.stdout.write(` ${n}`);
      await new Promise((r) => setTimeout(r, 1000));
    }
    process.stdout.write(' attached\n');
    const withBusy: number[] = [];
    const manualBusy: number[] = [];
    const n2 = Math.min(count, 20);
    for (let i = 0; i < n2; i++) {
      withBusy.push(await one('gremesh', 1000 + i));
      manualBusy.push(await one('manual', 1000 + i));
    }
    for (const [i, ms] of withBusy.entries())
      if (ms > 3 * s.gremesh.p50) console.log(`  ${explain(`g${1000 + i}`, ms)}`);
    const b = summarize(withBusy);
    const mb = summarize(manualBusy);
    const bp = phasesOf(new Set(Array.from({ length: n2 }, (_, i) => `g${1000 + i}`)));
    const diff = (x: number, y: number) => `${x - y >= 0 ? '+' : ''}${(x - y).toFixed(0)} ms`;
    console.log(
      row(`gremesh with ${busy} containers running on the host (${n2})`, b) +
        `  (vs ${s.gremesh.p50.toFixed(0)} ms with none: ${diff(b.p50, s.gremesh.p50)})`,
    );
    console.log(
      row(`manual recipe, same host, same time (${n2})`, mb) +
        `  (vs ${s.manual.p50.toFixed(0)} ms with none: ${diff(mb.p50, s.manual.p50)})`,
    );
    console.log(`  gremesh phases: ${fmtPhases(bp)}`);
    Object.assign(results, { busy, withBusy: b, manualWithBusy: mb, withBusyPhases: bp });
    for (let i = 0; i < busy; i++) await docker('h1', ['rm', '-f', `busy${i}`]);
  }

  // ---- the first container on a fresh tunnel: h3.. join one at a time; each starts a
  // container the moment its GRE port to h2 exists in its OVSDB
  if (fresh > 0) {
    const firsts: number[] = [];
    for (let k = 3; k < 3 + fresh; k++) {
      const h = `h${k}`;
      const mon = new OvsdbClient({
        target: `unix:${hostPaths(dir, h).dbSock}`,
        tables: { Interface: ['name', 'type', 'options'] },
        log: silentLogger,
      });
      const hasTunnel = () =>
        mon.rows('Interface').some((r) => r.type === 'gre' && toMap(r.options as never).remote_ip === hostIp(2));
      mon.start();
      const args = await join(dir, h);
      startAgent(dir, h, args);
      const end = Date.now() + 60_000;
      while (!hasTunnel()) {
        if (Date.now() > end) throw new Error(`${h}: no tunnel to h2`);
        await new Promise((r) => setTimeout(r, 2));
      }
      mon.stop();
      await docker(h, [
        'run',
        '-d',
        '--net=none',
        '--name',
        `f${k}`,
        '--label',
        'gremesh.network=default',
        IMAGE,
        'sleep',
        'infinity',
      ]);
      const t0 = performance.now();
      const pid = await docker(h, ['inspect', '-f', '{{.State.Pid}}', `f${k}`]);
      await probe(pid, gmTarget);
      firsts.push(performance.now() - t0);
    }
    const f = summarize(firsts);
    console.log(
      row(`gremesh, first container on a fresh tunnel (${fresh} new hosts)`, f) +
        `  samples: ${firsts.map((x) => x.toFixed(0)).join(', ')} ms`,
    );
    Object.assign(results, { fresh: f, freshSamples: firsts });
  }
} finally {
  const keep = process.env.GREMESH_BENCH_LOGS;
  if (keep) {
    fs.mkdirSync(keep, { recursive: true });
    for (const h of ['h1', 'h2']) fs.copyFileSync(agentLog(dir, h), `${keep}/${h}-agent.log`);
  }
  await cli(BIN.lab, ['down', '--dir', dir], {}, 600_000);
  fs.rmSync(dir, { recursive: true, force: true });
}
if (process.env.GREMESH_BENCH_JSON) fs.writeFileSync(process.env.GREMESH_BENCH_JSON, JSON.stringify(results, null, 2));
process.exit(0);
