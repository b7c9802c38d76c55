// Encryption between hosts (--encryption wireguard) on a 3-host lab with wireguard-go: the
// underlay carries only WireGuard (no GRE, no inner address, no payload in the clear);
// GRE from a host without the key reaches no container, while the same frame sent by a
// host with the key does; a key rotation loses no ping; an agent whose WireGuard cannot
// come up builds no tunnel (nothing in cleartext).
import test from 'ava';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { ROOT, isRoot } from '../helpers/cli.js';
import { addRogueHost, labUp, type TestLab } from '../helpers/lab.js';
import { containerAddress, sh, waitUntil } from '../helpers/endpoint.js';
import { PingMesh } from '../helpers/ping-mesh.js';
import {
  agentLog,
  agentStateDir,
  agentStatus,
  coordctl,
  joinAll,
  labWireguardName,
  startAgent,
  startCoordinator,
  stopProcess,
} from '../../deploy/lab/mesh.js';
import { IMAGE, UNDERLAY_IFACE, hostEnv } from '../../deploy/lab/plan.js';

const serial = isRoot ? test.serial : test.skip;
const CRAFT = path.join(ROOT, 'test/fixtures/craft.py');
const HOSTS = ['h1', 'h2', 'h3'];
const TUNNEL_CIDR = '198.19.240.0/22';
/** tunnel IPs: the low 10 bits of the underlay addresses (198.18.0.11 -> 198.19.240.11) */
const tunnelIp = (h: string) => `198.19.240.${10 + Number(h.slice(1))}`;
let lab: TestLab;
let args: Record<string, string[]> = {};
const info: Record<string, { pid: string; ip: string; mac: string }> = {};
const mesh = new PingMesh(0.1);
const METRICS = '127.0.0.1:9479';
/** the Prometheus text of a lab host's agent (fetched from inside its namespace) */
const scrape = async (h: string) =>
  (
    await lab.exec(h, [
      'node',
      '-e',
      `fetch('http://${METRICS}/metrics').then((r) => r.text()).then((t) => process.stdout.write(t))`,
    ])
  ).stdout;

const nsOf = (h: string) => lab.state.plan.nodes.find((n) => n.name === h)!;
const inHost = (h: string, argv: string[], timeoutMs = 60_000) =>
  sh(['nsenter', `--net=/run/netns/${nsOf(h).ns}`, ...argv], hostEnv(lab.dir, nsOf(h)), false, timeoutMs);
const inC = (h: string, argv: string[], timeoutMs = 60_000) =>
  sh(['nsenter', '-t', info[h]!.pid, '-n', ...argv], {}, false, timeoutMs);
const docker = async (h: string, a: string[]) => (await lab.exec(h, ['docker', ...a])).stdout.trim();
const hostsJson = async () =>
  JSON.parse((await coordctl(lab.dir, ['hosts', '-o', 'json'])).stdout) as {
    name: string;
    tunnelIp: string;
    wireguardPublicKey: string;
  }[];

/** the frames on h's underlay NIC while act runs, in a pcap file */
async function capture(h: string, act: () => Promise<unknown>): Promise<string> {
  const file = path.join(os.tmpdir(), `gm-enc-${h}-${Date.now()}.pcap`);
  const cap = inHost(h, ['timeout', '6', 'tcpdump', '-n', '-i', UNDERLAY_IFACE, '-w', file, '-U']);
  await new Promise((r) => setTimeout(r, 1000));
  await act();
  await cap;
  return file;
}
const count = async (file: string, filter: string) =>
  (await sh(['tcpdump', '-n', '-r', file, filter], {}, false)).stdout.split('\n').filter(Boolean).length;

async function startContainer(h: string): Promise<void> {
  await docker(h, [
    'run',
    '-d',
    '--net=none',
    '--name',
    `e-${h}`,
    '--label',
    'gremesh.network=default',
    IMAGE,
    'sleep',
    'infinity',
  ]);
  const pid = await docker(h, ['inspect', '-f', '{{.State.Pid}}', `e-${h}`]);
  info[h] = { pid, ...(await containerAddress(pid)) };
}

