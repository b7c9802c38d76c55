// Policy inside a network, measured:
//   flows     computeFlows with 1000 endpoints and 0 or 100 rules, and 2000 endpoints with
//             100 rules: the flow count (linear in endpoints + groups + rules, never
//             endpoints x rules) and what a reconcile pass computes (flows and their delta
//             to the installed set), in process, no lab
//   enforce   3-host lab, isolation groups: `coordctl policy allow` returns -> the first
//             connection it allows answered on each host (probes already sending a SYN
//             every 2 ms from h1 to a server on h1, h2 and h3), --count rules one after another
//   tcp       iperf3 container to container h1 -> h2 on a network with no policy beside one
//             with isolation groups and 100 rules (the one iperf needs last), interleaved runs
// Usage: node dist/test/bench/policy.js [--count 30] [--seconds 3] [--runs 3]
import * as fs from 'node:fs';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { execa } from 'execa';
import { BIN, cli, tempDir } from '../helpers/cli.js';
import { readState } from '../../deploy/lab/lab.js';
import { coordctl, joinAll, startCoordinator } from '../../deploy/lab/mesh.js';
import { IMAGE, hostEnv } from '../../deploy/lab/plan.js';
import { systemPath } from '../../common/exec.js';
import { computeDesired, computeFlows } from '../../agent/bridge/desired.js';
import { gatewayPorts } from '../helpers/flow-fixtures.js';
import { flowDelta } from '../../agent/ovs/flows/flow.js';
import type { LocalPort, Snapshot } from '../../agent/model.js';
import type { PolicyRule } from '../../common/policy.js';
import { formatIp, macFromIp, parseIp } from '../../common/ipv4.js';
import { summarize } from './stats.js';
import { Reconciler } from '../../agent/bridge/reconciler.js';
import { containerIds } from '../../agent/ovs/ids.js';
import type { OvsOp } from '../../agent/ovs/ops.js';
import type { OvsState } from '../../agent/model.js';
import { silentLogger } from '../../common/log.js';
import { FakeOvsDriver, fakeLinks } from '../helpers/fakes.js';

const { values } = parseArgs({
  options: {
    count: { type: 'string', default: '30' },
    seconds: { type: 'string', default: '3' },
    runs: { type: 'string', default: '3' },
    only: { type: 'string', default: 'flows,enforce,tcp' },
  },
});
const count = Number(values.count);
const only = new Set(values.only!.split(','));
const PROBE = fileURLToPath(new URL('../helpers/tcp-probe.js', import.meta.url));
const result: Record<string, unknown> = {};
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor((xs.length - 1) / 2)]!;

// ------------------------------------------------------------------ flows (pure)

function policed(endpoints: number, rules: number, groups = 20): { s: Snapshot; locals: LocalPort[] } {
  const rs: PolicyRule[] = Array.from({ length: rules }, (_, i) => ({
    id: `r${i + 1}`,
    action: i % 10 === 0 ? 'deny' : 'allow',
    from: `g${i % groups}`,
    to: `g${(i * 7 + 1) % groups}`,
    proto: 'tcp',
    portMin: 1000 + i,
    portMax: 1000 + i,
  }));
  const peers = 49;
  const per = Math.floor(endpoints / (peers + 1));
  const ep = (p: number, i: number) => {
    const ip = parseIp('198.18.64.0')! + p * 256 + i + 2;
    return { ip: formatIp(ip), mac: macFromIp(ip), group: `g${(p * per + i) % groups}` };
  };
  const s: Snapshot = {
    revision: 1,
    host: 'h0',
    underlayIp: '198.18.1.1',
    networks: [
      { name: 'default', cidr: '198.18.64.0/18', hostPrefixLen: 24, greKey: 1, mtu: 0, isolation: 'groups', rules: rs },
    ],
    slices: [{ network: 'default', cidr: '198.18.64.0/24' }],
    peers: Array.from({ length: peers }, (_, p) => ({
      name: `h${p + 1}`,
      underlayIp: `198.18.1.${p + 2}`,
      slices: [],
      endpoints: Array.from({ length: per }, (_, i) => ({
        network: 'default',
        host: `h${p + 1}`,
        containerId: '',
        ...ep(p + 1, i),
      })),
    })),
  };
  const d = computeDesired(s, { bridge: 'gremesh0', datapath: 'netdev', underlayMtu: 1500 });
  const locals: LocalPort[] = [
    ...gatewayPorts(d),
    ...Array.from({ length: per }, (_, i) => ({
      port: `gm${i}`,
      network: 'default',
      gateway: false,
      containerId: `c${i}`,
      ...ep(0, i),
    })),
  ];
  return { s, locals };
}
/** a fake OVS that, like the real driver, hands out one state object until it changes (so a pass with nothing to do computes nothing) */
class SteadyOvs extends FakeOvsDriver {
  private cached: OvsState | undefined;
  override async observe() {
    return (this.cached ??= await super.observe());
  }
  override async apply(ops: OvsOp[]) {
    this.cached = undefined;
    return super.apply(ops);
  }
}

