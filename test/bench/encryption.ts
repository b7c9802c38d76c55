// Benchmark: encryption between hosts on one 4-host lab (h1, h2 measured), plain GRE first, then the same
// hosts and containers with the coordinator restarted with --encryption wireguard (the
// documented way to turn it on, with the pings lost while it turns on counted), then
// encrypted: TCP container to container (iperf3, 1 and 4 streams, median of --runs) with
// the CPU wireguard-go took, container start -> first ping to the other host answered, and a
// host joining (h3 plain, h4 encrypted: its agent started -> its waiting container's ping answered),
// each side by side with plain GRE from the same run.
// Usage: node dist/test/bench/encryption.js [--seconds 3] [--runs 3] [--count 5]
import * as fs from 'node:fs';
import { parseArgs } from 'node:util';
import { execa } from 'execa';
import { BIN, cli, tempDir } from '../helpers/cli.js';
import { readState } from '../../deploy/lab/lab.js';
import { join, joinAll, startAgent, startCoordinator, stopProcess } from '../../deploy/lab/mesh.js';
import { IMAGE, hostEnv } from '../../deploy/lab/plan.js';
import { systemPath } from '../../common/exec.js';
import { PingMesh } from '../helpers/ping-mesh.js';
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
const dir = tempDir('gmw');
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor((xs.length - 1) / 2)]!;
const result: Record<string, unknown> = { date: new Date().toISOString() };
const spawned: { kill: (s?: NodeJS.Signals) => boolean }[] = [];

const up = await cli(BIN.lab, ['up', '--hosts', '4', '--dir', dir], {}, 600_000);
if (up.exitCode !== 0) throw new Error(up.stderr);
const state = readState(dir)!;
const node = (h: string) => state.plan.nodes.find((x) => x.name === h)!;
const inHost = async (h: string, argv: string[]) =>
  String(
    (
      await execa('nsenter', [`--net=/run/netns/${node(h).ns}`, ...argv], {
        env: { PATH: systemPath(), ...hostEnv(dir, node(h)) },
      })
    ).stdout,
  ).trim();
const docker = (h: string, a: string[]) => inHost(h, ['docker', ...a]);
const pidOf = async (h: string, c: string) => Number(await docker(h, ['inspect', '-f', '{{.State.Pid}}', c]));
const inC = (pid: number, argv: string[], reject = true) =>
  execa('nsenter', ['-t', String(pid), '-n', ...argv], { env: { PATH: systemPath() }, reject, timeout: 120_000 });
async function addressOf(pid: number): Promise<string> {
  for (let i = 0; i < 400; i++) {
    const m = /inet (\S+)\//.exec(String((await inC(pid, ['ip', '-4', '-o', 'addr', 'show', 'eth0'], false)).stdout));
    if (m) return m[1]!;
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error('no address');
}
const start = (h: string, name: string) =>
  docker(h, ['run', '-d', '--net=none', '--name', name, '-l', 'gremesh.network=default', IMAGE, 'sleep', 'infinity']);

/** wireguard-go's CPU seconds so far (every lab host's), from /proc */
function wireguardCpuS(): number {
  let ticks = 0;
  for (const p of fs.readdirSync('/proc').filter((x) => /^\d+$/.test(x))) {
    try {
      if (fs.readFileSync(`/proc/${p}/comm`, 'utf8').trim() !== 'wireguard-go') continue;
      const f = fs.readFileSync(`/proc/${p}/stat`, 'utf8').split(') ')[1]!.split(' ');
      ticks += Number(f[11]) + Number(f[12]);
    } catch {
      // gone meanwhile
    }
  }
  return ticks / 100;
}

async function iperf(server: number, client: number, ip: string, streams: number): Promise<number> {
  const srv = inC(server, ['iperf3', '-s', '-1'], false);
  spawned.push(srv);
  await new Promise((r) => setTimeout(r, 500));
  const c = await inC(client, ['iperf3', '-c', ip, '-t', values.seconds!, '-P', String(streams), '-J']);
  await srv;
  const sent = (JSON.parse(String(c.stdout)) as { end: { sum_sent: { retransmits?: number } } }).end.sum_sent;
  if (process.env.GREMESH_BENCH_VERBOSE) process.stdout.write(`  iperf ${streams}: retransmits ${sent.retransmits}\n`);
  return (
    (JSON.parse(String(c.stdout)) as { end: { sum_received: { bits_per_second: number } } }).end.sum_received
      .bits_per_second / 1e9
  );
}

/** container start (docker run) -> its first ping to the peer container answered, count times */
async function attachTimes(tag: string, peerIp: string): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < count; i++) {
    const name = `a-${tag}-${i}`;
    const t0 = performance.now();
    await start('h1', name);
    const pid = await pidOf('h1', name);
    await addressOf(pid);
    for (;;) {
      const r = await inC(pid, ['ping', '-c', '1', '-W', '0.2', peerIp], false);
      if (r.exitCode === 0) break;
      if (performance.now() - t0 > 30_000) throw new Error(`${name}: no answer in 30 s`);
    }
    out.push(performance.now() - t0);
    await docker('h1', ['rm', '-f', name]);
  }
  return out;
}