test.before(async () => {
  if (!isRoot) return;
  lab = await labUp(3);
  await startCoordinator(lab.dir, ['--encryption', 'wireguard', '--tunnel-cidr', TUNNEL_CIDR]);
  args = await joinAll(lab.dir, HOSTS, ['--metrics', METRICS]);
  for (const h of HOSTS) await startContainer(h);
  // every host holds every peer's key and a GRE port to its tunnel IP
  await waitUntil(async () => {
    const hs = await hostsJson();
    return (
      hs.every((h) => h.wireguardPublicKey) && HOSTS.every((h) => (agentStatus(lab.dir, h)?.tunnels.length ?? 0) === 2)
    );
  }, 60_000);
  mesh.update(HOSTS.map((h) => ({ name: h, pid: info[h]!.pid, ip: info[h]!.ip })));
});
test.after.always(async () => {
  mesh.stop();
  if (lab) await lab.down();
});

serial(
  '3 hosts over WireGuard only: pings and TCP cross; the underlay shows UDP, no GRE, no inner address or payload',
  async (t) => {
    const hs = await hostsJson();
    for (const h of HOSTS) t.is(hs.find((x) => x.name === h)?.tunnelIp, tunnelIp(h), `${h}'s tunnel IP`);
    // the GRE ports point at tunnel IPs, never at underlay addresses
    const ports = (await inHost('h1', ['ovs-vsctl', '--columns=name,options', 'find', 'interface', 'type=gre'])).stdout;
    t.regex(ports, /remote_ip="198\.19\.240\.12"/);
    t.notRegex(ports, /remote_ip="198\.18\./);
    // "gremesh!" as ping payload: it must not be readable on the wire
    const pattern = Buffer.from('gremesh!').toString('hex');
    const file = await capture('h1', async () => {
      for (const h of ['h2', 'h3']) {
        const p = await inC('h1', ['ping', '-c', '3', '-i', '0.2', '-W', '2', '-p', pattern, info[h]!.ip]);
        t.regex(p.stdout, / 0% packet loss/, `h1 -> ${h}: ${p.stdout.split('\n').slice(-3).join(' ')}`);
      }
    });
    await inC('h2', ['iperf3', '-s', '-1', '-D', '-p', '5201']);
    await new Promise((r) => setTimeout(r, 300));
    const perf = await inC('h1', ['iperf3', '-c', info.h2!.ip, '-p', '5201', '-t', '1', '-J'], 20_000);
    const sent =
      (JSON.parse(perf.stdout || '{}') as { end?: { sum_received?: { bytes: number } } }).end?.sum_received?.bytes ?? 0;
    t.true(sent > 1_000_000, `TCP h1 -> h2 over WireGuard: ${sent} bytes received in 1 s`);
    const raw = fs.readFileSync(file);
    const other = (
      await sh(['tcpdump', '-n', '-r', file, 'not (udp port 51820 or arp or tcp port 7420 or icmp6)'], {}, false)
    ).stdout;
    t.is(
      other.trim(),
      '',
      "nothing but WireGuard on the underlay (beside the agents' gRPC, ARP and the hosts' IPv6 router solicitations)",
    );
    t.is(await count(file, 'ip proto 47'), 0, 'no GRE on the underlay');
    t.true((await count(file, 'udp port 51820')) > 10, 'WireGuard (UDP 51820) carries it');
    for (const h of HOSTS) {
      const ipBytes = Buffer.from(info[h]!.ip.split('.').map(Number));
      t.is(raw.indexOf(ipBytes), -1, `container address ${info[h]!.ip} never on the underlay`);
    }
    t.is(raw.indexOf(Buffer.from('gremesh!')), -1, 'the ping payload never on the underlay');
    fs.rmSync(file, { force: true });
    // the agents name the WireGuard peer of each tunnel (handshake, bytes) in their report
    type Host = { tunnels: { peer: string; wireguardHandshakeMs?: number; wireguardRxBytes?: number }[] };
    const named = await waitUntil(async () => {
      const x = JSON.parse((await coordctl(lab.dir, ['host', 'h1', '-o', 'json'])).stdout) as Host;
      return (
        x.tunnels.length === 2 &&
        x.tunnels.every((tu) => Number(tu.wireguardHandshakeMs ?? 0) > 0 && Number(tu.wireguardRxBytes ?? 0) > 0)
      );
    }, 15_000);
    t.not(named, undefined, "coordctl host names each tunnel's WireGuard peer: last handshake and bytes");
    const m = await scrape('h1');
    t.regex(m, /^gremesh_wireguard_up\{host="h1"\} 1$/m);
    t.regex(m, /^gremesh_wireguard_handshake_age_seconds\{peer="h2",host="h1"\} \d/m);
    t.regex(m, /^gremesh_wireguard_bytes\{peer="h3",direction="rx",host="h1"\} [1-9]/m);
    // MTU: underlay 1500 - WireGuard 60 - GRE 42; the largest DF packet crosses, one byte more is refused
    t.is(agentStatus(lab.dir, 'h1')?.mtu.default, 1398);
    const fits = await inC('h1', ['ping', '-c', '2', '-W', '2', '-M', 'do', '-s', String(1398 - 28), info.h2!.ip]);
    t.regex(fits.stdout, / 0% packet loss/, 'a 1398-byte packet with DF crosses');
    const over = await inC('h1', ['ping', '-c', '1', '-W', '1', '-M', 'do', '-s', String(1398 - 27), info.h2!.ip]);
    t.regex(over.stdout + over.stderr, /message too long|mtu = 1398/i);
    const tr = await coordctl(lab.dir, ['trace', 'e-h1', 'e-h2']);
    t.regex(tr.stdout, /inside WireGuard \(to its tunnel IP 198\.19\.240\.12\)/, tr.stdout + tr.stderr);
  },
);

const gre = (dst: string, marker: string) => [
  'python3',
  CRAFT,
  'gre',
  dst,
  '1',
  info.h1!.mac,
  '198.18.65.77',
  info.h1!.ip,
  marker,
];
async function seenAt(h: string, act: () => Promise<unknown>): Promise<string> {
  const cap = inC(h, ['timeout', '2.5', 'tcpdump', '-n', '-l', '-A', '-i', 'eth0', 'icmp']);
  await new Promise((r) => setTimeout(r, 1200));
  await act();
  return (await cap).stdout;
}

serial(
  'GRE from a host without the key reaches no container; the same frame from a peer with the key does',
  async (t) => {
    // control: h2 sends the crafted GRE to h1's tunnel IP: its kernel routes it into WireGuard
    const control = await seenAt('h1', () => inHost('h2', gre(tunnelIp('h1'), 'KEYED-MARK')));
    t.regex(control, /KEYED-MARK/, 'a peer with the key gets the crafted frame through');
    // a rogue machine on the underlay switch, with a route to the tunnel IPs through h1
    const rogue = await addRogueHost(lab, '198.18.0.99', [['ip', 'route', 'add', TUNNEL_CIDR, 'via', '198.18.0.11']]);
    const inRogue = (argv: string[]) => sh(['nsenter', `--net=/run/netns/${rogue}`, ...argv], {}, false);
    for (const [dst, what] of [
      ['198.18.0.11', "h1's underlay address"],
      [tunnelIp('h1'), "h1's tunnel IP, sent over the underlay"],
    ] as const) {
      const seen = await seenAt('h1', () => inRogue(gre(dst, 'ROGUE-MARK')));
      t.notRegex(seen, /ROGUE-MARK/, `GRE to ${what} is not delivered`);
    }
    // forged WireGuard: junk to the port is no handshake, and nothing comes of it
    await inRogue([
      'python3',
      '-c',
      "import socket;s=socket.socket(2,2);[s.sendto(b'\\x04'+b'\\x00'*31+b'x'*64,('198.18.0.11',51820)) for _ in range(20)]",
    ]);
    const wg = (await inHost('h1', ['wg', 'show', 'all', 'endpoints'])).stdout;
    t.notRegex(wg, /198\.18\.0\.99/, 'the rogue never becomes a WireGuard peer');
  },
);

serial('coordctl rotate-keys: every host gets a new key and no ping is lost', async (t) => {
  const before = await hostsJson();
  const from = mesh.mark();
  const r = await coordctl(lab.dir, ['rotate-keys']);
  t.is(r.exitCode, 0, r.stderr);
  await waitUntil(async () => {
    const now = await hostsJson();
    return now.every(
      (h) => h.wireguardPublicKey && h.wireguardPublicKey !== before.find((b) => b.name === h.name)?.wireguardPublicKey,
    );
  }, 30_000);
  // and every peer handshook with the new keys: a round of pings answered on each pair
  await new Promise((r) => setTimeout(r, 2000));
  const loss = await mesh.lossSince(from, 2);
  t.log(`ping mesh during rotation: ${loss.pairs.length} pairs, ${loss.sent} pings, ${loss.lost} lost`);
  t.true(loss.sent > 100);
  if (loss.lost && process.env.GREMESH_DEBUG_DIR)
    for (const h of HOSTS) {
      fs.mkdirSync(process.env.GREMESH_DEBUG_DIR, { recursive: true });
      fs.copyFileSync(agentLog(lab.dir, h), `${process.env.GREMESH_DEBUG_DIR}/${h}-agent.log`);
      fs.copyFileSync(`${agentStateDir(lab.dir, h)}/wireguard-go.log`, `${process.env.GREMESH_DEBUG_DIR}/${h}-wg.log`);
    }
  t.is(loss.lost, 0, JSON.stringify(loss.pairs.filter((p) => p.lost)));
  const key = JSON.parse(fs.readFileSync(`${agentStateDir(lab.dir, 'h1')}/wireguard.key`, 'utf8')) as {
    privateKey: string;
  };
  t.is(
    (fs.statSync(`${agentStateDir(lab.dir, 'h1')}/wireguard.key`).mode & 0o777).toString(8),
    '600',
    'the private key file is 0600',
  );
  const all = JSON.stringify(await hostsJson());
  t.false(all.includes(key.privateKey), 'the private key never reaches the coordinator');
});

serial('an agent whose WireGuard cannot come up builds no tunnel: nothing in cleartext', async (t) => {
  await stopProcess(lab.dir, 'h3', 'agent');
  // its WireGuard device gone, and the agent made to want a kernel one (this kernel has none)
  // (wireguard-go ends with its device)
  await inHost('h3', ['ip', 'link', 'del', labWireguardName(lab.dir, 'h3')]);
  startAgent(lab.dir, 'h3', args.h3!, ['--metrics', METRICS, '--wireguard-impl', 'kernel']);
  await waitUntil(async () => {
    const out = (await inHost('h3', ['ovs-vsctl', 'find', 'interface', 'type=gre'])).stdout;
    return out.trim() === '';
  }, 30_000);
  const file = await capture('h3', () => inC('h3', ['ping', '-c', '3', '-i', '0.2', '-W', '1', info.h1!.ip]));
  t.is(await count(file, 'ip proto 47'), 0, 'no GRE leaves h3');
  fs.rmSync(file, { force: true });
  const log = fs.readFileSync(agentLog(lab.dir, 'h3'), 'utf8');
  t.regex(log, /WireGuard is not up: no tunnel is built/);
  t.regex(await scrape('h3'), /^gremesh_wireguard_up\{host="h3"\} 0$/m, 'and its metrics say so');
});
