// IPv6: a dual-stack network across three lab hosts whose underlay is IPv6 (ip6gre
// tunnels; a fourth host on an IPv4 underlay beside them) (real OVS, dockerd, containers):
// ping6 and TCP over IPv6 between hosts, the outside over IPv6 (NAT66 to the host's own
// IPv6 address), the ND responder (a neighbour solicitation for a known address is
// answered on the asker's host), IPv6 port security (forged source, router advertisement,
// forged neighbour advertisement: dropped, each beside a control that passes), and bad input.
import test from 'ava';
import * as path from 'node:path';
import { ROOT, isRoot } from '../helpers/cli.js';
import { labUp, type TestLab } from '../helpers/lab.js';
import { sh, waitUntil } from '../helpers/endpoint.js';
import { agentLog, coordctl, joinAll, startCoordinator } from '../../deploy/lab/mesh.js';
import { IMAGE, OUTSIDE_IP6, hostEnv, underlayIp6 } from '../../deploy/lab/plan.js';
import { linkLocalOf } from '../../common/ipv6.js';

const serial = isRoot ? test.serial : test.skip;
const CRAFT = path.join(ROOT, 'test/fixtures/craft.py');
const HOSTS = ['h1', 'h2', 'h3'];
const NET = 'six';
const METRICS = '127.0.0.1:9481';
let lab: TestLab;
const c: Record<string, { pid: string; ip: string; ip6: string; mac: string }> = {};

const docker = async (h: string, a: string[]) => (await lab.exec(h, ['docker', ...a])).stdout.trim();
const nodeOf = (h: string) => lab.state.plan.nodes.find((n) => n.name === h)!;
const inHost = (h: string, argv: string[]) =>
  sh(['nsenter', `--net=/run/netns/${nodeOf(h).ns}`, ...argv], hostEnv(lab.dir, nodeOf(h)), false);
const inC = (h: string, argv: string[], timeoutMs = 30_000) =>
  sh(['nsenter', '-t', c[h]!.pid, '-n', ...argv], {}, false, timeoutMs);
const ping6 = async (h: string, dst: string, count = 1) =>
  (await inC(h, ['ping', '-6', '-c', String(count), '-i', '0.2', '-W', '2', dst])).exitCode === 0;
/** frames at container h's eth0 matching a tcpdump filter, while `act` runs */
async function seenAt(h: string, filter: string[], act: () => Promise<unknown>): Promise<string> {
  const cap = inC(h, ['timeout', '4', 'tcpdump', '-n', '-l', '-v', '-i', 'eth0', ...filter]);
  await new Promise((r) => setTimeout(r, 1200));
  await act();
  return (await cap).stdout;
}

async function run(h: string, name: string, labels: string[]): Promise<{ pid: string; exit: string }> {
  await docker(h, [
    'run',
    '-d',
    '--net=none',
    '--name',
    name,
    ...labels.flatMap((l) => ['--label', l]),
    IMAGE,
    'sleep',
    'infinity',
  ]);
  return { pid: await docker(h, ['inspect', '-f', '{{.State.Pid}}', name]), exit: '' };
}

/** a container's eth0 once it carries a global IPv6 address: both addresses and the MAC */
async function dualStackAddress(pid: string): Promise<{ ip: string; ip6: string; mac: string }> {
  const out = { ip: '', ip6: '', mac: '' };
  await waitUntil(async () => {
    const l = JSON.parse(
      (await sh(['nsenter', '-t', pid, '-n', 'ip', '-j', 'addr', 'show', 'eth0'], {}, false)).stdout || '[]',
    ) as { address: string; flags?: string[]; addr_info: { family: string; local: string; scope: string }[] }[];
    if (!(l[0]?.flags ?? []).includes('UP')) return false;
    out.mac = l[0]!.address;
    out.ip = l[0]!.addr_info.find((a) => a.family === 'inet')?.local ?? '';
    out.ip6 = l[0]!.addr_info.find((a) => a.family === 'inet6' && a.scope === 'global')?.local ?? '';
    return out.ip6 !== '';
  }, 30_000);
  return out;
}

test.before(async () => {
  if (!isRoot) return;
  lab = await labUp(4);
  await startCoordinator(lab.dir);
  // h1..h3 tunnel over their IPv6 underlay addresses (ip6gre); h4 stays on IPv4
  await joinAll(lab.dir, HOSTS, ['--metrics', METRICS], (h, a) => [...a, '--underlay-ip', underlayIp6(nodeOf(h).ip)]);
  await joinAll(lab.dir, ['h4']);
  const r = await coordctl(lab.dir, [
    'network',
    'create',
    NET,
    '--cidr',
    '198.19.0.0/16',
    '--host-prefix-len',
    '24',
    '--ipv6-cidr',
    'fd00:19::/48',
  ]);
  if (r.exitCode !== 0) throw new Error(`network create: ${r.stderr}`);
  for (const h of HOSTS) {
    const { pid } = await run(h, `v-${h}`, [`gremesh.network=${NET}`]);
    c[h] = { pid, ...(await dualStackAddress(pid)) };
  }
});
test.after.always(async () => {
  if (lab) await lab.down();
});

