// Containers as users run them: `docker run --net=none --label gremesh.network=...`
// through each lab host's own dockerd; the agents plug them in. Real packets, TCP too.
import test from 'ava';
import * as fs from 'node:fs';
import { isRoot } from '../helpers/cli.js';
import { labUp, type TestLab } from '../helpers/lab.js';
import { sh, waitUntil } from '../helpers/endpoint.js';
import {
  agentStateDir,
  agentStatus,
  coordctl,
  joinAll,
  startAgent,
  startCoordinator,
  stopProcess,
  BINS,
} from '../../deploy/lab/mesh.js';
import { IMAGE, OUTSIDE_IP, hostEnv } from '../../deploy/lab/plan.js';

const serial = isRoot ? test.serial : test.skip;
let lab: TestLab;
let args: Record<string, string[]> = {};
const HOSTS = ['h1', 'h2', 'h3'];

const docker = async (h: string, a: string[], reject = true) =>
  (await lab.exec(h, ['docker', ...a], { reject })).stdout.trim();
const pidOf = async (h: string, c: string) => Number(await docker(h, ['inspect', '-f', '{{.State.Pid}}', c]));
/** run a host binary (iputils ping, ip) inside the container's network namespace */
const inC = async (h: string, c: string, argv: string[], reject = false) =>
  sh(['nsenter', '-t', String(await pidOf(h, c)), '-n', ...argv], {}, reject);
/** the container's address once its interface is up (the agent raises it after the flows exist) */
const ipOf = async (h: string, c: string): Promise<string | undefined> => {
  const r = await inC(h, c, ['ip', '-j', '-4', 'addr', 'show']);
  const links = JSON.parse(r.stdout || '[]') as { ifname: string; flags?: string[]; addr_info: { local: string }[] }[];
  const l = links.find((x) => x.ifname !== 'lo');
  return l && (l.flags ?? []).includes('UP') ? l.addr_info[0]?.local : undefined;
};
const run = async (
  h: string,
  name: string,
  labels: Record<string, string> = { 'gremesh.network': 'default' },
  net = 'none',
) =>
  docker(h, [
    'run',
    '-d',
    `--net=${net}`,
    '--name',
    name,
    ...Object.entries(labels).flatMap(([k, v]) => ['--label', `${k}=${v}`]),
    IMAGE,
    'sleep',
    '3600',
  ]);
const attached = async (h: string, c: string, timeoutMs = 20_000) =>
  (await waitUntil(async () => (await ipOf(h, c)) !== undefined, timeoutMs)) !== undefined;
const pings = async (h: string, c: string, ip: string, timeoutMs = 10_000) =>
  (await waitUntil(async () => (await inC(h, c, ['ping', '-c', '1', '-W', '1', ip])).exitCode === 0, timeoutMs, 10)) !==
  undefined;
const inHost = async (h: string, argv: string[]) => {
  const node = lab.state.plan.nodes.find((n) => n.name === h)!;
  return sh(['nsenter', `--net=/run/netns/${node.ns}`, ...argv], hostEnv(lab.dir, node), false);
};
const containerPorts = async (h: string) =>
  (
    await inHost(h, [
      'ovs-vsctl',
      '--columns=name',
      '--format=csv',
      '--no-headings',
      'find',
      'Interface',
      'external_ids:container_id!=""',
    ])
  ).stdout
    .split('\n')
    .filter(Boolean);
const hostVeths = async (h: string) =>
  (JSON.parse((await inHost(h, ['ip', '-j', 'link', 'show'])).stdout) as { ifname: string }[])
    .map((l) => l.ifname)
    .filter((n) => /^gm[0-9a-f]{11}$/.test(n));
const ipamHolders = (h: string) => {
  try {
    return Object.values(
      JSON.parse(fs.readFileSync(`${agentStateDir(lab.dir, h)}/ipam.json`, 'utf8')) as Record<
        string,
        Record<string, string>
      >,
    ).flatMap((n) => Object.values(n));
  } catch {
    return [];
  }
};

