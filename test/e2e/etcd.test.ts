// Several coordinators on one etcd cluster, end to end: a lab with 3 etcd members (each in
// its own namespace), 2 coordinators (ctl 198.18.0.2 = A, ctl2 198.18.0.8 = B) and 2 hosts
// whose agents watch through different coordinators (h1: A first, h2: B first), with a
// container on each in a ping mesh. Joins are made by the burst helper from the ctl
// namespace, spread over both coordinators. Real etcd 3.4, real OVS, real packets.
import test from 'ava';
import { isRoot } from '../helpers/cli.js';
import { labUp, type TestLab } from '../helpers/lab.js';
import { sh, waitUntil } from '../helpers/endpoint.js';
import { startJoinBurst } from '../helpers/burst.js';
import { PingMesh, type Loss } from '../helpers/ping-mesh.js';
import {
  agentStatus,
  coordctl,
  coordinatorAddr,
  coordinatorDir,
  joinAll,
  startCoordinator,
  stopProcess,
} from '../../deploy/lab/mesh.js';
import { etcdHealth, readState, recordProcess, startEtcdMember } from '../../deploy/lab/lab.js';
import { IMAGE, etcdEndpoints, hostEnv } from '../../deploy/lab/plan.js';
import { ETCD_BIN } from '../helpers/etcd.js';

const serial = isRoot && ETCD_BIN ? test.serial : test.skip;
const SOAK = process.env.GREMESH_SOAK === '1';
/** joins in each burst a component is killed in (make soak: 100) */
const BURST = Number(process.env.GREMESH_ETCD_BURST ?? (SOAK ? 100 : 30));
/** joins spread over both coordinators at once, 20 in flight (make soak: 100) */
const SPREAD = Number(process.env.GREMESH_ETCD_SPREAD ?? (SOAK ? 100 : 50));
const HOSTS = ['h1', 'h2'];
const A = coordinatorAddr(1);
const B = coordinatorAddr(2);
// /27 slices: room for the real hosts, the spread and the bursts
const COORD_FLAGS = ['--host-prefix-len', '27'];
/** OVS's userspace datapath can drop a packet on a host's other ports when ports are added: see faults.test.ts */
const OPS_PER_LOST_PACKET = 20;

let lab: TestLab;
const mesh = new PingMesh();
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const node = (h: string) => readState(lab.dir)!.plan.nodes.find((n) => n.name === h)!;
const inNode = (h: string, argv: string[], reject = false) =>
  sh(['nsenter', `--net=/run/netns/${node(h).ns}`, ...argv], hostEnv(lab.dir, node(h)), reject);
const docker = async (h: string, a: string[]) => (await inNode(h, ['docker', ...a], true)).stdout.trim();
const pidOf = (h: string, c: string) => docker(h, ['inspect', '-f', '{{.State.Pid}}', c]);
const ipOf = async (h: string, c: string): Promise<string | undefined> => {
  const l = JSON.parse(
    (await sh(['nsenter', '-t', await pidOf(h, c), '-n', 'ip', '-j', '-4', 'addr', 'show'], {}, false)).stdout || '[]',
  ) as { ifname: string; addr_info: { local: string }[] }[];
  return l.find((x) => x.ifname !== 'lo')?.addr_info[0]?.local;
};
type HostJson = { name: string; underlayIp: string; state: string; slices: { network: string; cidr: string }[] };
/** coordctl in the ctl namespace, given both coordinators (A first) */
const hostsJson = async () => {
  const r = await coordctl(lab.dir, ['hosts', '-o', 'json']);
  if (r.exitCode !== 0) throw new Error(`coordctl hosts: ${r.stderr}`);
  return JSON.parse(r.stdout) as HostJson[];
};
const coordctlAt = (addr: string, args: string[]) => coordctl(lab.dir, ['--coordinator', addr, ...args]);
/** the host list once it has n hosts (a coordinator lists what another admitted once its watch brought it in: ms) */
const hostsWhen = async (n: number) => {
  let hosts: HostJson[] = [];
  await waitUntil(async () => (hosts = await hostsJson()).length === n, 10_000, 50);
  return hosts;
};