serial(
  'an IPv6 underlay: ip6gre between h1..h3, only IPv6 GRE on the wire; h4 (IPv4) gets no tunnel, said why',
  async (t) => {
    const hosts = JSON.parse((await coordctl(lab.dir, ['hosts', '-o', 'json'])).stdout) as {
      name: string;
      underlayIp: string;
    }[];
    for (const h of HOSTS) t.is(hosts.find((x) => x.name === h)!.underlayIp, underlayIp6(nodeOf(h).ip));
    const ports = JSON.parse(
      (await inHost('h1', ['ovs-vsctl', '-f', 'json', '--columns=name,type', 'list', 'interface'])).stdout,
    ) as { data: [string, string][] };
    const tunnels = ports.data.filter((r) => /^gr(e|6)-/.test(r[0]));
    t.is(tunnels.length, 2, 'h1 has a tunnel to h2 and h3 only');
    for (const r of tunnels) t.is(r[1], 'ip6gre', `${r[0]} is ip6gre`);
    const cap = inHost('h1', ['timeout', '3', 'tcpdump', '-n', '-l', '-i', 'eth0', 'proto gre or ip6 proto 47']);
    await new Promise((r) => setTimeout(r, 1000));
    await ping6('h1', c.h2!.ip6, 3);
    const wire = (await cap).stdout;
    t.regex(wire, new RegExp(`IP6 ${underlayIp6(nodeOf('h1').ip)} > ${underlayIp6(nodeOf('h2').ip)}: GRE`));
    t.notRegex(wire, /^\S+ IP 198\.18/m, 'no IPv4 GRE between them');
    const link = JSON.parse((await inC('h1', ['ip', '-j', 'link', 'show', 'eth0'])).stdout) as { mtu: number }[];
    t.is(link[0]!.mtu, 1500 - 62, 'containers carry 62 bytes less than the underlay (ip6gre with a key)');
    const log = (await sh(['cat', agentLog(lab.dir, 'h4')], {}, false)).stdout;
    t.regex(log, /no tunnel to h1,h2,h3: their underlay is of the other IP family/);
  },
);

serial(
  'each host has both slices; containers get both addresses, the IPv6 one derived from the IPv4 one',
  async (t) => {
    const hosts = JSON.parse((await coordctl(lab.dir, ['hosts', '-o', 'json'])).stdout) as {
      name: string;
      slices: { network: string; cidr: string; ipv6Cidr: string }[];
    }[];
    const six = hosts.filter((h) => HOSTS.includes(h.name)).map((h) => h.slices.find((s) => s.network === NET)!);
    t.is(new Set(six.map((s) => s.ipv6Cidr)).size, 3, 'three different IPv6 slices');
    for (const s of six) t.regex(s.ipv6Cidr, /^fd00:19:(:|0:[0-9a-f]+::)\/64$/);
    for (const h of HOSTS) {
      t.truthy(c[h]!.ip6, `${h}: an IPv6 address`);
      const last = Number(c[h]!.ip.split('.')[3]);
      t.true(c[h]!.ip6.endsWith(`::${last.toString(16)}`), `${h}: ${c[h]!.ip6} maps ${c[h]!.ip}`);
      const route = (await inC(h, ['ip', '-6', 'route', 'show', 'default'])).stdout;
      t.regex(route, /default via fd00:19:/, `${h}: an IPv6 default route via its gateway`);
    }
    const table = (await coordctl(lab.dir, ['hosts'])).stdout;
    t.regex(table, /198\.19\.\d+\.0\/24\+fd00:19:/, 'coordctl hosts shows both slices');
  },
);

