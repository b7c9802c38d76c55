// NetlinkLinkDriver against the real kernel, in a throwaway network namespace (root only):
// veth with the peer in the namespace (MAC, MTU, address, tx checksum off), activation with
// a default route, deletion. Only 198.18.x.x and links named gmnl* are used.
import test from 'ava';
import { execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { NetlinkLinkDriver } from '../../agent/net/netlink/driver.js';
import { createRunner } from '../../common/exec.js';

const root = process.getuid?.() === 0;
const sh = (argv: string[]): string => execFileSync(argv[0]!, argv.slice(1), { encoding: 'utf8' });

test.serial('veth into a namespace, activated, tx checksum off, deleted', async (t) => {
  if (!root) {
    t.log('skipped: needs root (creates a network namespace and veths)');
    t.pass();
    return;
  }
  const tag = randomBytes(3).toString('hex');
  const ns = `gmnl-${tag}`;
  sh(['ip', 'netns', 'add', ns]);
  const child = spawn('ip', ['netns', 'exec', ns, 'sleep', '60'], { stdio: 'ignore' });
  const d = new NetlinkLinkDriver(createRunner());
  const host = `gmnl${tag}`;
  t.teardown(() => {
    d.close();
    if (child.pid) process.kill(child.pid, 'SIGKILL');
    try {
      execFileSync('ip', ['link', 'del', host], { stdio: 'ignore' });
    } catch {
      /* already gone */
    }
    sh(['ip', 'netns', 'del', ns]);
  });
  // wait until the sleep runs in the namespace (ip netns exec execs it: same pid)
  const pid = child.pid!;
  for (let i = 0; i < 100 && sh(['readlink', `/proc/${pid}/ns/net`]) === sh(['readlink', '/proc/self/ns/net']); i++)
    await new Promise((r) => setTimeout(r, 20));
  const inNs = (argv: string[]): string => sh(['ip', 'netns', 'exec', ns, ...argv]);

  await d.plugContainer(pid, host, {
    iface: 'eth7',
    mac: '0a:58:c6:12:00:07',
    mtu: 1400,
    cidr: '198.18.0.7/24',
    gateway: '198.18.0.1',
    userspace: true,
  });
  t.true(await d.linkExists(host));
  t.false(await d.linkExists(`gmnlx${tag}`));
  const [link] = JSON.parse(inNs(['ip', '-j', 'addr', 'show', 'dev', 'eth7'])) as {
    address: string;
    mtu: number;
    flags: string[];
    addr_info: { local: string; prefixlen: number }[];
  }[];
  t.is(link!.address, '0a:58:c6:12:00:07');
  t.is(link!.mtu, 1400);
  t.false(link!.flags.includes('UP'), 'the peer stays down until activateContainer');
  t.deepEqual(
    link!.addr_info.map((a) => `${a.local}/${a.prefixlen}`),
    ['198.18.0.7/24'],
  );
  const [h] = JSON.parse(sh(['ip', '-j', 'link', 'show', 'dev', host])) as { mtu: number; flags: string[] }[];
  t.is(h!.mtu, 1400);
  t.true(h!.flags.includes('UP'));
  t.regex(inNs(['ethtool', '-k', 'eth7']), /^tx-checksumming: off/m);
  t.regex(sh(['ethtool', '-k', host]), /^tx-checksumming: off/m);

  await d.activateContainer(pid, 'eth7', '198.18.0.1');
  await d.activateContainer(pid, 'eth7', '198.18.0.1'); // replace: idempotent
  const routes = JSON.parse(inNs(['ip', '-j', 'route', 'show', 'default'])) as { gateway: string; dev: string }[];
  t.deepEqual(
    routes.map((r) => [r.gateway, r.dev]),
    [['198.18.0.1', 'eth7']],
  );
  t.true(
    (JSON.parse(inNs(['ip', '-j', 'link', 'show', 'dev', 'eth7'])) as { flags: string[] }[])[0]!.flags.includes('UP'),
  );

  // a leftover of the same name is replaced
  await d.plugContainer(pid, host, {
    iface: 'eth8',
    mac: '0a:58:c6:12:00:08',
    mtu: 1400,
    cidr: '198.18.0.8/24',
    gateway: undefined,
    userspace: false,
  });
  t.regex(inNs(['ip', '-o', 'link']), /eth8/);
  t.notRegex(inNs(['ip', '-o', 'link']), /eth7/);

  // makeVeth: both sides here, peer down with the MAC
  const peer = `gmnlp${tag}`;
  await d.makeVeth(host + 'v', peer, { mac: '0a:58:c6:12:00:09', mtu: 1450, userspace: true });
  const [p] = JSON.parse(sh(['ip', '-j', 'link', 'show', 'dev', peer])) as {
    address: string;
    mtu: number;
    flags: string[];
  }[];
  t.is(p!.address, '0a:58:c6:12:00:09');
  t.is(p!.mtu, 1450);
  t.false(p!.flags.includes('UP'));
  t.regex(sh(['ethtool', '-k', peer]), /^tx-checksumming: off/m);
  // the same features as `ethtool -K dev tx off` sets (every tx-checksum-*, and what depends on them)
  const ref = `gmnlr${tag}`;
  sh(['ip', 'link', 'add', ref, 'type', 'veth', 'peer', 'name', `gmnls${tag}`]);
  try {
    sh(['ethtool', '-K', ref, 'tx', 'off']);
    const features = (dev: string): string[] => sh(['ethtool', '-k', dev]).split('\n').slice(1);
    t.deepEqual(features(peer), features(ref));
  } finally {
    sh(['ip', 'link', 'del', ref]);
  }
  await d.deleteLink(host + 'v');
  t.false(await d.linkExists(peer));

  await d.deleteLink(host);
  await d.deleteLink(host); // missing is fine
  t.false(await d.linkExists(host));
  t.notRegex(inNs(['ip', '-o', 'link']), /eth8/);
});