/** coordctl join HOST -> its agent started -> a container waiting there pings t1 (agent start to answer) */
async function joinTime(h: string, peerIp: string): Promise<number> {
  await start(h, `j-${h}`);
  const pid = await pidOf(h, `j-${h}`);
  const args = await join(dir, h);
  const t0 = performance.now();
  startAgent(dir, h, args);
  for (;;) {
    const r = await inC(pid, ['ping', '-c', '1', '-W', '0.2', peerIp], false);
    if (r.exitCode === 0) return performance.now() - t0;
    if (performance.now() - t0 > 60_000) throw new Error(`${h}: no answer in 60 s after its agent started`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

async function measure(tag: string, t1: number, t2: number, ip2: string) {
  const tcp: Record<string, number[]> = { streams1: [], streams4: [] };
  const cpu0 = wireguardCpuS();
  const t0 = performance.now();
  for (let r = 0; r < runs; r++) for (const s of [1, 4]) tcp[`streams${s}`]!.push(await iperf(t2, t1, ip2, s));
  const wallS = (performance.now() - t0) / 1000;
  const attach = await attachTimes(tag, ip2);
  return { tcp, attach: summarize(attach), wireguardCpuShare: (wireguardCpuS() - cpu0) / wallS };
}

try {
  await startCoordinator(dir);
  await joinAll(dir, ['h1', 'h2']);
  await Promise.all([start('h1', 't1'), start('h2', 't2')]);
  const [t1, t2] = [await pidOf('h1', 't1'), await pidOf('h2', 't2')];
  const [ip1, ip2] = [await addressOf(t1), await addressOf(t2)];
  const plain = await measure('plain', t1, t2, ip2);
  const joinPlain = await joinTime('h3', ip1);
  // turning it on: the coordinator restarted with the flag; the agents follow
  const mesh = new PingMesh(0.1);
  mesh.update([
    { name: 'h1', pid: String(t1), ip: ip1 },
    { name: 'h2', pid: String(t2), ip: ip2 },
  ]);
  await new Promise((r) => setTimeout(r, 1500));
  const from = mesh.mark();
  const t0 = performance.now();
  await stopProcess(dir, 'ctl', 'coordinator');
  await startCoordinator(dir, ['--encryption', 'wireguard', '--tunnel-cidr', '198.19.240.0/22']);
  for (;;) {
    const out = await inHost('h1', ['ovs-vsctl', '--columns=options', 'find', 'interface', 'type=gre']);
    if (out.includes('198.19.240.12')) {
      const r = await inC(t1, ['ping', '-c', '1', '-W', '0.2', ip2], false);
      if (r.exitCode === 0) break;
    }
    if (performance.now() - t0 > 60_000) throw new Error('encryption did not come up in 60 s');
    await new Promise((r) => setTimeout(r, 50));
  }
  const onMs = performance.now() - t0;
  await new Promise((r) => setTimeout(r, 2000));
  const loss = await mesh.lossSince(from, 2);
  mesh.stop();
  result.turnOn = { ms: onMs, sent: loss.sent, lost: loss.lost };
  // containers started before it was turned on keep the larger MTU (their biggest packets are
  // fragmented outside WireGuard): measured, then new ones at the encrypted MTU
  const before = { streams1: await iperf(t2, t1, ip2, 1), streams4: await iperf(t2, t1, ip2, 4) };
  result.startedBefore = before;
  await Promise.all([start('h1', 'e1'), start('h2', 'e2')]);
  const [e1, e2] = [await pidOf('h1', 'e1'), await pidOf('h2', 'e2')];
  const [, ipe2] = [await addressOf(e1), await addressOf(e2)];
  const encrypted = await measure('wg', e1, e2, ipe2);
  const joinEncrypted = await joinTime('h4', ip1);
  result.join = { plain: joinPlain, encrypted: joinEncrypted, ratio: joinEncrypted / joinPlain };
  const ratio = (k: string) => median(encrypted.tcp[k]!) / median(plain.tcp[k]!);
  result.plain = plain;
  result.encrypted = encrypted;
  result.ratio = {
    streams1: ratio('streams1'),
    streams4: ratio('streams4'),
    attach: encrypted.attach.p50 / plain.attach.p50,
  };
  const g = (x: number[]) => median(x).toFixed(2);
  process.stdout.write(
    `TCP h1 -> h2, plain GRE vs GRE inside WireGuard (wireguard-go), same hosts and containers, median of ${runs}:\n` +
      `  1 stream  ${g(plain.tcp.streams1!)} vs ${g(encrypted.tcp.streams1!)} Gbit/s (${ratio('streams1').toFixed(2)}x)\n` +
      `  4 streams ${g(plain.tcp.streams4!)} vs ${g(encrypted.tcp.streams4!)} Gbit/s (${ratio('streams4').toFixed(2)}x)\n` +
      `  containers started before encryption was on (MTU 1458, outer fragments): 1 stream ${before.streams1.toFixed(2)}, 4 streams ${before.streams4.toFixed(2)} Gbit/s\n` +
      `  wireguard-go CPU while they ran: ${encrypted.wireguardCpuShare.toFixed(2)} cores (of ${(await import('node:os')).cpus().length})\n` +
      `container start -> first ping to h2 answered, ${count} each: plain p50 ${plain.attach.p50} ms, encrypted p50 ${encrypted.attach.p50} ms (${(result.ratio as { attach: number }).attach.toFixed(2)}x)\n` +
      `a host joins (its agent started -> its waiting container pings h1), one each: plain ${Math.round(joinPlain)} ms, encrypted ${Math.round(joinEncrypted)} ms (${(joinEncrypted / joinPlain).toFixed(2)}x)\n` +
      `turning encryption on (coordinator restarted with --encryption wireguard) -> encrypted ping answered: ${Math.round(onMs)} ms; pings lost meanwhile ${loss.lost} of ${loss.sent} (every 100 ms, both ways)\n`,
  );
} finally {
  for (const p of spawned) p.kill('SIGKILL');
  await cli(BIN.lab, ['down', '--dir', dir], {}, 600_000);
  fs.rmSync(dir, { recursive: true, force: true });
}
if (process.env.GREMESH_BENCH_JSON) fs.writeFileSync(process.env.GREMESH_BENCH_JSON, JSON.stringify(result, null, 2));