test.before(async () => {
  if (!isRoot) return;
  lab = await labUp(3);
  await startCoordinator(lab.dir);
  args = await joinAll(lab.dir, HOSTS);
});
test.after.always(async () => {
  if (lab) await lab.down();
});

serial(
  'docker run --net=none --label gremesh.network=default on 3 hosts: every container pings every other; each reaches the outside as its host; TCP works',
  async (t) => {
    for (const h of HOSTS) await run(h, `c-${h}`);
    for (const h of HOSTS) t.true(await attached(h, `c-${h}`), `c-${h} got an address`);
    const ips: Record<string, string> = {};
    for (const h of HOSTS) ips[h] = (await ipOf(h, `c-${h}`))!;
    t.is(ips.h1, '198.18.64.2', 'the first free address of h1’s slice');
    for (const a of HOSTS)
      for (const b of HOSTS) if (a !== b) t.true(await pings(a, `c-${a}`, ips[b]!), `c-${a} -> c-${b}`);
    // the outside sees the host's underlay address as source
    const cap = lab.exec('out', ['timeout', '5', 'tcpdump', '-n', '-l', '-i', 'eth0', 'icmp[icmptype] == icmp-echo'], {
      reject: false,
      timeoutMs: 15_000,
    });
    await new Promise((r) => setTimeout(r, 1500));
    for (const h of HOSTS) {
      const ok = await pings(h, `c-${h}`, OUTSIDE_IP);
      if (!ok) {
        const d = await inHost(h, ['sh', '-c', 'ip route; nft list ruleset 2>&1; sysctl net.ipv4.ip_forward']);
        t.log(
          d.stdout,
          d.stderr,
          fs
            .readFileSync(`${lab.dir}/${h}/agent.log`, 'utf8')
            .split('\n')
            .filter((l) => /"level":(40|50)/.test(l))
            .join('\n'),
        );
      }
      t.true(ok, `c-${h} -> outside`);
    }
    const seen = (await cap).stdout;
    for (const h of HOSTS) {
      const under = lab.state.plan.nodes.find((n) => n.name === h)!.ip;
      t.regex(
        seen,
        new RegExp(`IP ${under.replace(/\./g, '\\.')} > ${OUTSIDE_IP.replace(/\./g, '\\.')}`),
        `outside sees ${h}'s underlay ${under}`,
      );
    }
    t.notRegex(seen, /IP 198\.18\.6\d\./, 'no container address leaks to the outside');
    // TCP, through the gateway and across hosts (ping alone misses checksum offload faults)
    const srv = lab.exec('out', ['timeout', '10', 'busybox', 'nc', '-l', '-p', '8080'], {
      reject: false,
      timeoutMs: 20_000,
    });
    await new Promise((r) => setTimeout(r, 500));
    await docker('h2', ['exec', 'c-h2', 'sh', '-c', 'echo tcp-out | nc -w 3 198.51.100.1 8080']);
    t.regex((await srv).stdout, /tcp-out/);
    // 2 s of full-size segments across hosts (iperf3 from the host, inside the containers' namespaces)
    const server = inC('h1', 'c-h1', ['timeout', '30', 'iperf3', '-s', '-1']);
    await new Promise((r) => setTimeout(r, 700));
    const client = await inC('h3', 'c-h3', ['timeout', '30', 'iperf3', '-c', ips.h1!, '-t', '2', '-J']);
    await server;
    const recv = (JSON.parse(client.stdout) as { end: { sum_received: { bytes: number } } }).end.sum_received.bytes;
    t.true(recv >= 1024 * 1024, `${recv} bytes over TCP from h3 to h1 in 2 s`);
  },
);