/** the real Reconciler at a fake OVS: a pass with nothing to do, and one after a rule is added */
async function passBench(endpoints: number, rules: number) {
  const { s, locals } = policed(endpoints, rules);
  const ovs = new SteadyOvs();
  const r = new Reconciler({
    ovs,
    links: fakeLinks,
    params: { bridge: 'gremesh0', datapath: 'netdev', underlayMtu: 1500 },
    log: silentLogger,
    resyncMs: 3_600_000,
    probeMs: 0,
  });
  r.setSnapshot(s);
  await r.pass();
  // the local containers' ports, as the attachment plugs them
  await ovs.apply(
    locals
      .filter((l) => !l.gateway)
      .map((l) => ({
        op: 'add-port' as const,
        bridge: 'gremesh0',
        port: l.port,
        iface: {
          externalIds: containerIds({
            containerId: l.containerId,
            network: l.network,
            ip: l.ip,
            mac: l.mac,
            pid: 1,
            name: l.port,
            group: l.group,
          }),
        },
      })),
  );
  await r.pass();
  const idle: number[] = [];
  for (let i = 0; i < 30; i++) idle.push((await r.pass())!.ms);
  const changed: number[] = [];
  let cur = s;
  for (let i = 0; i < 12; i++) {
    const net = cur.networks[0]!;
    const more: PolicyRule = {
      id: `x${i}`,
      action: 'allow',
      from: 'g1',
      to: 'g2',
      proto: 'udp',
      portMin: 3000 + i,
      portMax: 3000 + i,
    };
    cur = { ...cur, revision: cur.revision + 1, networks: [{ ...net, rules: [...(net.rules ?? []), more] }] };
    r.setSnapshot(cur);
    changed.push((await r.pass())!.ms);
  }
  r.stop();
  return { idle: summarize(idle.slice(5)), ruleAdded: summarize(changed.slice(2)) };
}