serial('ping6 between containers on every pair of hosts, and TCP over IPv6', async (t) => {
  for (const a of HOSTS)
    for (const b of HOSTS) if (a !== b) t.true(await ping6(a, c[b]!.ip6, 2), `${a} -> ${b} (${c[b]!.ip6})`);
  const server = inC(
    'h2',
    [
      'timeout',
      '10',
      'python3',
      '-c',
      "import socket;s=socket.socket(socket.AF_INET6);s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1);s.bind(('::',5006));s.listen();k,a=s.accept();k.sendall(('hello '+a[0]).encode()+b'x'*300000);k.close()",
    ],
    15_000,
  );
  await new Promise((r) => setTimeout(r, 800));
  const client = await inC('h1', [
    'python3',
    '-c',
    `import socket;s=socket.create_connection(('${c.h2!.ip6}',5006),timeout=5);b=b''\nwhile True:\n  x=s.recv(65536)\n  if not x: break\n  b+=x\nprint(len(b), b[:40].decode())`,
  ]);
  await server;
  t.regex(client.stdout, new RegExp(`^\\d+ hello ${c.h1!.ip6}`), 'the server saw the client’s own IPv6 address');
  t.is(
    Number(client.stdout.split(' ')[0]),
    300006 + c.h1!.ip6.length,
    `bulk data came through whole: ${client.stdout} ${client.stderr}`,
  );
});

serial('the outside over IPv6, masqueraded to the host’s own IPv6 address (NAT66)', async (t) => {
  const out = lab.state.plan.nodes.find((n) => n.role === 'outside')!;
  const cap = sh(
    [
      'nsenter',
      `--net=/run/netns/${out.ns}`,
      'timeout',
      '4',
      'tcpdump',
      '-n',
      '-l',
      '-i',
      'eth0',
      'icmp6 and ip6[40] == 128',
    ],
    {},
    false,
  );
  await new Promise((r) => setTimeout(r, 1200));
  for (const h of HOSTS) t.true(await ping6(h, OUTSIDE_IP6, 2), `${h}'s container reaches ${OUTSIDE_IP6}`);
  const seen = (await cap).stdout;
  for (const h of HOSTS)
    t.regex(seen, new RegExp(`${underlayIp6(nodeOf(h).ip)} > ${OUTSIDE_IP6}`), `${h}: from its host's address`);
  t.notRegex(seen, /fd00:19:/, 'no overlay address on the outside');
});

serial(
  'a neighbour solicitation for a known address is answered on the asker’s host: none reaches the owner',
  async (t) => {
    await inC('h1', ['ip', '-6', 'neigh', 'flush', 'dev', 'eth0']);
    const seen = await seenAt('h2', ['icmp6 and ip6[40] == 135'], () => ping6('h1', c.h2!.ip6));
    t.notRegex(seen, /neighbor solicitation/, 'h2’s container saw no solicitation');
    const neigh = (await inC('h1', ['ip', '-6', 'neigh', 'show', c.h2!.ip6])).stdout;
    t.regex(neigh, new RegExp(c.h2!.mac), 'h1 learned h2’s MAC from the local answer');
    const flows = (await inHost('h1', ['ovs-ofctl', '-O', 'OpenFlow14', 'dump-flows', 'gremesh0', 'table=25'])).stdout;
    t.regex(flows, new RegExp(`nd_target=${c.h2!.ip6}.*n_packets=[1-9]|n_packets=[1-9].*nd_target=${c.h2!.ip6}`));
  },
);

serial(
  'IPv6 port security: forged source, router advertisement and forged advertisement dropped; controls pass',
  async (t) => {
    // one capture on h2 while h1 sends every case, each told apart by its marker or target
    const echo = (src: string, marker: string) =>
      inC('h1', ['python3', CRAFT, 'ip6echo', 'eth0', c.h2!.mac, src, c.h2!.ip6, marker]);
    const na = (target: string) => inC('h1', ['python3', CRAFT, 'na', 'eth0', target]);
    const seen = await seenAt(
      'h2',
      ['-A', 'icmp6 and (ip6[40] == 128 or ip6[40] == 134 or ip6[40] == 136)'],
      async () => {
        await echo(c.h1!.ip6, 'OWN6-MARK');
        await echo(linkLocalOf(c.h1!.mac), 'LL6-MARK');
        await echo(c.h3!.ip6, 'SPOOF6-MARK');
        await echo('fd00:19:0:99::5', 'FAKE6-MARK');
        await inC('h1', ['python3', CRAFT, 'ra', 'eth0']);
        await na(c.h1!.ip6);
        await na(c.h3!.ip6);
      },
    );
    t.regex(seen, /OWN6-MARK/, 'control: from its own address');
    t.regex(seen, /LL6-MARK/, 'control: from its link-local');
    t.notRegex(seen, /SPOOF6-MARK/, 'from another container’s address: dropped');
    t.notRegex(seen, /FAKE6-MARK/, 'from an address nobody has: dropped');
    t.notRegex(seen, /router advertisement/, 'no router advertisement from a container reaches another');
    t.regex(
      seen,
      new RegExp(`neighbor advertisement, length \\d+, tgt is ${c.h1!.ip6}`),
      'control: NA for its own address',
    );
    t.notRegex(
      seen,
      new RegExp(`tgt is ${c.h3!.ip6}`),
      'an advertisement claiming another container’s address: dropped',
    );
    const routes = (await inC('h2', ['ip', '-6', 'route'])).stdout;
    t.notRegex(routes, /2001:db8:1::|fe80::dead:beef/);
    t.true(await ping6('h2', c.h3!.ip6), 'h2 still reaches h3 at its own MAC');
    t.regex((await inC('h2', ['ip', '-6', 'neigh', 'show', c.h3!.ip6])).stdout, new RegExp(c.h3!.mac));
  },
);

