// Proof under faults: a 5-host lab (4 joined, h5 stands in for a new machine), a
// container per host, pings across hosts during every fault, and each case printing its
// figure. Network faults are cut on the underlay switch (bridge-family nftables), as a
// real network fault would be: the userspace datapath bypasses the hosts' own netfilter.
import test from 'ava';
import * as fs from 'node:fs';
import { isRoot } from '../helpers/cli.js';
import { labUp, type TestLab } from '../helpers/lab.js';
import { sh, waitUntil } from '../helpers/endpoint.js';
import { agentStateDir, agentStatus, coordctl, join, joinAll, startAgent, startCoordinator, stopProcess } from '../../deploy/lab/mesh.js';
import { crashHost, readState, restartDockerd, restartOvs } from '../../deploy/lab/lab.js';
import { IMAGE, hostEnv, hostIp } from '../../deploy/lab/plan.js';

const serial = isRoot ? test.serial : test.skip;
const OUTAGE_S = Number(process.env.GREMESH_FAULT_OUTAGE_S ?? '300');
const CYCLES = Number(process.env.GREMESH_FAULT_CYCLES ?? '200');
let lab: TestLab;
let args: Record<string, string[]> = {};
const HOSTS = ['h1', 'h2', 'h3', 'h4'];

const node = (h: string) => lab.state.plan.nodes.find((n) => n.name === h)!;
const inHost = (h: string, argv: string[], reject = false) => sh(['nsenter', `--net=/run/netns/${node(h).ns}`, ...argv], hostEnv(lab.dir, node(h)), reject);
const docker = async (h: string, a: string[], reject = true) => (await inHost(h, ['docker', ...a], reject)).stdout.trim();
const pidOf = (h: string, c: string) => docker(h, ['inspect', '-f', '{{.State.Pid}}', c]);
const ipIn = async (pid: string): Promise<string | undefined> => {
  const l = JSON.parse((await sh(['nsenter', '-t', pid, '-n', 'ip', '-j', '-4', 'addr', 'show'], {}, false)).stdout || '[]') as { ifname: string; flags?: string[]; addr_info: { local: string }[] }[];
  const i = l.find((x) => x.ifname !== 'lo');
  return i && (i.flags ?? []).includes('UP') ? i.addr_info[0]?.local : undefined;
};
const ipOf = async (h: string, c: string) => ipIn(await pidOf(h, c));
const runC = async (h: string, name: string) => docker(h, ['run', '-d', '--net=none', '--name', name, '--label', 'gremesh.network=default', IMAGE, 'sleep', 'infinity']);
const attached = async (h: string, c: string, ms = 30_000) => (await waitUntil(async () => (await ipOf(h, c).catch(() => undefined)) !== undefined, ms)) !== undefined;
/** pings at 10/s from container a on host ha to ip, count packets; resolves sent/received */
const pingFrom = async (ha: string, c: string, ip: string, count: number) => {
  const r = await sh(['nsenter', '-t', await pidOf(ha, c), '-n', 'ping', '-i', '0.1', '-c', String(count), '-W', '1', ip], {}, false, count * 100 + 60_000);
  const m = /(\d+) packets transmitted, (\d+) received/.exec(r.stdout);
  return m ? { sent: Number(m[1]), received: Number(m[2]) } : { sent: count, received: 0 };
};
const pingsOnce = async (h: string, c: string, ip: string, ms = 15_000) =>
  (await waitUntil(async () => (await sh(['nsenter', '-t', await pidOf(h, c), '-n', 'ping', '-c', '1', '-W', '1', ip], {}, false)).exitCode === 0, ms, 10)) !== undefined;