/** no slice twice in any network, no underlay address twice */
function uniqueness(hosts: HostJson[]): { slicesTwice: number; underlayTwice: number } {
  const slices = hosts.flatMap((h) => h.slices.map((s) => `${s.network}:${s.cidr}`));
  const ips = hosts.map((h) => h.underlayIp);
  return { slicesTwice: slices.length - new Set(slices).size, underlayTwice: ips.length - new Set(ips).size };
}

/** count joins (names PREFIX0..), spread over A and B (or in order), from the ctl namespace */
const burst = (prefix: string, count: number, underlayBase: string, concurrency = 10, order = `${A},${B}`) =>
  startJoinBurst(node('ctl').ns, [
    '--coordinator',
    order,
    '--pki',
    `${coordinatorDir(lab.dir)}/pki`,
    '--count',
    String(count),
    '--prefix',
    prefix,
    '--underlay-base',
    underlayBase,
    '--concurrency',
    String(concurrency),
    '--timeout',
    '600',
  ]);

/** the pairs lost no more than the userspace datapath's port-add budget (ops port additions per host) */
function lossWithinChurn(t: { true(a: boolean, m?: string): void; log(...a: unknown[]): void }, l: Loss, ops: number) {
  t.log(PingMesh.describe(l));
  const budget = 1 + Math.ceil((2 * ops) / OPS_PER_LOST_PACKET);
  for (const p of l.pairs)
    t.true(
      p.lost <= budget,
      `${p.pair} lost ${p.lost} of ${p.sent} (more than ${budget} while ${ops} ports were added)`,
    );
}

/** what the agent's data plane has: its container port and its tunnel to the other real host, as OVS rows and OpenFlow ports */
const dataPlaneIds = async (h: string) => {
  const find = async (cond: string) =>
    (
      await inNode(h, [
        'ovs-vsctl',
        '--columns=_uuid,name,ofport',
        '--format=csv',
        '--no-headings',
        'find',
        'Interface',
        cond,
      ])
    ).stdout.trim();
  return [
    await find('external_ids:container_id!=""'),
    await find(`external_ids:gremesh-peer=${h === 'h1' ? 'h2' : 'h1'}`),
  ];
};

const leaderNode = async (): Promise<string> => {
  const r = await inNode('ctl', [
    'etcdctl',
    '--endpoints',
    etcdEndpoints(readState(lab.dir)!.plan),
    'endpoint',
    'status',
    '-w',
    'json',
  ]);
  const list = JSON.parse(r.stdout) as {
    Endpoint: string;
    Status: { header: { member_id: number }; leader: number };
  }[];
  const leader = list.find((x) => x.Status.leader === x.Status.header.member_id)!;
  const ip = /\/\/([\d.]+):/.exec(leader.Endpoint)![1]!;
  return readState(lab.dir)!.plan.nodes.find((n) => n.ip === ip)!.name;
};
const restartEtcd = async (name: string) => {
  const s = readState(lab.dir)!;
  const n = s.plan.nodes.find((x) => x.name === name)!;
  recordProcess(lab.dir, { pid: startEtcdMember(lab.dir, s.plan, n), what: 'etcd', ns: n.ns, node: name });
};
const etcdHealthy = async () => Object.values(await etcdHealth(readState(lab.dir)!.plan)).filter(Boolean).length;

/** tunnel ports on each real host */
const greCounts = () =>
  Promise.all(
    HOSTS.map(
      async (h) =>
        (await inNode(h, ['ovs-vsctl', 'list-ports', 'gremesh0'])).stdout
          .split('\n')
          .filter((p) => p.startsWith('gre-')).length,
    ),
  );
/** every real agent holds every host the coordinators list: a tunnel port per peer */
const agentsHoldAll = async (ms: number) => {
  const want = (await hostsJson()).length - 1;
  return (await waitUntil(async () => (await greCounts()).every((x) => x === want), ms, 500)) !== undefined;
};

/** both coordinators answer (neither died of what the case did to etcd) */
const bothServe = async () =>
  (await Promise.all([A, B].map((c) => coordctlAt(c, ['networks', '-o', 'json'])))).map((r) => r.exitCode);