serial(
  'the gateway is no way into the host: TCP to a service on the gateway address and link-local addresses are refused until --gateway-allow opens them; Docker’s firewall holds our rules',
  async (t) => {
    const gw = (await inC('h1', 'c-h1', ['ip', 'route', 'show', 'default'])).stdout.match(/via (\S+)/)?.[1];
    t.truthy(gw, 'c-h1 has a default route');
    // a metadata-style address, served by the outside namespace (reached through the host's default route)
    await lab.exec('out', ['ip', 'addr', 'replace', '169.254.169.254/32', 'dev', 'eth0']);
    const tcpToGateway = async () => {
      // the server gives up soon after the client's 2 s connect timeout (a refused case waits it out)
      const srv = lab.exec('h1', ['timeout', '4', 'busybox', 'nc', '-l', '-p', '8081'], {
        reject: false,
        timeoutMs: 15_000,
      });
      await new Promise((r) => setTimeout(r, 300));
      const c = await inC('h1', 'c-h1', ['sh', '-c', `echo hi | timeout 3.5 busybox nc -w 2 ${gw} 8081`]);
      await srv;
      return c.exitCode === 0;
    };
    t.false(await tcpToGateway(), 'no TCP connection to a service on the host through the gateway');
    // the host stack sees the container's frames on the veth too (userspace datapath): it
    // must not answer them there. ARP for the gateway and for the host's own underlay
    // address: answered only through the gateway port (its MAC), never by the veth
    const gwMac = (
      JSON.parse((await inHost('h1', ['ip', '-j', 'link', 'show', 'gmgw1'])).stdout) as { address: string }[]
    )[0]!.address;
    const underlay = lab.state.plan.nodes.find((n) => n.name === 'h1')!.ip;
    for (const target of [gw!, underlay]) {
      const out = (await inC('h1', 'c-h1', ['arping', '-c', '2', '-w', '2', '-i', 'eth0', target])).stdout;
      const macs = new Set([...out.matchAll(/bytes from ([0-9a-f:]{17})/gi)].map((m) => m[1]!.toLowerCase()));
      t.deepEqual([...macs], [gwMac], `ARP for ${target} answered by ${[...macs].join(', ') || 'nobody'}`);
    }
    t.true(
      (await inC('h1', 'c-h1', ['ping', '-c', '1', '-W', '2', gw!])).exitCode === 0,
      'ICMP to the gateway is allowed',
    );
    t.false(
      (await inC('h1', 'c-h1', ['ping', '-c', '1', '-W', '2', '169.254.169.254'])).exitCode === 0,
      'no link-local (metadata) address through the gateway',
    );
    // Docker runs with its defaults here: its FORWARD policy is DROP, and egress works
    // (first case) because of our two rules at the top of DOCKER-USER
    const fw = (await inHost('h1', ['iptables', '-S', 'FORWARD'])).stdout;
    t.regex(fw, /^-P FORWARD DROP$/m, "dockerd's FORWARD policy is DROP on this host");
    const user = (await inHost('h1', ['iptables', '-S', 'DOCKER-USER'])).stdout.split('\n');
    t.regex(user[1] ?? '', /-i gmgw\+ ! -o gmgw\+ .*--comment gremesh -j ACCEPT/);
    t.regex(user[2] ?? '', /-o gmgw\+ .*RELATED,ESTABLISHED.*--comment gremesh -j ACCEPT/);
    // the positive control: the same service and address, opened with --gateway-allow
    await stopProcess(lab.dir, 'h1', 'agent');
    startAgent(lab.dir, 'h1', args.h1!, ['--gateway-allow', 'tcp/8081,link-local']);
    const opened = await waitUntil(
      async () =>
        (await inHost('h1', ['nft', 'list', 'table', 'ip', 'gremesh'])).stdout.includes('tcp dport 8081 accept'),
      20_000,
      100,
    );
    t.not(opened, undefined, 'the agent opened tcp/8081');
    t.true(await tcpToGateway(), 'with --gateway-allow tcp/8081 the connection is made');
    t.true(await pings('h1', 'c-h1', '169.254.169.254'), 'with --gateway-allow link-local the address is reached');
    await stopProcess(lab.dir, 'h1', 'agent');
    startAgent(lab.dir, 'h1', args.h1!);
    const closed = await waitUntil(
      async () => !(await inHost('h1', ['nft', 'list', 'table', 'ip', 'gremesh'])).stdout.includes('tcp dport 8081'),
      20_000,
      100,
    );
    t.not(closed, undefined, 'closed again without the flag');
    await lab.exec('out', ['ip', 'addr', 'del', '169.254.169.254/32', 'dev', 'eth0'], { reject: false });
  },
);