/** drop underlay traffic between two lab nodes at the switch (both directions) */
const cut = async (a: string, b: string) => {
  const sw = `--net=/run/netns/${lab.state.plan.switchNs}`;
  const tbl = `cut_${a}_${b}`;
  await sh(['nsenter', sw, 'nft', 'add', 'table', 'bridge', tbl]);
  await sh(['nsenter', sw, 'nft', 'add', 'chain', 'bridge', tbl, 'cut', '{ type filter hook forward priority 0; }']);
  await sh(['nsenter', sw, 'nft', 'add', 'rule', 'bridge', tbl, 'cut', 'iifname', `p-${a}`, 'oifname', `p-${b}`, 'drop']);
  await sh(['nsenter', sw, 'nft', 'add', 'rule', 'bridge', tbl, 'cut', 'iifname', `p-${b}`, 'oifname', `p-${a}`, 'drop']);
  return async () => { await sh(['nsenter', sw, 'nft', 'delete', 'table', 'bridge', tbl]); };
};
const status = async () => JSON.parse((await coordctl(lab.dir, ['status', '-o', 'json'])).stdout) as { watchers: number; hosts: { name: string; state: string; tunnels: { peer: string; bfdState: string }[] }[] };
const counts = async (h: string) => {
  const ports = (await inHost(h, ['ovs-vsctl', '--columns=name', '--format=csv', '--no-headings', 'find', 'Interface', 'external_ids:container_id!=""'])).stdout.split('\n').filter(Boolean).length;
  const veths = (JSON.parse((await inHost(h, ['ip', '-j', 'link', 'show'])).stdout) as { ifname: string }[]).filter((l) => /^gm[0-9a-f]{11}$/.test(l.ifname)).length;
  let addrs = 0;
  try { addrs = Object.values(JSON.parse(fs.readFileSync(`${agentStateDir(lab.dir, h)}/ipam.json`, 'utf8')) as Record<string, object>).reduce((n, x) => n + Object.keys(x).length, 0); } catch { /* none */ }
  const flows = Number(/flow_count=(\d+)/.exec((await inHost(h, ['ovs-ofctl', 'dump-aggregate', `unix:${lab.dir}/${h}/ovs/gremesh0.mgmt`])).stdout)?.[1] ?? -1);
  const agent = readState(lab.dir)!.procs.filter((p) => p.node === h && p.what === 'agent').at(-1)!.pid;
  const fds = fs.readdirSync(`/proc/${agent}/fd`).length;
  const rssMb = Number(/VmRSS:\s+(\d+)/.exec(fs.readFileSync(`/proc/${agent}/status`, 'utf8'))![1]) / 1024;
  return { ports, veths, addrs, flows, fds, rssMb };
};

test.before(async () => {
  if (!isRoot) return;
  lab = await labUp(5);
  await startCoordinator(lab.dir);
  args = await joinAll(lab.dir, HOSTS);
  for (const h of HOSTS) await runC(h, `c-${h}`);
  for (const h of HOSTS) if (!(await attached(h, `c-${h}`))) throw new Error(`c-${h} not attached`);
});
test.after.always(async () => { if (lab) await lab.down(); });

serial('a host cut from the coordinator only keeps its data plane; it shows down, then comes back', async (t) => {
  const heal = await cut('h1', 'ctl');
  const p = await pingFrom('h1', 'c-h1', (await ipOf('h2', 'c-h2'))!, 150);
  const down = await waitUntil(async () => (await status()).hosts.find((h) => h.name === 'h1')?.state === 'down', 20_000, 500);
  await heal();
  t.is(p.received, p.sent, `${p.sent - p.received} of ${p.sent} pings lost while h1 was cut from the coordinator`);
  t.not(down, undefined, 'h1 shows down while cut');
  const back = await waitUntil(async () => (await status()).hosts.find((h) => h.name === 'h1')?.state === 'up' && (await status()).watchers === 4, 30_000, 500);
  t.not(back, undefined, 'h1 back up and watching after the cut healed');
});

serial('a host cut from one peer: coordctl status names the broken tunnel (BFD), and it recovers when healed', async (t) => {
  const heal = await cut('h1', 'h2');
  const t0 = Date.now();
  const named = await waitUntil(async () => {
    const s = await status();
    const h1 = s.hosts.find((h) => h.name === 'h1')!.tunnels.find((x) => x.peer === 'h2');
    const h3 = s.hosts.find((h) => h.name === 'h1')!.tunnels.find((x) => x.peer === 'h3');
    return h1?.bfdState !== 'up' && h3?.bfdState === 'up';
  }, 20_000, 100);
  t.not(named, undefined, 'the h1-h2 tunnel is reported down, h1-h3 stays up');
  t.log(`broken tunnel named by coordctl status ${Date.now() - t0} ms after the cut`);
  t.regex((await coordctl(lab.dir, ['status'])).stdout, /h1\s+198\.18\.0\.11\s+up\s+2\/3 up \(h2:down\)/);
  await heal();
  const t1 = Date.now();
  const healed = await waitUntil(async () => (await status()).hosts.every((h) => h.tunnels.every((x) => x.bfdState === 'up')), 30_000, 100);
  t.not(healed, undefined, 'every tunnel up again');
  t.log(`all tunnels up ${Date.now() - t1} ms after healing`);
  t.true(await pingsOnce('h1', 'c-h1', (await ipOf('h2', 'c-h2'))!));
});