let joinArgs: Record<string, string[]> = {};

test.before(async () => {
  if (!isRoot || !ETCD_BIN) return;
  lab = await labUp(2, ['--etcd', '3', '--coordinators', '2', `--coordinator-flags=${COORD_FLAGS.join(' ')}`]);
  // h2's agent tries B first: each coordinator serves half the agents
  joinArgs = await joinAll(lab.dir, HOSTS, [], (h, a) =>
    h === 'h2' ? a.map((x) => (x === `${A},${B}` ? `${B},${A}` : x)) : a,
  );
  for (const h of HOSTS)
    await docker(h, [
      'run',
      '-d',
      '--net=none',
      '--name',
      `c-${h}`,
      '--label',
      'gremesh.network=default',
      IMAGE,
      'sleep',
      'infinity',
    ]);
  await waitUntil(async () => (await Promise.all(HOSTS.map((h) => ipOf(h, `c-${h}`)))).every(Boolean), 60_000, 100);
  mesh.update(
    await Promise.all(
      HOSTS.map(async (h) => ({ name: h, pid: await pidOf(h, `c-${h}`), ip: (await ipOf(h, `c-${h}`))! })),
    ),
  );
});

test.after.always(async () => {
  mesh.stop();
  if (lab) await lab.down();
});

serial('the lab: 3 etcd members healthy, 2 coordinators, each agent watching through its own one', async (t) => {
  t.is(await etcdHealthy(), 3);
  t.true(joinArgs.h1!.join(' ').includes(`--coordinator ${A},${B}`), 'coordctl join names both coordinators');
  const watching = await waitUntil(
    () => agentStatus(lab.dir, 'h1')?.coordinator === A && agentStatus(lab.dir, 'h2')?.coordinator === B,
    30_000,
    100,
  );
  t.not(
    watching,
    undefined,
    `h1 through A, h2 through B (${agentStatus(lab.dir, 'h1')?.coordinator}, ${agentStatus(lab.dir, 'h2')?.coordinator})`,
  );
  const from = mesh.mark();
  await sleep(2000);
  const l = await mesh.lossSince(from);
  t.true(l.sent > 0 && l.lost === 0, PingMesh.describe(l));
});

serial(
  `${SPREAD} concurrent joins spread over both coordinators, with networks created through both and duplicate underlay addresses raced: no slice, GRE key or address twice`,
  async (t) => {
    const b = burst('s', SPREAD, '198.18.1.0', 20);
    // meanwhile: 4 networks, 2 through each coordinator; and 10 pairs of hosts claiming one
    // underlay address each, one of the pair through A, the other through B
    const before = (await hostsJson()).length;
    const nets = [0, 1, 2, 3].map((i) =>
      coordctlAt(i % 2 ? B : A, [
        'network',
        'create',
        `n${i}`,
        '--cidr',
        `198.19.${i * 64}.0/18`,
        '--host-prefix-len',
        '27',
      ]),
    );
    const dupA = burst('da', 10, '198.18.3.1', 10, `${A},${B}`);
    const dupB = burst('db', 10, '198.18.3.1', 10, `${B},${A}`);
    const exit = await b.done;
    await Promise.all([dupA.done, dupB.done]);
    t.is(exit, 0, JSON.stringify(b.events.filter((e) => e.event === 'failed').slice(0, 3)));
    t.is(b.summary()?.ok, SPREAD);
    t.log(
      `${SPREAD} joins over A and B: ${b.summary()?.ms} ms, errors seen by the clients ${JSON.stringify(b.summary()?.errors)}`,
    );
    for (const r of await Promise.all(nets)) t.is(r.exitCode, 0, r.stderr);
    const hosts = await hostsWhen(before + SPREAD + 10);
    const dupWon = Array.from({ length: 10 }, (_, i) =>
      [`da${i}`, `db${i}`].filter((n) => hosts.some((h) => h.name === n)),
    );
    t.true(
      dupWon.every((w) => w.length === 1),
      `each raced underlay address went to exactly one host: ${JSON.stringify(dupWon)}`,
    );
    t.regex(
      JSON.stringify([...dupA.events, ...dupB.events].filter((e) => e.event === 'failed')),
      /ALREADY_EXISTS: underlay IP 198\.18\.3\.\d+ is already used by host d[ab]\d/,
    );
    t.is(hosts.length, before + SPREAD + 10);
    t.deepEqual(uniqueness(hosts), { slicesTwice: 0, underlayTwice: 0 });
    const networks = JSON.parse((await coordctlAt(B, ['networks', '-o', 'json'])).stdout) as {
      name: string;
      greKey: number;
    }[];
    t.is(networks.length, 5);
    t.is(new Set(networks.map((n) => n.greKey)).size, 5, 'no GRE key twice');
    for (const h of hosts) t.is(h.slices.length, 5, `${h.name} has a slice of every network`);
    // B's view is A's view
    const key = (l: HostJson[]) => JSON.stringify(l.map((h) => [h.name, h.underlayIp, h.slices]).sort());
    const listAt = async (c: string) =>
      key(JSON.parse((await coordctlAt(c, ['hosts', '-o', 'json'])).stdout) as HostJson[]);
    let atA = '';
    let atB = '';
    await waitUntil(async () => (atA = await listAt(A)) === (atB = await listAt(B)), 10_000, 50);
    t.is(atA, atB, 'both coordinators list the same hosts and slices');
    t.true(await agentsHoldAll(60_000), `both agents hold every host (${await greCounts()})`);
  },
);