function flowsBench(): void {
  const measure = (endpoints: number, rules: number) => {
    const { s, locals } = policed(endpoints, rules);
    const d = computeDesired(s, { bridge: 'gremesh0', datapath: 'netdev', underlayMtu: 1500 });
    const tunnels = new Set(d.tunnels.map((t) => t.port));
    const installed = computeFlows(s, d, locals, tunnels);
    const ms: number[] = [];
    for (let i = 0; i < 30; i++) {
      const t0 = performance.now();
      const f = computeFlows(
        s,
        computeDesired(s, { bridge: 'gremesh0', datapath: 'netdev', underlayMtu: 1500 }),
        locals,
        tunnels,
      );
      flowDelta(installed, f);
      ms.push(performance.now() - t0);
    }
    return { flows: installed.length, passMs: summarize(ms.slice(5)) };
  };
  const none = measure(1000, 0);
  const hundred = measure(1000, 100);
  const twice = measure(2000, 100);
  const plainSnap = policed(1000, 0);
  plainSnap.s.networks[0]!.isolation = undefined;
  const d = computeDesired(plainSnap.s, { bridge: 'gremesh0', datapath: 'netdev', underlayMtu: 1500 });
  const plain = computeFlows(plainSnap.s, d, plainSnap.locals, new Set(d.tunnels.map((t) => t.port))).length;
  result.flows = {
    plain1000: plain,
    groups1000: none.flows,
    rules100: hundred.flows,
    endpoints2000: twice.flows,
    passMs: hundred.passMs,
  };
  console.log(
    `flows, 1000 endpoints on 50 hosts (20 local), 20 groups: no policy ${plain}; isolation groups without rules ${none.flows} (+${none.flows - plain}); ` +
      `+100 rules ${hundred.flows} (+${hundred.flows - none.flows}: one flow per single-port rule); 2000 endpoints + 100 rules ${twice.flows} ` +
      `(1000 more endpoints: +${twice.flows - hundred.flows}); ` +
      `computing a pass's flows and delta with 1000 endpoints and 100 rules p50 ${hundred.passMs.p50.toFixed(2)} ms, p99 ${hundred.passMs.p99.toFixed(2)} ms (isolation groups without rules p50 ${none.passMs.p50.toFixed(2)} ms)`,
  );
}

// ------------------------------------------------------------------ lab

const dir = tempDir('gmq');
const hosts = ['h1', 'h2', 'h3'];
const inHost = async (h: string, argv: string[]) => {
  const n = readState(dir)!.plan.nodes.find((x) => x.name === h)!;
  const r = await execa('nsenter', [`--net=/run/netns/${n.ns}`, ...argv], {
    env: { PATH: systemPath(), ...hostEnv(dir, n) },
  });
  return String(r.stdout).trim();
};
const docker = (h: string, a: string[]) => inHost(h, ['docker', ...a]);
const pidOf = async (h: string, c: string) => Number(await docker(h, ['inspect', '-f', '{{.State.Pid}}', c]));
const ctl = async (a: string[]) => {
  const r = await coordctl(dir, a);
  if (r.exitCode !== 0) throw new Error(`coordctl ${a.join(' ')}: ${r.stderr}`);
  return r.stdout;
};
/** `coordctl policy allow` of one TCP port on network pol (coordctl's output as it prints it) */
const allowTcp = (from: string, to: string, port: string, ...more: string[]) =>
  ctl(['policy', 'allow', '--network', 'pol', '--from', from, '--to', to, '--proto', 'tcp', '--port', port, ...more]);
const spawned: { kill: (s?: NodeJS.Signals) => boolean }[] = [];
const inC = (pid: number, argv: string[]) => {
  const p = execa('nsenter', ['-t', String(pid), '-n', ...argv], {
    env: { PATH: systemPath() },
    reject: false,
    timeout: 600_000,
  });
  spawned.push(p);
  return p;
};
async function addressOf(h: string, c: string): Promise<string> {
  for (let i = 0; i < 400; i++) {
    const r = await execa(
      'nsenter',
      ['-t', String(await pidOf(h, c)), '-n', 'ip', '-4', '-o', 'addr', 'show', 'eth0'],
      { reject: false },
    );
    const m = /inet (\S+)\//.exec(String(r.stdout));
    if (m) return m[1]!;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`${c} got no address`);
}
const run = (h: string, name: string, network: string, group?: string) =>
  docker(h, [
    'run',
    '-d',
    '--net=none',
    '--name',
    name,
    '-l',
    `gremesh.network=${network}`,
    ...(group ? ['-l', `gremesh.group=${group}`] : []),
    IMAGE,
    'sleep',
    'infinity',
  ]);