serial(
  'MTU: the largest packet the MTU allows crosses hosts with DF; one byte more fails with "message too long"',
  async (t) => {
    const mtu = agentStatus(lab.dir, 'h1')!.mtu.default!;
    t.is(mtu, 1458);
    const dst = (await ipOf('h2', 'c-h2'))!;
    const ok = await inC('h1', 'c-h1', ['ping', '-M', 'do', '-c', '2', '-W', '2', '-s', String(mtu - 28), dst]);
    t.is(ok.exitCode, 0, `ping -M do -s ${mtu - 28}: ${ok.stdout}${ok.stderr}`);
    const big = await inC('h1', 'c-h1', ['ping', '-M', 'do', '-c', '1', '-W', '2', '-s', String(mtu - 27), dst]);
    t.not(big.exitCode, 0);
    t.regex(big.stdout + big.stderr, /message too long|mtu=1458/i, 'the sender is told, not silently dropped');
  },
);

serial('labels: gremesh.ip, .mac, .mtu, .gateway=none, .iface are honoured', async (t) => {
  await run('h1', 'lab-static', {
    'gremesh.network': 'default',
    'gremesh.ip': '198.18.64.200',
    'gremesh.mac': '0a:58:00:00:00:c8',
    'gremesh.mtu': '1400',
    'gremesh.iface': 'net0',
  });
  t.true(await attached('h1', 'lab-static'));
  const link = JSON.parse((await inC('h1', 'lab-static', ['ip', '-j', 'link', 'show', 'net0'])).stdout) as {
    address: string;
    mtu: number;
  }[];
  t.is(link[0]!.address, '0a:58:00:00:00:c8');
  t.is(link[0]!.mtu, 1400);
  t.is(await ipOf('h1', 'lab-static'), '198.18.64.200');
  // the route follows the link coming up (one ip -batch, link first)
  await waitUntil(async () => /default via/.test((await inC('h1', 'lab-static', ['ip', 'route'])).stdout), 5000);
  t.regex((await inC('h1', 'lab-static', ['ip', 'route'])).stdout, /default via 198\.18\.64\.1 dev net0/);
  await run('h1', 'lab-nogw', { 'gremesh.network': 'default', 'gremesh.gateway': 'none' });
  t.true(await attached('h1', 'lab-nogw'));
  t.notRegex((await inC('h1', 'lab-nogw', ['ip', 'route'])).stdout, /default/);
  t.true(
    await pings('h1', 'lab-static', (await ipOf('h2', 'c-h2'))!),
    'static-addressed container reaches across hosts',
  );
});

serial(
  'bad input: the container is left unattached and untouched, one log line, the reason in coordctl status; others keep working',
  async (t) => {
    await run('h2', 'bad-net', { 'gremesh.network': 'nosuch' });
    await run('h2', 'bad-ip', { 'gremesh.network': 'default', 'gremesh.ip': '198.18.99.5' });
    await run('h2', 'bad-taken', { 'gremesh.network': 'default', 'gremesh.ip': (await ipOf('h2', 'c-h2'))! });
    await run('h2', 'bad-mac', { 'gremesh.network': 'default', 'gremesh.mac': 'zz:00:00:00:00:01' });
    await run('h2', 'bad-mtu', { 'gremesh.network': 'default', 'gremesh.mtu': '9000' });
    await run('h2', 'bad-mode', { 'gremesh.network': 'default' }, 'host');
    await run('h2', 'good-too');
    t.true(await attached('h2', 'good-too'), 'a good container next to bad ones is attached');
    const bad = ['bad-net', 'bad-ip', 'bad-taken', 'bad-mac', 'bad-mtu'];
    for (const c of bad) t.is(await ipOf('h2', c), undefined, `${c} untouched`);
    const reasons: Record<string, RegExp> = {
      'bad-net': /unknown network "nosuch"/,
      'bad-ip': /not a usable address of this host's slice/,
      'bad-taken': /is taken by container/,
      'bad-mac': /not a unicast MAC/,
      'bad-mtu': /gremesh\.mtu "9000" must be/,
      'bad-mode': /network mode is "host"/,
    };
    const shown = await waitUntil(
      async () => {
        const s = await coordctl(lab.dir, ['host', 'h2', '-o', 'json']);
        const errs = (JSON.parse(s.stdout) as { attachErrors: { container: string }[] }).attachErrors.map(
          (e) => e.container,
        );
        return Object.keys(reasons).every((c) => errs.includes(c));
      },
      20_000,
      250,
    );
    t.not(shown, undefined, 'every reason reaches coordctl');
    const host = JSON.parse((await coordctl(lab.dir, ['host', 'h2', '-o', 'json'])).stdout) as {
      attachErrors: { container: string; reason: string }[];
    };
    for (const [c, re] of Object.entries(reasons))
      t.regex(host.attachErrors.find((e) => e.container === c)!.reason, re, c);
    const status = await coordctl(lab.dir, ['status']);
    t.regex(status.stdout, /bad-net: unknown network "nosuch"/);
    const log = fs
      .readFileSync(`${lab.dir}/h2/agent.log`, 'utf8')
      .split('\n')
      .filter((l) => l.includes('"container":"bad-mac"') && l.includes('left unattached'));
    t.is(log.length, 1, 'one log line for the bad container, not one per pass');
    for (const c of [...bad, 'bad-mode', 'good-too']) await docker('h2', ['rm', '-f', c]);
  },
);