serial(
  `kill -9 of coordinator A (serving h1) in the middle of a burst of ${BURST} joins: h1 fails over to B, every join finishes, no slice twice, the data plane is not rebuilt`,
  async (t) => {
    const before = { h1: await dataPlaneIds('h1'), h2: await dataPlaneIds('h2') };
    const count = (await hostsJson()).length;
    const from = mesh.mark();
    const b = burst('k', BURST, '198.18.4.0');
    await waitUntil(() => b.admitted().length >= Math.ceil(BURST * 0.3) || b.summary() !== undefined, 300_000, 5);
    t.true(b.admitted().length < BURST, `killed mid-burst (${b.admitted().length} of ${BURST} acknowledged)`);
    await stopProcess(lab.dir, 'ctl', 'coordinator', 'SIGKILL');
    const t0 = Date.now();
    const moved = await waitUntil(
      () => {
        const s = agentStatus(lab.dir, 'h1');
        return s?.connected === true && s.coordinator === B;
      },
      30_000,
      10,
    );
    t.not(moved, undefined, "h1's agent watches through B");
    t.log(`coordinator A killed -> h1's agent watching through B after ${Date.now() - t0} ms (status file)`);
    const exit = await b.done;
    t.is(exit, 0, JSON.stringify(b.events.filter((e) => e.event === 'failed').slice(0, 3)));
    t.is(b.summary()?.ok, BURST, 'every join finished');
    t.log(`burst: ${JSON.stringify(b.summary())}`);
    const hosts = await hostsWhen(count + BURST);
    t.is(hosts.length, count + BURST);
    t.deepEqual(uniqueness(hosts), { slicesTwice: 0, underlayTwice: 0 });
    // every real agent holds every host: a tunnel port per peer
    const want = hosts.length - 1;
    const tunnels = await waitUntil(async () => (await greCounts()).every((x) => x === want), 60_000, 500);
    t.not(tunnels, undefined, `both agents hold all ${want} peers (${JSON.stringify(await greCounts())})`);
    t.deepEqual(
      { h1: await dataPlaneIds('h1'), h2: await dataPlaneIds('h2') },
      before,
      'container ports and the h1-h2 tunnel are the same OVS rows',
    );
    lossWithinChurn(t, await mesh.lossSince(from), BURST);
    await startCoordinator(lab.dir, COORD_FLAGS, 1);
  },
);