async function enforceBench(cliPid: number, servers: { host: string; ip: string }[]): Promise<void> {
  const perHost: Record<string, number[]> = Object.fromEntries(servers.map((s) => [s.host, []]));
  const fromStart: number[] = [];
  const afterReturn: number[] = [];
  /** when the coordinator committed the rule: its log line (pino's time, the same clock) */
  const committedAt = (id: string): number => {
    for (const l of fs.readFileSync(`${dir}/ctl/coordinator.log`, 'utf8').split('\n').reverse()) {
      if (!l.includes('"policy rule added"') || !l.includes(`"rule":"${id}"`)) continue;
      return (JSON.parse(l) as { time: number }).time;
    }
    throw new Error(`rule ${id} is not in the coordinator's log`);
  };
  for (let i = 0; i < count; i++) {
    const port = 7000 + i;
    const probes = servers.map((s) => {
      const p = inC(cliPid, [
        process.execPath,
        PROBE,
        'until',
        s.ip,
        String(port),
        '--every',
        '2',
        '--timeout',
        '10000',
      ]);
      let buf = '';
      let onReady: () => void = () => {};
      const ready = new Promise<void>((r) => (onReady = r));
      p.stdout!.on('data', (d: Buffer) => {
        buf += String(d);
        if (buf.includes('"ready"')) onReady();
      });
      return { host: s.host, ready, done: p.then(() => buf) };
    });
    await Promise.all(probes.map((p) => p.ready));
    await new Promise((r) => setTimeout(r, 50));
    const t0 = Date.now();
    const rule = JSON.parse(await allowTcp('cli', 'srv', String(port), '-o', 'json')) as { id: string };
    const t1 = Date.now();
    const committed = committedAt(rule.id);
    for (const p of probes) {
      const out = await p.done;
      const at = /"at":(\d+)/.exec(out);
      if (!at) throw new Error(`cycle ${i}: ${p.host} never let port ${port} through`);
      perHost[p.host]!.push(Number(at[1]) - committed);
      afterReturn.push(Number(at[1]) - t1);
      fromStart.push(Number(at[1]) - t0);
    }
  }
  const all = Object.values(perHost).flat();
  const sum = summarize(all);
  result.enforce = {
    count,
    perHost: Object.fromEntries(Object.entries(perHost).map(([h, xs]) => [h, summarize(xs)])),
    all: sum,
    fromCallStart: summarize(fromStart),
    afterReturn: summarize(afterReturn),
  };
  console.log(
    `rule committed (the coordinator's log line) -> the first connection it allows answered, ${count} rules x 3 hosts: p50 ${sum.p50} ms, p99 ${sum.p99} ms, max ${sum.max} ms ` +
      `(${Object.entries(perHost)
        .map(([h, xs]) => `${h} p99 ${summarize(xs).p99}`)
        .join(
          ', ',
        )}); after coordctl returned p50 ${summarize(afterReturn).p50} ms (negative: before its process ended); from the call's start (coordctl's own start included) p50 ${summarize(fromStart).p50} ms`,
  );
}

async function iperf(server: number, client: number, ip: string, streams: number): Promise<number> {
  const srv = inC(server, ['iperf3', '-s', '-1']);
  await new Promise((r) => setTimeout(r, 500));
  const c = await execa(
    'nsenter',
    ['-t', String(client), '-n', 'iperf3', '-c', ip, '-t', values.seconds!, '-P', String(streams), '-J'],
    {
      env: { PATH: systemPath() },
      timeout: 120_000,
    },
  );
  await srv;
  return (
    (JSON.parse(String(c.stdout)) as { end: { sum_received: { bits_per_second: number } } }).end.sum_received
      .bits_per_second / 1e9
  );
}

