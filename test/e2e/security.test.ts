// Isolation that holds against forged traffic: a rogue host on the underlay, a
// container sending GRE, ARP spoofing, router advertisements. Crafted frames come from
// test/fixtures/craft.py (raw sockets); each negative case has a positive control.
import test from 'ava';
import * as path from 'node:path';
import { ROOT, isRoot } from '../helpers/cli.js';
import { addRogueHost, labUp, type TestLab } from '../helpers/lab.js';
import { containerAddress, sh } from '../helpers/endpoint.js';
import { joinAll, startCoordinator } from '../../deploy/lab/mesh.js';
import { IMAGE, hostEnv, labNs } from '../../deploy/lab/plan.js';

const serial = isRoot ? test.serial : test.skip;
const CRAFT = path.join(ROOT, 'test/fixtures/craft.py');
let lab: TestLab;
const info: Record<string, { pid: string; ip: string; mac: string }> = {};

const docker = async (h: string, a: string[]) => (await lab.exec(h, ['docker', ...a])).stdout.trim();
const nsOf = (h: string) => lab.state.plan.nodes.find((n) => n.name === h)!;
const inHost = (h: string, argv: string[]) =>
  sh(['nsenter', `--net=/run/netns/${nsOf(h).ns}`, ...argv], hostEnv(lab.dir, nsOf(h)), false);
const inC = (h: string, argv: string[]) => sh(['nsenter', '-t', info[h]!.pid, '-n', ...argv], {}, false);
/** frames at container h's eth0 matching a tcpdump filter, while `act` runs */
async function seenAt(h: string, filter: string[], act: () => Promise<unknown>): Promise<string> {
  const cap = inC(h, ['timeout', '2.5', 'tcpdump', '-n', '-l', '-A', '-i', 'eth0', ...filter]);
  await new Promise((r) => setTimeout(r, 1200));
  await act();
  return (await cap).stdout;
}

test.before(async () => {
  if (!isRoot) return;
  lab = await labUp(2);
  await startCoordinator(lab.dir);
  await joinAll(lab.dir, ['h1', 'h2']);
  for (const h of ['h1', 'h2']) {
    await docker(h, [
      'run',
      '-d',
      '--net=none',
      '--name',
      `s-${h}`,
      '--label',
      'gremesh.network=default',
      IMAGE,
      'sleep',
      'infinity',
    ]);
    const pid = await docker(h, ['inspect', '-f', '{{.State.Pid}}', `s-${h}`]);
    info[h] = { pid, ...(await containerAddress(pid)) };
  }
  // a rogue machine on the underlay switch
  await addRogueHost(lab, '198.18.0.99');
});
test.after.always(async () => {
  if (lab) await lab.down();
});

const gre = (dst: string, marker: string, target = 'h1') => [
  'python3',
  CRAFT,
  'gre',
  dst,
  '1',
  info[target]!.mac,
  '198.18.65.77',
  info[target]!.ip,
  marker,
];

serial('control: the crafted GRE frame is delivered when it comes from an admitted peer', async (t) => {
  // h2's own underlay address, key 1, inner frame to s-h1: exactly what h2's OVS would send
  const seen = await seenAt('h1', ['icmp'], () => inHost('h2', gre('198.18.0.11', 'CONTROL-MARK')));
  t.regex(seen, /CONTROL-MARK/, 'the crafted frame format is right: a peer gets it through');
});

serial(
  'a rogue host on the underlay sends GRE with a valid key and forged inner addresses: nothing reaches a container',
  async (t) => {
    const rogue = labNs(lab.state.plan.prefix, lab.state.id, 'rogue');
    const seen = await seenAt('h1', ['icmp'], () =>
      sh(['nsenter', `--net=/run/netns/${rogue}`, ...gre('198.18.0.11', 'ROGUE-MARK')], {}, false),
    );
    t.notRegex(seen, /ROGUE-MARK/);
  },
);

serial('a container sends GRE to a peer’s underlay address: it is not decapsulated into any container', async (t) => {
  const seen = await seenAt('h2', ['icmp'], () => inC('h1', gre('198.18.0.12', 'INJECT-MARK', 'h2')));
  t.notRegex(seen, /INJECT-MARK/);
  const nft = await inHost('h1', ['nft', 'list', 'table', 'ip', 'gremesh']);
  t.regex(nft.stdout, /l4proto gre drop/);
});

serial('forged ARP from a container (claiming an address that is not its own) is dropped', async (t) => {
  const seen = await seenAt('h2', ['arp'], () => inC('h1', ['python3', CRAFT, 'arp', 'eth0', '198.18.65.250']));
  t.notRegex(seen, /198\.18\.65\.250/);
  const control = await seenAt('h2', ['arp'], () => inC('h1', ['python3', CRAFT, 'arp', 'eth0', info.h1!.ip]));
  t.regex(control, new RegExp(info.h1!.ip.replace(/\./g, '\\.')), 'control: an ARP for its own address passes');
});

serial('a router advertisement from a container changes no host’s routes', async (t) => {
  const before = await Promise.all(['h1', 'h2'].map(async (h) => (await inHost(h, ['ip', '-6', 'route'])).stdout));
  await inC('h1', ['python3', CRAFT, 'ra', 'eth0']);
  await new Promise((r) => setTimeout(r, 2000));
  const after = await Promise.all(['h1', 'h2'].map(async (h) => (await inHost(h, ['ip', '-6', 'route'])).stdout));
  t.deepEqual(after, before);
  for (const a of after) t.notRegex(a, /2001:db8:1::|default via fe80::dead:beef/);
});
