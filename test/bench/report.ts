// Runs every benchmark of the project and writes docs/BENCHMARKS.md (tables, the
// machine it ran on, the command behind each figure).
// Usage: node dist/test/bench/report.js [--quick]
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { parseArgs } from 'node:util';
import { execa } from 'execa';
import { ROOT } from '../helpers/cli.js';
import type { SoakCase } from './soak.js';

const { values } = parseArgs({ options: { quick: { type: 'boolean', default: false }, only: { type: 'string' } } });
// --only a,b: run just those and merge into the results of the last full run (docs/bench-results.json)
const only = values.only?.split(',');
const q = values.quick;
const benches: { name: string; script: string; args: string[] }[] = [
  { name: 'lab', script: 'lab-updown.js', args: ['--repeat', q ? '1' : '3'] },
  { name: 'fanout', script: 'fanout.js', args: ['--repeat', q ? '5' : '20'] },
  { name: 'fanoutTls', script: 'fanout.js', args: ['--repeat', q ? '5' : '20', '--tls'] },
  {
    name: 'fanoutEtcd',
    script: 'fanout.js',
    args: ['--repeat', q ? '5' : '20', '--store', 'both', '--sizes', '100,1000'],
  },
  { name: 'failover', script: 'failover.js', args: ['--agents', '100', '--repeat', q ? '1' : '3'] },
  { name: 'converge', script: 'converge.js', args: ['--repeat', q ? '2' : '5'] },
  { name: 'convergeInsecure', script: 'converge.js', args: ['--repeat', q ? '2' : '5', '--insecure'] },
  { name: 'joins', script: 'joins.js', args: ['--count', '100'] },
  { name: 'startup', script: 'startup.js', args: ['--repeat', q ? '5' : '15'] },
  { name: 'join', script: 'join.js', args: ['--hosts', '8'] },
  { name: 'idle', script: 'idle.js', args: ['--seconds', q ? '10' : '30'] },
  { name: 'reconcile', script: 'reconcile.js', args: ['--repeat', q ? '5' : '20'] },
  { name: 'attach', script: 'attach.js', args: ['--count', q ? '10' : '50'] },
  { name: 'dns', script: 'dns.js', args: ['--count', q ? '10' : '30'] },
  { name: 'policy', script: 'policy.js', args: ['--count', q ? '10' : '30', '--seconds', '3', '--runs', '3'] },
  { name: 'throughput', script: 'throughput.js', args: ['--seconds', q ? '3' : '5'] },
  { name: 'encryption', script: 'encryption.js', args: ['--seconds', '3', '--runs', '3', '--count', q ? '3' : '5'] },
  { name: 'ipv6', script: 'ipv6.js', args: ['--seconds', '3', '--runs', '3', '--count', q ? '3' : '5'] },
  // the fault suite at full length (`make soak` runs only this one)
  { name: 'soak', script: 'soak.js', args: [] },
];
const resultsFile = path.join(ROOT, 'docs/bench-results.json');
// eslint-disable-next-line @typescript-eslint/no-explicit-any -- each benchmark writes its own JSON shape; the report reads them by name
const out: Record<string, any> =
  only && fs.existsSync(resultsFile) ? JSON.parse(fs.readFileSync(resultsFile, 'utf8')) : {};
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'gmbench-'));
for (const b of benches) {
  if (only && !only.includes(b.name)) continue;
  const file = path.join(tmp, `${b.name}.json`);
  const t0 = performance.now();
  process.stdout.write(`== ${b.name}: node dist/test/bench/${b.script} ${b.args.join(' ')}\n`);
  const r = await execa('node', [path.join(ROOT, 'dist/test/bench', b.script), ...b.args], {
    env: { GREMESH_BENCH_JSON: file },
    reject: false,
    stdout: 'inherit',
    stderr: 'inherit',
  });
  if (r.exitCode !== 0) {
    process.stdout.write(`   failed (exit ${r.exitCode})\n`);
    // a benchmark that still wrote its figures (the soak records its failed cases) is reported as it ran
    if (!fs.existsSync(file)) continue;
  }
  out[b.name] = JSON.parse(fs.readFileSync(file, 'utf8'));
  process.stdout.write(`   (${((performance.now() - t0) / 1000).toFixed(0)} s)\n`);
}
const ms = (x: number) => `${Math.round(x)} ms`;
const cpu = os.cpus()[0]?.model ?? 'unknown CPU';
const lines: string[] = [];
const cmd = (s: string, a: string[]) => `\`node dist/test/bench/${s} ${a.join(' ')}\``;
const argsOf = (n: string) => benches.find((b) => b.name === n)!;
if (out.lab) {
  lines.push(
    `**Lab up/down** (${cmd('lab-updown.js', argsOf('lab').args)}):`,
    '',
    '| hosts | up p50 | down p50 |',
    '|---|---|---|',
  );
  for (const r of out.lab) lines.push(`| ${r.hosts} | ${ms(r.up.p50)} | ${ms(r.down.p50)} |`);
  lines.push('');
}
if (out.fanout || out.fanoutTls) {
  lines.push(
    `**Coordinator fan-out**: time from a new host's Register until each of N watching agents (gRPC clients in one process, one connection each) holds a snapshot with it, without TLS (${cmd('fanout.js', argsOf('fanout').args)}) and with mutual TLS, every agent with its own certificate (${cmd('fanout.js', argsOf('fanoutTls').args)}); goal p99 < 200 ms at N = 1000:`,
    '',
    '| N agents | transport | per agent p50 | per agent p99 | all N hold it p50 | all N p99 | coordinator RSS |',
    '|---|---|---|---|---|---|---|',
  );
  for (const r of [...(out.fanout ?? []), ...(out.fanoutTls ?? [])].sort((a, b) => a.n - b.n))
    lines.push(
      `| ${r.n} | ${r.tls ? 'mTLS' : 'plaintext'} | ${r.perAgent.p50.toFixed(1)} ms | ${r.perAgent.p99.toFixed(1)} ms | ${r.allAgents.p50.toFixed(1)} ms | ${r.allAgents.p99.toFixed(1)} ms | ${Math.round(r.rssMb)} MB |`,
    );
  lines.push('');
}
if (out.fanoutEtcd) {
  lines.push(
    `**Fan-out on etcd**: the same, with two coordinators on one etcd 3.4 (loopback), half the agents watching each and the new host registered at the first, beside SQLite's one coordinator, in one run (${cmd('fanout.js', argsOf('fanoutEtcd').args)}):`,
    '',
    '| N agents | store | per agent p50 | per agent p99 | all N hold it p50 | all N p99 | first coordinator RSS |',
    '|---|---|---|---|---|---|---|',
  );
  for (const r of out.fanoutEtcd)
    lines.push(
      `| ${r.n} | ${r.store === 'etcd' ? 'etcd, 2 coordinators' : 'SQLite, 1 coordinator'} | ${r.perAgent.p50.toFixed(1)} ms | ${r.perAgent.p99.toFixed(1)} ms | ${r.allAgents.p50.toFixed(1)} ms | ${r.allAgents.p99.toFixed(1)} ms | ${Math.round(r.rssMb)} MB |`,
    );
  lines.push('');
}
if (out.failover) {
  lines.push(
    `**Coordinator failover**: 100 agents (the agent's own coordinator client, no OVS) watching; their coordinator is killed (-9); time until each watches again. With etcd the agents move to the second coordinator; the anchor is one SQLite coordinator that a supervisor starts again at once (${cmd('failover.js', argsOf('failover').args)}); target ≤ 2 s:`,
    '',
    '| setup | agent moves | watching again p50 | p99 | max |',
    '|---|---|---|---|---|',
  );
  for (const r of out.failover)
    lines.push(
      `| ${r.store === 'etcd' ? 'etcd, 2 coordinators (A killed, agents move to B)' : 'SQLite, 1 coordinator (killed, started again at once)'} | ${r.moves} | ${Math.round(r.watchingAgain.p50)} ms | ${Math.round(r.watchingAgain.p99)} ms | ${Math.round(r.maxMs)} ms |`,
    );
  lines.push('');
}
if (out.converge || out.convergeInsecure) {
  lines.push(
    `**Join to converged** in the lab: from \`coordctl join\` of the N-th host (plus its agent start: a Node process, ~0.4 s here) until every host has its tunnel, and until a ping from the new host to every other host's gateway is answered; with TLS (the default: CA pinning, key and CSR, certificate; ${cmd('converge.js', argsOf('converge').args)}) and with \`--insecure\` (${cmd('converge.js', argsOf('convergeInsecure').args)}):`,
    '',
    '| hosts | transport | tunnels p50 | tunnels p99 | + pings p50 | + pings p99 |',
    '|---|---|---|---|---|---|',
  );
  for (const r of [...(out.converge ?? []), ...(out.convergeInsecure ?? [])].sort((a, b) => a.hosts - b.hosts))
    lines.push(
      `| ${r.hosts} | ${r.tls ? 'mTLS' : 'plaintext'} | ${ms(r.tunnels.p50)} | ${ms(r.tunnels.p99)} | ${ms(r.converged.p50)} | ${ms(r.converged.p99)} |`,
    );
  lines.push('');
}
if (out.reconcile) {
  const r = out.reconcile;
  const change = r.change.native
    ? `a pass after one peer joined or left, its flow delta as one native OpenFlow bundle p50 ${ms(r.change.native.p50)} / p99 ${ms(r.change.native.p99)}, as one \`ovs-ofctl --bundle\` p50 ${ms(r.change.ofctl.p50)} / p99 ${ms(r.change.ofctl.p99)} (interleaved); one container port's 4 flows, the writer alone: native p50 ${r.delta.native.p50.toFixed(2)} ms, ovs-ofctl p50 ${r.delta.ofctl.p50.toFixed(2)} ms`
    : `a pass after one peer joined or left p50 ${ms(r.change.p50)} / p99 ${ms(r.change.p99)}`;
  lines.push(
    `**Reconcile pass** with ${r.peers} peers and ${r.endpoints} endpoints against a real ovs-vswitchd (${cmd('reconcile.js', argsOf('reconcile').args)}): first pass (bridge, ${r.peers} GRE ports, ${r.flows} flows) ${ms(r.firstMs)}; a pass with nothing to do p50 ${r.steady.p50} ms / p99 ${r.steady.p99} ms${r.idleProcesses !== undefined ? ` (processes started by ${r.steady.n} such passes: ${r.idleProcesses})` : ''}; ${change}.`,
    '',
  );
}
if (out.join) {
  const j = out.join as {
    nodeStartMs: { p50: number };
    gremesh: { join: { p50: number; p99: number }; afterAdmit: { p50: number; p99: number } };
    ovn: { join: { p50: number; p99: number } };
  };
  lines.push(
    `**A host joins** (${cmd('join.js', argsOf('join').args)}; the 4th to 8th host of a lab, one at a time, watched through ` +
      `in-process OVSDB monitors on every host): from the process start until every tunnel exists both ways, ` +
      `gremesh-agent p50 ${ms(j.gremesh.join.p50)} / p99 ${ms(j.gremesh.join.p99)} (Node's own start ${ms(j.nodeStartMs.p50)} ` +
      `+ ${ms(j.gremesh.join.p50 - j.nodeStartMs.p50)}), OVN's ovn-controller on the same hosts in the same run p50 ` +
      `${ms(j.ovn.join.p50)} / p99 ${ms(j.ovn.join.p99)}. From the coordinator admitting the host until every other host ` +
      `has its tunnel: p50 ${ms(j.gremesh.afterAdmit.p50)} / p99 ${ms(j.gremesh.afterAdmit.p99)}.`,
    '',
  );
}
if (out.idle) {
  const i = out.idle as { seconds: number; rows: { host: string; processes: number; cpuPercent: number }[] };
  lines.push(
    `**An idle agent** (${cmd('idle.js', argsOf('idle').args)}; 3 hosts, a container each, nothing changing): ` +
      i.rows.map((r) => `${r.host} ${r.processes} processes started, ${r.cpuPercent.toFixed(2)} % CPU`).join('; ') +
      ` over ${i.seconds} s.`,
    '',
  );
}
if (out.dns) {
  const d = out.dns;
  const f = (x: { p50: number; p99: number }) => `p50 ${x.p50.toFixed(1)} ms / p99 ${x.p99.toFixed(1)} ms`;
  lines.push(
    `**Names across hosts** (${cmd('dns.js', argsOf('dns').args)}; 3 hosts, ${d.count} containers started and removed on h2, looked up through Docker's resolver from containers on h1 and h3 by probes already polling): ` +
      `\`docker run\` returns -> the name answers ${f(d.appear)}; \`docker rm -f\` returns -> NXDOMAIN ${f(d.vanish)}; ` +
      `${d.lookups} lookups of a churning alias meanwhile, ${d.late} naming a container gone for more than 1 s (${d.stale} gone at all); ` +
      `a lookup through 127.0.0.11 of a name Docker answers itself ${f(d.local)}, of a gremesh name on another host ${f(d.remote)} (${d.ratio.toFixed(2)}x), ` +
      `asked of the gateway's resolver directly ${f(d.direct)}, an ICMP echo to the gateway ${d.gatewayRttMs.toFixed(2)} ms.`,
    '',
  );
}
if (out.encryption) {
  const e = out.encryption;
  const med = (xs: number[]) => [...xs].sort((x, y) => x - y)[Math.floor((xs.length - 1) / 2)]!;
  const g = (k: string) =>
    `${k === 'streams1' ? '1 stream' : '4 streams'} ${med(e.plain.tcp[k]).toFixed(2)} vs ${med(e.encrypted.tcp[k]).toFixed(2)} Gbit/s (${e.ratio[k].toFixed(2)}x)`;
  lines.push(
    `**Encryption** (${cmd('encryption.js', argsOf('encryption').args)}; h1 and h2 measured, h3 joining plain and h4 encrypted, wireguard-go, plain GRE first and then the same hosts with the coordinator restarted with \`--encryption wireguard\`): ` +
      `TCP container -> container plain vs inside WireGuard, median of the runs: ${g('streams1')}, ${g('streams4')}; wireguard-go took ${e.encrypted.wireguardCpuShare.toFixed(2)} cores meanwhile; ` +
      `containers started before it was turned on (their larger MTU, fragmented outside WireGuard): ${e.startedBefore.streams1.toFixed(2)} / ${e.startedBefore.streams4.toFixed(2)} Gbit/s; ` +
      `container start -> first ping across answered p50 ${Math.round(e.plain.attach.p50)} vs ${Math.round(e.encrypted.attach.p50)} ms (${e.ratio.attach.toFixed(2)}x); ` +
      (e.join
        ? `a host joining (agent started -> its waiting container's ping across answered) ${Math.round(e.join.plain)} vs ${Math.round(e.join.encrypted)} ms (${e.join.ratio.toFixed(2)}x, one each); `
        : '') +
      `turning it on -> encrypted ping answered ${Math.round(e.turnOn.ms)} ms, ${e.turnOn.lost} of ${e.turnOn.sent} pings lost meanwhile (every 100 ms, both ways).`,
    '',
  );
}
if (out.ipv6) {
  const v = out.ipv6;
  const med = (xs: number[]) => [...xs].sort((x, y) => x - y)[Math.floor((xs.length - 1) / 2)]!;
  const g = (s: 1 | 4) =>
    `${s === 1 ? '1 stream' : '4 streams'} ${med(v.tcp[`v4s${s}`]).toFixed(2)} vs ${med(v.tcp[`v6s${s}`]).toFixed(2)} Gbit/s (${v.ratio[`streams${s}`].toFixed(2)}x)`;
  lines.push(
    `**IPv6** (${cmd('ipv6.js', argsOf('ipv6').args)}; 2 hosts, one dual-stack network): ` +
      `container start -> first ping across answered p50 IPv4 ${Math.round(v.attach.v4.p50)} vs IPv6 ${Math.round(v.attach.v6.p50)} ms (${v.attach.ratio.toFixed(2)}x); ` +
      `TCP between the same containers, IPv4 vs IPv6, median of the runs: ${g(1)}, ${g(4)}.`,
    '',
  );
}
if (out.policy) {
  const p = out.policy;
  const med = (xs: number[]) => [...xs].sort((x, y) => x - y)[Math.floor((xs.length - 1) / 2)]!;
  const t = (k: string) => {
    const x = p.tcp?.[k] as { plain: number[]; policed: number[]; ratio: number } | undefined;
    return x
      ? `${k === 'streams1' ? '1 stream' : '4 streams'} ${med(x.plain).toFixed(2)} vs ${med(x.policed).toFixed(2)} Gbit/s (${x.ratio.toFixed(2)}x)`
      : '';
  };
  lines.push(
    `**Policy** (${cmd('policy.js', argsOf('policy').args)}): ` +
      `flows with 1000 endpoints, 20 groups: no policy ${p.flows.plain1000}, isolation groups ${p.flows.groups1000}, +100 rules ${p.flows.rules100}, 2000 endpoints + 100 rules ${p.flows.endpoints2000}; ` +
      `a pass's flows and delta with 1000 endpoints and 100 rules p50 ${p.flows.passMs.p50.toFixed(2)} / p99 ${p.flows.passMs.p99.toFixed(2)} ms; ` +
      (p.pass
        ? `the Reconciler's pass (fake OVS) with nothing to do p50 ${p.pass.rules100.idle.p50.toFixed(2)} / p99 ${p.pass.rules100.idle.p99.toFixed(2)} ms, after a rule is added p50 ${p.pass.rules100.ruleAdded.p50.toFixed(2)} / p99 ${p.pass.rules100.ruleAdded.p99.toFixed(2)} ms; `
        : '') +
      (p.enforce
        ? `rule committed (coordinator's log) -> the first connection it allows answered, on each of 3 hosts (${p.enforce.count} rules) p50 ${p.enforce.all.p50} / p99 ${p.enforce.all.p99} ms; `
        : '') +
      (p.tcp
        ? `TCP h1 -> h2 without policy vs isolation groups + ${p.tcp.rules} rules: ${t('streams1')}, ${t('streams4')}.`
        : ''),
    '',
  );
}
if (out.attach) {
  const r = out.attach;
  lines.push(
    `**Container start to first cross-host ping** (${r.count} containers each, interleaved in one run, same lab, each timed from just before \`docker run\`, probing from the container's namespace every 5 ms; ${cmd('attach.js', argsOf('attach').args)}):`,
    '',
    '| | p50 | p99 |',
    '|---|---|---|',
    ...(r.network
      ? [
          `| gremesh (\`docker run --network gremesh-default\`; the plugin attaches inside \`docker run\`) | ${ms(r.network.p50)} | ${ms(r.network.p99)} |`,
        ]
      : []),
    `| gremesh (label; the agent attaches) | ${ms(r.gremesh.p50)} | ${ms(r.gremesh.p99)} |`,
    `| manual recipe (\`ovs-docker add-port --ipaddress --gateway --mtu\`, pre-built tunnel) | ${ms(r.manual.p50)} | ${ms(r.manual.p99)} |`,
    ...(r.ovn
      ? [
          `| OVN (\`ovn-nbctl lsp-add\`, \`ovs-docker add-port\`, \`iface-id\`; geneve) | ${ms(r.ovn.p50)} | ${ms(r.ovn.p99)} |`,
        ]
      : []),
    ...(r.withBusy
      ? [
          `| gremesh, ${r.busy} containers already running on the host | ${ms(r.withBusy.p50)} | ${ms(r.withBusy.p99)} |`,
          `| manual recipe, same host, same time | ${ms(r.manualWithBusy.p50)} | ${ms(r.manualWithBusy.p99)} |`,
        ]
      : []),
    ...(r.fresh
      ? [
          `| gremesh, first container on a fresh tunnel (a host that just joined) | ${ms(r.fresh.p50)} | ${ms(r.fresh.p99)} |`,
        ]
      : []),
    '',
    ...(r.phases
      ? [
          `gremesh's attach, p50 of each phase from the agent's log: Docker's start event -> inspected ${ms(r.phases.inspect)} -> veth in the container ${ms(r.phases.veth)} -> OVS port with its number ${ms(r.phases.port)} -> flows installed ${ms(r.phases.flows)} -> interface up with its route ${ms(r.phases.up)}` +
            (r.withBusyPhases
              ? `; with ${r.busy} containers running: ${ms(r.withBusyPhases.inspect)}, ${ms(r.withBusyPhases.veth)}, ${ms(r.withBusyPhases.port)}, ${ms(r.withBusyPhases.flows)}, ${ms(r.withBusyPhases.up)}.`
              : '.'),
          '',
        ]
      : []),
  );
}
if (out.throughput) {
  const r = out.throughput;
  const plain = r.plain_1 !== undefined;
  lines.push(
    `**Throughput** (iperf3, ${cmd('throughput.js', argsOf('throughput').args)}; userspace datapath, CPU-bound on 2 cores${plain ? '; median of interleaved runs, each run in the JSON' : ''}):`,
    '',
    plain
      ? '| streams | host to host (underlay) | plain OVS GRE (ovs-docker endpoints, MTU 1458) | gremesh container to container | gremesh / plain GRE |'
      : '| streams | host to host (underlay) | container to container (GRE overlay) | ratio |',
    plain ? '|---|---|---|---|---|' : '|---|---|---|---|',
  );
  for (const p of [1, 4])
    lines.push(
      plain
        ? `| ${p} | ${r[`underlay_${p}`].toFixed(2)} Gbit/s | ${r[`plain_${p}`].toFixed(2)} Gbit/s | ${r[`overlay_${p}`].toFixed(2)} Gbit/s | ${(r[`overlay_${p}`] / r[`plain_${p}`]).toFixed(2)} |`
        : `| ${p} | ${r[`underlay_${p}`].toFixed(2)} Gbit/s | ${r[`overlay_${p}`].toFixed(2)} Gbit/s | ${(r[`overlay_${p}`] / r[`underlay_${p}`]).toFixed(2)} |`,
    );
  lines.push('');
}
// ---- charts: horizontal bars, one SVG per figure, made here (no dependencies)
function barChart(file: string, title: string, unit: string, bars: { label: string; value: number }[]): string {
  const max = Math.max(...bars.map((b) => b.value), 1e-9);
  const w = 640,
    left = 250,
    barH = 22,
    gap = 8,
    top = 36;
  const h = top + bars.length * (barH + gap) + 10;
  const rows = bars
    .map((b, i) => {
      const y = top + i * (barH + gap);
      const bw = Math.max(1, ((w - left - 90) * b.value) / max);
      return (
        `<text x="${left - 8}" y="${y + 15}" text-anchor="end" font-size="12">${b.label}</text>` +
        `<rect x="${left}" y="${y}" width="${bw.toFixed(1)}" height="${barH}" fill="${i % 2 ? '#7a9cc6' : '#2f5f98'}"/>` +
        `<text x="${left + bw + 6}" y="${y + 15}" font-size="12">${b.value.toFixed(b.value < 10 ? 2 : 0)} ${unit}</text>`
      );
    })
    .join('\n');
  const svg = `<svg xmlns="http://www.w3.org/2000/svg" width="${w}" height="${h}" font-family="sans-serif"><rect width="100%" height="100%" fill="white"/><text x="10" y="22" font-size="14" font-weight="bold">${title}</text>\n${rows}\n</svg>\n`;
  fs.writeFileSync(path.join(ROOT, 'docs', file), svg);
  return `![${title}](${file})`;
}
const charts: string[] = [];
fs.mkdirSync(path.join(ROOT, 'docs'), { recursive: true });
if (out.attach)
  charts.push(
    barChart('attach.svg', 'Container start to first cross-host ping', 'ms', [
      ...(out.attach.network ? [{ label: 'gremesh --network p50', value: out.attach.network.p50 }] : []),
      { label: 'gremesh p50', value: out.attach.gremesh.p50 },
      { label: 'gremesh p99', value: out.attach.gremesh.p99 },
      { label: 'ovs-docker recipe p50', value: out.attach.manual.p50 },
      { label: 'ovs-docker recipe p99', value: out.attach.manual.p99 },
      ...(out.attach.ovn
        ? [
            { label: 'OVN p50', value: out.attach.ovn.p50 },
            { label: 'OVN p99', value: out.attach.ovn.p99 },
          ]
        : []),
    ]),
  );