serial('gremesh.* labels from the image are ignored: an image cannot put itself on a network', async (t) => {
  await docker('h2', ['commit', '--change', 'LABEL gremesh.network=default', 'c-h2', 'gremesh/labelled:test']);
  await docker('h2', ['run', '-d', '--net=none', '--name', 'img-l', 'gremesh/labelled:test', 'sleep', '3600']);
  await docker('h2', [
    'run',
    '-d',
    '--net=none',
    '--name',
    'img-blue',
    '--label',
    'gremesh.network=nosuchnet',
    'gremesh/labelled:test',
    'sleep',
    '3600',
  ]);
  // the container's own label is read (and refused: no such network); the image's alone attaches nothing
  const refused = await waitUntil(
    async () =>
      (
        JSON.parse((await coordctl(lab.dir, ['host', 'h2', '-o', 'json'])).stdout) as {
          attachErrors: { container: string }[];
        }
      ).attachErrors.some((e) => e.container === 'img-blue'),
    20_000,
    200,
  );
  t.not(refused, undefined, 'the container’s own label counts');
  t.is(await ipOf('h2', 'img-l'), undefined, 'the image’s label attached nothing');
  await docker('h2', ['rm', '-f', 'img-l', 'img-blue']);
  await docker('h2', ['rmi', 'gremesh/labelled:test']);
});

serial('a restarted container gets its address back; a removed one releases it', async (t) => {
  const before = await ipOf('h3', 'c-h3');
  await docker('h3', ['restart', '-t', '0', 'c-h3']);
  t.true(await attached('h3', 'c-h3'));
  t.is(await ipOf('h3', 'c-h3'), before);
  t.true(await pings('h3', 'c-h3', (await ipOf('h1', 'c-h1'))!));
  t.is((await containerPorts('h3')).length, 1, 'one port, not two');
});