async function tcpBench(pairs: { plain: [number, number, string]; policed: [number, number, string] }): Promise<void> {
  const ruleCount = JSON.parse(await ctl(['policy', 'list', '--network', 'pol', '-o', 'json']))[0].rules
    .length as number;
  for (let i = ruleCount; i < 99; i++) await allowTcp(`f${i % 10}`, `t${i % 7}`, String(20000 + i));
  await allowTcp('cli', 'srv', '5201');
  const rules = JSON.parse(await ctl(['policy', 'list', '--network', 'pol', '-o', 'json']))[0].rules.length as number;
  await new Promise((r) => setTimeout(r, 500));
  const out: Record<string, unknown> = { rules };
  for (const p of [1, 4]) {
    const got = { plain: [] as number[], policed: [] as number[] };
    for (let r = 0; r < Number(values.runs); r++)
      for (const k of ['plain', 'policed'] as const) got[k].push(await iperf(pairs[k][1], pairs[k][0], pairs[k][2], p));
    out[`streams${p}`] = { plain: got.plain, policed: got.policed, ratio: median(got.policed) / median(got.plain) };
    console.log(
      `TCP h1 -> h2, ${p} stream${p > 1 ? 's' : ''}, median of ${values.runs} interleaved ${values.seconds} s runs: no policy ${median(got.plain).toFixed(2)} Gbit/s (${got.plain.map((x) => x.toFixed(2)).join(', ')}); ` +
        `isolation groups + ${rules} rules ${median(got.policed).toFixed(2)} Gbit/s (${got.policed.map((x) => x.toFixed(2)).join(', ')}); ratio ${(median(got.policed) / median(got.plain)).toFixed(2)}`,
    );
  }
  result.tcp = out;
}

if (only.has('flows')) {
  flowsBench();
  const p = await passBench(1000, 100);
  const plain = await passBench(1000, 0);
  result.pass = { rules100: p, rules0: plain };
  console.log(
    `reconcile pass (the real Reconciler at a fake OVS; 1000 endpoints, 100 rules): nothing to do p50 ${p.idle.p50.toFixed(2)} / p99 ${p.idle.p99.toFixed(2)} ms; ` +
      `after a rule is added p50 ${p.ruleAdded.p50.toFixed(2)} / p99 ${p.ruleAdded.p99.toFixed(2)} ms (isolation groups, no rules: nothing to do p50 ${plain.idle.p50.toFixed(2)} ms, after a rule p50 ${plain.ruleAdded.p50.toFixed(2)} ms)`,
  );
}
if (only.has('enforce') || only.has('tcp')) {
  const up = await cli(BIN.lab, ['up', '--hosts', '3', '--dir', dir], {}, 600_000);
  if (up.exitCode !== 0) throw new Error(up.stderr);
  try {
    await startCoordinator(dir);
    await joinAll(dir, hosts);
    await ctl([
      'network',
      'create',
      'pol',
      '--cidr',
      '198.18.128.0/18',
      '--host-prefix-len',
      '24',
      '--isolation',
      'groups',
    ]);
    await Promise.all([
      run('h1', 'cli', 'pol', 'cli'),
      ...hosts.map((h) => run(h, `srv-${h}`, 'pol', 'srv')),
      run('h1', 't1', 'default'),
      run('h2', 't2', 'default'),
    ]);
    const cliPid = await pidOf('h1', 'cli');
    const servers = await Promise.all(
      hosts.map(async (h) => ({ host: h, ip: await addressOf(h, `srv-${h}`), pid: await pidOf(h, `srv-${h}`) })),
    );
    await addressOf('h1', 'cli');
    const ports = Array.from({ length: count }, (_, i) => String(7000 + i));
    for (const s of servers) void inC(s.pid, [process.execPath, PROBE, 'serve', ...ports]);
    await new Promise((r) => setTimeout(r, 1000));
    if (only.has('enforce')) await enforceBench(cliPid, servers);
    if (only.has('tcp')) {
      const t2 = await pidOf('h2', 't2');
      await tcpBench({
        plain: [await pidOf('h1', 't1'), t2, await addressOf('h2', 't2')],
        policed: [cliPid, servers[1]!.pid, servers[1]!.ip],
      });
    }
  } finally {
    for (const p of spawned) p.kill('SIGKILL');
    await cli(BIN.lab, ['down', '--dir', dir], {}, 600_000);
    fs.rmSync(dir, { recursive: true, force: true });
  }
}
if (process.env.GREMESH_BENCH_JSON) fs.writeFileSync(process.env.GREMESH_BENCH_JSON, JSON.stringify(result, null, 2));