serial(
  'day 2: coordctl trace with IPv6 ends (across hosts, to the outside through NAT66), metrics by family',
  async (t) => {
    const trace = async (...a: string[]) => {
      const r = await coordctl(lab.dir, ['trace', ...a, '-o', 'json']);
      t.is(r.exitCode, 0, r.stderr);
      return JSON.parse(r.stdout) as { verdict: string; hops: { host: string; verdict: string; detail: string }[] };
    };
    const across = await trace(`v-h1`, c.h2!.ip6);
    t.deepEqual(
      across.hops.map((h) => [h.host, h.verdict]),
      [
        ['h1', 'sent'],
        ['h2', 'delivered'],
      ],
    );
    const out = await trace('v-h1', `outside:${OUTSIDE_IP6}`);
    t.regex(out.verdict, /masqueraded to h1's IPv6 address by `ip6 saddr fd00:19::\/48/);
    const v4 = await trace('v-h1', c.h2!.ip);
    t.is(v4.hops.at(-1)!.verdict, 'delivered', 'the same pair by its IPv4 address');
    const m = (
      await lab.exec('h1', [
        'node',
        '-e',
        `fetch('http://${METRICS}/metrics').then((r) => r.text()).then((t) => process.stdout.write(t))`,
      ])
    ).stdout;
    // labels as prom-client prints them: the metric's own, then the default host label
    t.regex(m, /^gremesh_endpoint_addresses\{network="six",family="6",host="h1"\} [1-9]/m);
    t.regex(m, /^gremesh_endpoint_addresses\{network="six",family="4",host="h1"\} [1-9]/m);
    t.regex(m, /^gremesh_tunnels\{family="6",host="h1"\} 2$/m, 'two ip6gre tunnels');
    t.regex(m, /^gremesh_tunnels\{family="4",host="h1"\} 0$/m, 'no IPv4 GRE');
  },
);

serial('bad input: one-line errors, nothing made', async (t) => {
  const bad = async (args: string[], re: RegExp) => {
    const r = await coordctl(lab.dir, ['network', 'create', ...args]);
    t.is(r.exitCode === 0, false, args.join(' '));
    t.regex(r.stderr, re);
    t.is(r.stderr.trim().split('\n').length, 1, 'one line');
  };
  await bad(
    ['x1', '--cidr', '198.18.128.0/20', '--host-prefix-len', '24', '--ipv6-cidr', 'fd00:19:0:100::/56'],
    /overlaps network six/,
  );
  await bad(
    [
      'x2',
      '--cidr',
      '198.18.128.0/20',
      '--host-prefix-len',
      '24',
      '--ipv6-cidr',
      'fd00:77::/64',
      '--ipv6-host-prefix-len',
      '60',
    ],
    /must be longer/,
  );
  await bad(
    ['x3', '--cidr', '198.18.128.0/20', '--host-prefix-len', '24', '--ipv6-cidr', 'fe80::/48'],
    /not global or unique-local/,
  );
  await bad(
    ['x4', '--cidr', '198.18.128.0/20', '--host-prefix-len', '24', '--ipv6-cidr', 'fd00:77::/61'],
    /fewer than the 16/,
  );
  const nets = (await coordctl(lab.dir, ['networks', '-o', 'json'])).stdout;
  t.notRegex(nets, /"x[1-4]"/, 'no half-made network');
  // a static address outside this host's IPv6 slice: the container stays unattached, said why
  await run('h1', 'bad6', [`gremesh.network=${NET}`, 'gremesh.ip6=fd00:19:0:99::1234']);
  const said = await waitUntil(
    async () => /bad6.*IPv6 slice/.test((await coordctl(lab.dir, ['host', 'h1'])).stdout),
    20_000,
  );
  t.not(said, undefined, 'coordctl host h1 names the attach error');
  // and one inside it, above the derived block: attached with exactly that address
  const slice = c.h1!.ip6.replace(/::[0-9a-f]+$/, '::');
  const { pid } = await run('h1', 'good6', [`gremesh.network=${NET}`, `gremesh.ip6=${slice}beef:1`]);
  const got = await dualStackAddress(pid);
  t.is(got.ip6, `${slice}beef:1`);
  t.true(await ping6('h3', got.ip6), 'the static address answers from another host');
});