if (out.fanout)
  charts.push(
    barChart(
      'fanout.svg',
      'Fan-out: all N agents hold a new host (p99)',
      'ms',
      [...(out.fanout ?? []), ...(out.fanoutTls ?? [])].map(
        (r: { n: number; tls: boolean; allAgents: { p99: number } }) => ({
          label: `N=${r.n} ${r.tls ? 'mTLS' : 'plaintext'}`,
          value: r.allAgents.p99,
        }),
      ),
    ),
  );
if (out.throughput)
  charts.push(
    barChart(
      'throughput.svg',
      'TCP throughput (iperf3)',
      'Gbit/s',
      [1, 4].flatMap((p) => [
        { label: `host to host, ${p} stream${p > 1 ? 's' : ''}`, value: out.throughput[`underlay_${p}`] },
        ...(out.throughput[`plain_${p}`] !== undefined
          ? [{ label: `plain OVS GRE, ${p} stream${p > 1 ? 's' : ''}`, value: out.throughput[`plain_${p}`] }]
          : []),
        { label: `gremesh, ${p} stream${p > 1 ? 's' : ''}`, value: out.throughput[`overlay_${p}`] },
      ]),
    ),
  );
if (out.startup) {
  lines.push(
    '',
    `**Start time** beside a bare \`node -e 0\`, interleaved (${cmd('startup.js', argsOf('startup').args)}):`,
    '',
    '| command | p50 | p99 | × node |',
    '|---|---|---|---|',
  );
  for (const r of out.startup as { name: string; p50: number; p99: number; ratio: number }[])
    lines.push(`| \`${r.name}\` | ${ms(r.p50)} | ${ms(r.p99)} | ${r.ratio.toFixed(2)} |`);
}
if (out.joins) {
  const j = out.joins as {
    n: number;
    admitted: number;
    joins: { p50: number; p99: number };
    wallMs: number;
    signInProcess: { p50: number; p99: number };
    signOpenssl: { p50: number; p99: number };
  };
  lines.push(
    '',
    `**TLS joins** (${cmd('joins.js', argsOf('joins').args)}): ${j.n} hosts join at once against a coordinator on loopback ` +
      `(JoinHost, then Register with a CSR from each host's own key): ${j.admitted} admitted, per join p50 ${ms(j.joins.p50)} ` +
      `p99 ${ms(j.joins.p99)}, all in ${ms(j.wallMs)}. Signing one CSR (verify, then sign), same run: in process ` +
      `p50 ${j.signInProcess.p50.toFixed(1)} ms / p99 ${j.signInProcess.p99.toFixed(1)} ms; with two openssl processes ` +
      `(as before) p50 ${j.signOpenssl.p50.toFixed(1)} ms / p99 ${j.signOpenssl.p99.toFixed(1)} ms.`,
  );
}
if (out.soak) {
  const soak = out.soak as { date: string; command: string; minutes: number; exitCode: number; cases: SoakCase[] };
  lines.push(
    '',
    `**Soak** (the fault suite at full length, \`make soak\`: \`${soak.command}\`), ${soak.date.slice(0, 10)}, ` +
      `${soak.minutes.toFixed(1)} min, ${soak.exitCode === 0 ? 'passed' : `FAILED (exit ${soak.exitCode})`}:`,
    '',
  );
  for (const c of soak.cases) {
    lines.push(`- ${c.ok ? 'passed' : 'FAILED'} (${c.seconds.toFixed(0)} s): ${c.title}`);
    for (const f of c.figures) lines.push(`  - ${f}`);
  }
}
if (charts.length) lines.push('', ...charts.flatMap((c) => [c, '']));

const machine = `${os.cpus().length} × ${cpu}, ${Math.round(os.totalmem() / 2 ** 30)} GiB, ${os.type()} ${os.release()}, Node ${process.version}, ${new Date().toISOString().slice(0, 10)}`;
fs.mkdirSync(path.join(ROOT, 'docs'), { recursive: true });
// the machine line of the last full run stays with its figures
const previousMachine = out.machine as string | undefined;
if (!only) out.machine = machine;
fs.writeFileSync(resultsFile, JSON.stringify(out, null, 2));
fs.writeFileSync(
  path.join(ROOT, 'docs/BENCHMARKS.md'),
  `# gremesh benchmarks\n\nMachine: ${machine}. Produced by \`node dist/test/bench/report.js\` (\`make bench\`)` +
    (only
      ? `; ${only.join(', ')} re-run on ${new Date().toISOString().slice(0, 10)} with \`--only\`, the rest from the last full run` +
        (previousMachine ? ` (${previousMachine})` : '')
      : '') +
    `.\n\n${lines.join('\n')}\n`,
);
process.stdout.write(`\nwrote docs/BENCHMARKS.md (${machine})\n\n${lines.join('\n')}\n`);
fs.rmSync(tmp, { recursive: true, force: true });