serial('attach/detach by hand, as ovs-docker add-port/del-port', async (t) => {
  await docker('h3', ['run', '-d', '--net=none', '--name', 'manual', IMAGE, 'sleep', '3600']);
  const sd = agentStateDir(lab.dir, 'h3');
  const a = await lab.exec(
    'h3',
    [
      'node',
      BINS.agent,
      'attach',
      'manual',
      '--network',
      'default',
      '--ip',
      '198.18.66.77',
      '--state-dir',
      sd,
      '-o',
      'json',
    ],
    { reject: false },
  );
  t.is(a.exitCode, 0, a.stderr);
  t.deepEqual(JSON.parse(a.stdout).ip, '198.18.66.77');
  t.is(await ipOf('h3', 'manual'), '198.18.66.77');
  t.true(await pings('h3', 'manual', (await ipOf('h1', 'c-h1'))!));
  const again = await lab.exec(
    'h3',
    ['node', BINS.agent, 'attach', 'manual', '--network', 'default', '--ip', '198.18.66.77', '--state-dir', sd],
    { reject: false },
  );
  t.is(again.exitCode, 0, 'attach is idempotent');
  const bad = await lab.exec('h3', ['node', BINS.agent, 'attach', 'manual', '--network', 'nosuch', '--state-dir', sd], {
    reject: false,
  });
  t.is(bad.exitCode, 1);
  t.regex(bad.stderr, /^gremesh-agent: unknown network "nosuch"/);
  const d = await lab.exec('h3', ['node', BINS.agent, 'detach', 'manual', '--state-dir', sd], { reject: false });
  t.is(d.exitCode, 0, d.stderr);
  t.is(await ipOf('h3', 'manual'), undefined, 'eth0 gone from the container');
  t.false((await containerPorts('h3')).some((p) => p.includes('manual')));
  const none = await lab.exec('h3', ['node', BINS.agent, 'detach', 'manual', '--state-dir', sd], { reject: false });
  t.is(none.exitCode, 1);
  await docker('h3', ['rm', '-f', 'manual']);
});

/** start/stop cycles on one host: a per-cycle leak shows in a few dozen (make soak, GREMESH_SOAK=1: 50) */
const CYCLES = Number(process.env.GREMESH_CONTAINER_CYCLES ?? (process.env.GREMESH_SOAK === '1' ? 50 : 10));

serial(`${CYCLES} start/stop cycles on one host leave no port, veth or address behind`, async (t) => {
  const base = {
    ports: (await containerPorts('h1')).length,
    veths: (await hostVeths('h1')).length,
    held: ipamHolders('h1').length,
  };
  for (let i = 0; i < CYCLES; i++) {
    await run('h1', `cyc${i}`);
    if (i % 10 === 0) t.true(await attached('h1', `cyc${i}`), `cycle ${i} attached`);
    await docker('h1', ['rm', '-f', `cyc${i}`]);
  }
  const clean = await waitUntil(
    async () =>
      (await containerPorts('h1')).length === base.ports &&
      (await hostVeths('h1')).length === base.veths &&
      ipamHolders('h1').length === base.held,
    30_000,
    200,
  );
  t.not(
    clean,
    undefined,
    `ports ${(await containerPorts('h1')).length}/${base.ports}, veths ${(await hostVeths('h1')).length}/${base.veths}, addresses ${ipamHolders('h1').length}/${base.held}`,
  );
});

serial(
  'agent kill -9 and restart with 10 containers running: same addresses, no duplicate port, pings keep working',
  async (t) => {
    const ten = Array.from({ length: 10 }, (_, i) => `ten${i}`);
    await Promise.all(ten.map((c) => run('h2', c)));
    for (const c of ten) t.true(await attached('h2', c));
    const before: Record<string, string> = {};
    for (const c of ten) before[c] = (await ipOf('h2', c))!;
    const target = (await ipOf('h1', 'c-h1'))!;
    const pid = await pidOf('h2', 'ten0');
    const ping = sh(
      ['nsenter', '-t', String(pid), '-n', 'ping', '-i', '0.1', '-c', '50', '-W', '1', target],
      {},
      false,
      60_000,
    );
    await new Promise((r) => setTimeout(r, 1000));
    await stopProcess(lab.dir, 'h2', 'agent', 'SIGKILL');
    await new Promise((r) => setTimeout(r, 500));
    startAgent(lab.dir, 'h2', args.h2!);
    const p = await ping;
    const m = /(\d+) packets transmitted, (\d+) received/.exec(p.stdout)!;
    t.is(m[2], m[1], `${Number(m[1]) - Number(m[2])} pings lost across the agent restart`);
    await waitUntil(() => agentStatus(lab.dir, 'h2')?.connected === true, 20_000);
    await new Promise((r) => setTimeout(r, 2000));
    for (const c of ten) t.is(await ipOf('h2', c), before[c]);
    const ports = await containerPorts('h2');
    t.is(new Set(ports).size, ports.length);
    t.is(ports.length, 11, '10 + c-h2, each once');
    await docker('h2', ['rm', '-f', ...ten]);
  },
);