serial(
  `kill -9 of the etcd leader in the middle of a burst of ${BURST} joins: every join finishes, no slice twice, agents stay`,
  async (t) => {
    const leader = await leaderNode();
    const count = (await hostsJson()).length;
    const from = mesh.mark();
    const b = burst('l', BURST, '198.18.5.0');
    await waitUntil(() => b.admitted().length >= Math.ceil(BURST * 0.3) || b.summary() !== undefined, 300_000, 5);
    t.true(b.admitted().length < BURST, `killed mid-burst (${b.admitted().length} of ${BURST} acknowledged)`);
    await stopProcess(lab.dir, leader, 'etcd', 'SIGKILL');
    t.log(`etcd leader ${leader} killed`);
    const exit = await b.done;
    t.is(exit, 0, JSON.stringify(b.events.filter((e) => e.event === 'failed').slice(0, 3)));
    t.is(b.summary()?.ok, BURST, 'every join finished');
    t.log(`burst: ${JSON.stringify(b.summary())}`);
    t.is(await etcdHealthy(), 2, 'two members serve on');
    const hosts = await hostsWhen(count + BURST);
    t.is(hosts.length, count + BURST);
    t.deepEqual(uniqueness(hosts), { slicesTwice: 0, underlayTwice: 0 });
    for (const h of HOSTS) t.true(agentStatus(lab.dir, h)?.connected, `${h}'s agent watches`);
    t.true(await agentsHoldAll(60_000), `both agents hold every host (${await greCounts()})`);
    lossWithinChurn(t, await mesh.lossSince(from), BURST);
    t.deepEqual(await bothServe(), [0, 0], 'both coordinators serve');
    await restartEtcd(leader);
    t.not(await waitUntil(async () => (await etcdHealthy()) === 3, 60_000, 500), undefined, 'the member is back');
  },
);

serial(
  'quorum loss (2 of 3 etcd members down): writes are refused with the reason, reads and the data plane go on; quorum back: writes work and reach the agents',
  async (t) => {
    const victims = ['e1', 'e2'];
    for (const v of victims) await stopProcess(lab.dir, v, 'etcd', 'SIGKILL');
    const from = mesh.mark();
    const t0 = Date.now();
    const refused = await coordctl(lab.dir, ['join', 'q1']);
    t.is(refused.exitCode, 1);
    t.regex(refused.stderr, /etcd unavailable/);
    t.log(`join refused after ${Date.now() - t0} ms: ${refused.stderr.trim()}`);
    const read = await coordctl(lab.dir, ['hosts', '-o', 'json']);
    t.is(read.exitCode, 0, 'reads are served from the coordinator');
    await sleep(Math.max(0, 3000 - (Date.now() - from.at)));
    const l = await mesh.lossSince(from);
    t.log(PingMesh.describe(l));
    t.true(l.sent > 0 && l.lost === 0, 'the data plane forwards: no ping lost');
    for (const v of victims) await restartEtcd(v);
    t.not(await waitUntil(async () => (await etcdHealthy()) === 3, 60_000, 500), undefined, 'quorum is back');
    const back = await waitUntil(async () => (await coordctl(lab.dir, ['join', 'q1'])).exitCode === 0, 60_000, 500);
    t.not(back, undefined, 'join tokens are issued again');
    const q = burst('q', 2, '198.18.6.1');
    t.is(await q.done, 0, JSON.stringify(q.events.filter((e) => e.event === 'failed')));
    // listed by A too once its watch brought in q1 (admitted through B)
    const lists = async (addr: string) => {
      const names = (JSON.parse((await coordctlAt(addr, ['hosts', '-o', 'json'])).stdout) as HostJson[]).map(
        (h) => h.name,
      );
      return names.includes('q0') && names.includes('q1');
    };
    const listed = await waitUntil(async () => (await lists(A)) && (await lists(B)), 30_000, 50);
    t.not(listed, undefined, 'both coordinators list the hosts admitted after quorum came back');
    t.true(
      await agentsHoldAll(60_000),
      `hosts admitted after quorum came back reach both agents (${await greCounts()})`,
    );
    const nets = await coordctlAt(B, [
      'network',
      'create',
      'nq',
      '--cidr',
      '198.18.128.0/18',
      '--host-prefix-len',
      '27',
    ]);
    t.is(nets.exitCode, 0, `a network is made through B again: ${nets.stderr}`);
    t.deepEqual(await bothServe(), [0, 0], 'both coordinators served through it');
  },
);