serial('agent kill -9 in the middle of 100 container attachments: after restart every container is attached once, nothing leaked', async (t) => {
  const base = await counts('h3');
  const names = Array.from({ length: 100 }, (_, i) => `burst${i}`);
  let killed = false;
  for (let i = 0; i < names.length; i += 10) {
    await Promise.all(names.slice(i, i + 10).map((n) => runC('h3', n)));
    if (!killed && i >= 30) { await stopProcess(lab.dir, 'h3', 'agent', 'SIGKILL'); killed = true; startAgent(lab.dir, 'h3', args.h3!); }
  }
  t.true(killed);
  const all = await waitUntil(async () => (await counts('h3')).ports === base.ports + 100, 120_000, 500);
  t.not(all, undefined, `ports: ${(await counts('h3')).ports} of ${base.ports + 100}`);
  // a port exists a moment before its container's interface comes up (after its flows)
  await waitUntil(async () => (await Promise.all(names.map((n) => ipOf('h3', n)))).every(Boolean), 60_000, 500);
  const ips = await Promise.all(names.map((n) => ipOf('h3', n)));
  t.true(ips.every(Boolean), `every container has an address and is up (${ips.filter(Boolean).length} of 100)`);
  t.is(new Set(ips).size, 100, 'no address twice');
  const c = await counts('h3');
  t.is(c.veths, base.veths + 100, 'one veth each');
  t.is(c.addrs, base.addrs + 100, 'one address each');
  t.true(await pingsOnce('h3', 'burst99', (await ipOf('h1', 'c-h1'))!));
  for (let i = 0; i < names.length; i += 20) await docker('h3', ['rm', '-f', ...names.slice(i, i + 20)]);
  const clean = await waitUntil(async () => { const x = await counts('h3'); return x.ports === base.ports && x.veths === base.veths && x.addrs === base.addrs; }, 60_000, 500);
  t.not(clean, undefined, 'all gone after removal');
});

serial('ovsdb-server and ovs-vswitchd restarted on one host: traffic back', async (t) => {
  const target = (await ipOf('h2', 'c-h2'))!;
  t.true(await pingsOnce('h1', 'c-h1', target));
  const t0 = Date.now();
  await restartOvs(lab.dir, 'h2');
  const ok = await pingsOnce('h1', 'c-h1', target, 30_000);
  t.true(ok);
  t.log(`traffic back ${Date.now() - t0} ms after ovsdb-server + ovs-vswitchd were killed and restarted`);
});

serial('dockerd restarted: without live-restore its containers stop and come back with the same address; with live-restore they keep running and keep their traffic', async (t) => {
  const before = (await ipOf('h4', 'c-h4'))!;
  const base = await counts('h4');
  await restartDockerd(lab.dir, 'h4');
  const detached = await waitUntil(async () => (await counts('h4')).ports === base.ports - 1, 30_000, 250);
  t.not(detached, undefined, 'the stopped container’s port is removed');
  await docker('h4', ['start', 'c-h4']);
  t.true(await attached('h4', 'c-h4'));
  t.is(await ipOf('h4', 'c-h4'), before, 'the same address when it starts again');
  // live-restore: containers outlive their dockerd
  await restartDockerd(lab.dir, 'h4', ['--live-restore']);
  await docker('h4', ['start', 'c-h4'], false);
  t.true(await attached('h4', 'c-h4'));
  const ping = pingFrom('h1', 'c-h1', (await ipOf('h4', 'c-h4'))!, 60);
  await new Promise((r) => setTimeout(r, 1000));
  await restartDockerd(lab.dir, 'h4', ['--live-restore']);
  const p = await ping;
  t.is(p.received, p.sent, `${p.sent - p.received} pings lost across a live-restore dockerd restart`);
  t.is(await ipOf('h4', 'c-h4'), before);
  const c = await counts('h4');
  t.is(c.ports, base.ports, 'no duplicate port after dockerd came back');
});

serial(`coordinator down for ${OUTAGE_S} s: no ping lost; containers started meanwhile get addresses and reach the others; agents resume`, async (t) => {
  const p = pingFrom('h1', 'c-h1', (await ipOf('h3', 'c-h3'))!, OUTAGE_S * 10 + 50);
  await new Promise((r) => setTimeout(r, 1000));
  await stopProcess(lab.dir, 'ctl', 'coordinator', 'SIGKILL');
  await new Promise((r) => setTimeout(r, 3000));
  for (const h of ['h1', 'h2']) await runC(h, `late-${h}`);
  for (const h of ['h1', 'h2']) t.true(await attached(h, `late-${h}`), `late-${h} attached while the coordinator is away`);
  t.true(await pingsOnce('h1', 'late-h1', (await ipOf('h2', 'late-h2'))!), 'new containers reach each other across hosts');
  t.true(await pingsOnce('h2', 'late-h2', (await ipOf('h3', 'c-h3'))!), 'and the old ones');
  t.regex((await ipOf('h1', 'late-h1'))!, /^198\.18\.64\./, 'from h1’s own slice');
  await new Promise((r) => setTimeout(r, Math.max(0, OUTAGE_S * 1000 - 20_000)));
  await startCoordinator(lab.dir);
  const r = await p;
  t.is(r.received, r.sent, `${r.sent - r.received} of ${r.sent} pings lost during the outage`);
  const back = await waitUntil(async () => (await status()).watchers === 4, 60_000, 500);
  t.not(back, undefined, 'all agents watch again without operator action');
});

serial(`${CYCLES} container start/stop cycles across hosts: no leak of addresses, ports, veths, flows, file descriptors or memory`, async (t) => {
  const before = await Promise.all(HOSTS.map(counts));
  for (let i = 0; i < CYCLES; i += 4) {
    await Promise.all(HOSTS.map(async (h, j) => { if (i + j < CYCLES) { await runC(h, `cy${i + j}`); } }));
    await Promise.all(HOSTS.map(async (h, j) => { if (i + j < CYCLES) await docker(h, ['rm', '-f', `cy${i + j}`]); }));
  }
  const settled = await waitUntil(async () => {
    const now = await Promise.all(HOSTS.map(counts));
    return now.every((x, k) => x.ports === before[k]!.ports && x.veths === before[k]!.veths && x.addrs === before[k]!.addrs && x.flows === before[k]!.flows);
  }, 60_000, 500);
  const after = await Promise.all(HOSTS.map(counts));
  t.not(settled, undefined, JSON.stringify({ before, after }));
  for (const [k, h] of HOSTS.entries()) {
    t.true(after[k]!.fds <= before[k]!.fds + 5, `${h} agent fds ${before[k]!.fds} -> ${after[k]!.fds}`);
    t.log(`${h}: agent RSS ${before[k]!.rssMb.toFixed(0)} -> ${after[k]!.rssMb.toFixed(0)} MB, fds ${before[k]!.fds} -> ${after[k]!.fds}`);
    t.true(after[k]!.rssMb < before[k]!.rssMb * 2 + 20, `${h} agent RSS ${before[k]!.rssMb.toFixed(0)} -> ${after[k]!.rssMb.toFixed(0)} MB`);
  }
});

serial('a host crashes: it shows down; coordctl leave removes it everywhere; a new machine with the same name re-joins cleanly', async (t) => {
  await crashHost(lab.dir, 'h4');
  // its Watch stream dies with it: noticed by gRPC keepalive (~15 s), then --down-after (10 s in the lab)
  const down = await waitUntil(async () => (await status()).hosts.find((h) => h.name === 'h4')?.state === 'down', 60_000, 500);
  t.not(down, undefined, 'h4 shows down');
  const grep = async (h: string) => (await inHost(h, ['ovs-vsctl', 'list-ports', 'gremesh0'])).stdout;
  t.regex(await grep('h1'), /gre-c612000e/, 'a down host stays a peer: the coordinator’s opinion tears nothing down');
  t.is((await coordctl(lab.dir, ['leave', 'h4'])).exitCode, 0);
  t.not(await waitUntil(async () => (await Promise.all(['h1', 'h2', 'h3'].map(grep))).every((p) => !p.includes('gre-c612000e')), 20_000, 100), undefined, 'its tunnel is gone everywhere');
  // a new machine (lab host h5, another underlay address) takes the name h4
  const joinArgs = (await join(lab.dir, 'h4')).map((a) => a);
  startAgent(lab.dir, 'h5', joinArgs);
  const meshed = await waitUntil(async () => (await Promise.all(['h1', 'h2', 'h3'].map(grep))).every((p) => p.includes(`gre-c612000f`)), 30_000, 100);
  t.not(meshed, undefined, 'everyone has a tunnel to the new h4 at 198.18.0.15');
  const hosts = JSON.parse((await coordctl(lab.dir, ['hosts', '-o', 'json'])).stdout) as { name: string; underlayIp: string; slices: { cidr: string }[] }[];
  const h4 = hosts.find((h) => h.name === 'h4')!;
  t.is(h4.underlayIp, hostIp(5));
  t.is(h4.slices[0]!.cidr, '198.18.67.0/24', 'the name gets its slice back');
  await runC('h5', 'c-new');
  t.true(await attached('h5', 'c-new'));
  t.regex((await ipOf('h5', 'c-new'))!, /^198\.18\.67\./);
  t.true(await pingsOnce('h1', 'c-h1', (await ipOf('h5', 'c-new'))!), 'reachable');
  void agentStatus;
});
