// IPv6 on Docker's plugin path (a Docker network made with --ipv6 on a dual-stack gremesh
// network): the IPv6 pool, the binding, the addresses (derived from the IPv4 one when the
// tie is certain), the endpoint's port binding and Join's IPv6 gateway, against fakes.
import test from 'ava';
import * as fs from 'node:fs';
import { bindNetwork, choosePool, planDockerNetworks } from '../../agent/docker/plugin/protocol.js';
import { DockerPlugin } from '../../agent/docker/plugin/driver.js';
import { dockerIpv6, planEndpoint } from '../../agent/docker/attachment.js';
import { ContainerReconciler } from '../../agent/docker/containers.js';
import { bind, FileIpam, parseIpamTable, type IpamTable } from '../../agent/docker/ipam.js';
import { ENDPOINT_KEY, IP6_KEY, endpointIds } from '../../agent/ovs/ids.js';
import type { Snapshot } from '../../agent/model.js';
import { silentLogger } from '../../common/log.js';
import { tempDir } from '../helpers/cli.js';
import { FakeOvsDriver, FakeRuntime, fakeLinks } from '../helpers/fakes.js';

const snap: Snapshot = {
  revision: 1,
  host: 'h2',
  underlayIp: '198.18.0.12',
  networks: [
    { name: 'default', cidr: '198.18.64.0/18', hostPrefixLen: 24, greKey: 1, mtu: 0 },
    {
      name: 'dual',
      cidr: '198.21.0.0/16',
      hostPrefixLen: 24,
      greKey: 2,
      mtu: 0,
      ipv6Cidr: 'fd00:21::/48',
      ipv6HostPrefixLen: 64,
    },
  ],
  slices: [
    { network: 'default', cidr: '198.18.65.0/24' },
    { network: 'dual', cidr: '198.21.1.0/24', ipv6Cidr: 'fd00:21:0:1::/64' },
  ],
  peers: [],
};
const SLICE = { cidr: '198.21.1.0/24', ipv6Cidr: 'fd00:21:0:1::/64' };
const GW6 = { 'com.docker.network.gateway': 'fd00:21:0:1::1/48' };
const err = (a: object) => ('error' in a ? (a as { error: string }).error : 'accepted');

test('RequestPool --ipv6: the IPv6 prefix or this host’s IPv6 slice, with this host’s IPv6 gateway; else the reason', (t) => {
  const want = { PoolID: 'gremesh6/dual', Pool: 'fd00:21::/48', Data: GW6 };
  t.deepEqual(choosePool({ Pool: 'fd00:21::/48', V6: true }, snap), want);
  t.deepEqual(choosePool({ Pool: 'fd00:21:0:1::/64', V6: true }, snap), { ...want, Pool: 'fd00:21:0:1::/64' });
  t.deepEqual(choosePool({ V6: true }, snap, 'dual'), want, 'no IPv6 --subnet: the IPv4 pool’s network');
  t.deepEqual(choosePool({ V6: true, Options: { 'gremesh.network': 'dual' } }, snap), want);
  t.regex(err(choosePool({ V6: true }, snap)), /--ipv6 needs the IPv6 --subnet too.*known: dual fd00:21::\/48/);
  t.regex(
    err(choosePool({ V6: true }, snap, 'default')),
    /^gremesh network default has no IPv6 prefix: create the Docker network without --ipv6$/,
  );
  t.regex(err(choosePool({ Pool: 'fd00:22::/48', V6: true }, snap)), /no gremesh network has the IPv6 prefix/);
  t.regex(
    err(choosePool({ Pool: 'fd00:21:0:2::/64', V6: true }, snap)),
    /nor is it this host's IPv6 slice/,
    'another host’s slice',
  );
  t.regex(err(choosePool({ Pool: 'fd00:21::1/48', V6: true }, snap)), /is not an IPv6 network/);
  t.regex(err(choosePool({ Pool: 'fd00:21::/48', V6: true, SubPool: 'fd00:21::/64' }, snap)), /--ip-range/);
  t.regex(
    err(choosePool({ Pool: 'fd00:21::/48', V6: true, Options: { 'gremesh.network': 'default' } }, snap)),
    /is gremesh network dual/,
  );
});

test('CreateNetwork --ipv6: the IPv6 pool must be the same network’s, with this host’s IPv6 gateway', (t) => {
  const req = (v6: object = {}, v4: object = {}) => ({
    NetworkID: 'n1',
    IPv4Data: [{ AddressSpace: 'gremesh', Pool: '198.21.0.0/16', Gateway: '198.21.1.1/16', ...v4 }],
    IPv6Data: [{ AddressSpace: 'gremesh', Pool: 'fd00:21::/48', Gateway: 'fd00:21:0:1::1/48', ...v6 }],
  });
  t.deepEqual(bindNetwork(req(), snap), { network: 'dual' });
  t.deepEqual(bindNetwork(req({ Pool: 'fd00:21:0:1::/64' }), snap), { network: 'dual' });
  t.regex(err(bindNetwork(req({ Pool: 'fd00:99::/48' }), snap)), /not gremesh network dual's IPv6 prefix/);
  t.regex(err(bindNetwork(req({ Gateway: 'fd00:21:0:1::9/48' }), snap)), /IPv6 gateway .* is not this host's/);
  t.regex(
    err(bindNetwork(req({}, { Pool: '198.18.64.0/18', Gateway: '198.18.65.1/18' }), snap)),
    /gremesh network default has no IPv6 prefix/,
  );
});

test('dockerIpv6: the IPv4 reservation’s mapped address when it is the only one waiting; above the mapped block otherwise; --ip6 checked', (t) => {
  const none = () => false;
  const one: IpamTable = { dual: { '198.21.1.5': 'docker:1:1', '198.21.1.2': 'ep:a', 'fd00:21:0:1::2': 'ep:a' } };
  t.deepEqual(dockerIpv6(one, 'dual', SLICE, undefined, none), { ip6: 'fd00:21:0:1::5', pairWith: 'docker:1:1' });
  const two: IpamTable = { dual: { '198.21.1.5': 'docker:1:1', '198.21.1.6': 'docker:1:2' } };
  t.deepEqual(dockerIpv6(two, 'dual', SLICE, undefined, none), { ip6: 'fd00:21:0:1::100' }, 'ambiguous: above');
  const paired: IpamTable = { dual: { ...two.dual, 'fd00:21:0:1::100': 'docker:1:3', 'fd00:21:0:1::6': 'docker:1:2' } };
  t.deepEqual(
    dockerIpv6(paired, 'dual', SLICE, undefined, none),
    { ip6: 'fd00:21:0:1::5', pairWith: 'docker:1:1' },
    'the other one is paired already',
  );
  t.deepEqual(
    dockerIpv6(two, 'dual', SLICE, undefined, (ip6) => ip6 === 'fd00:21:0:1::100'),
    { ip6: 'fd00:21:0:1::101' },
    'one on the bridge (a labelled container’s gremesh.ip6) is skipped',
  );
  t.deepEqual(dockerIpv6(one, 'dual', SLICE, 'fd00:21:0:1:0::a:1', none), {
    ip6: 'fd00:21:0:1::a:1',
    pairWith: 'docker:1:1',
  });
  t.regex(
    err(dockerIpv6(one, 'dual', SLICE, 'fd00:21:0:2::a:1', none)),
    /^--ip6 fd00:21:0:2::a:1 is not in this host's IPv6 slice fd00:21:0:1::\/64$/,
  );
  t.regex(err(dockerIpv6(one, 'dual', SLICE, 'fd00:21:0:1::9', none)), /where the IPv4 addresses map to/);
  t.regex(err(dockerIpv6(one, 'dual', SLICE, 'nope', none)), /is not an IPv6 address/);
  const held: IpamTable = { dual: { 'fd00:21:0:1::a:1': `ep:${'f'.repeat(64)}` } };
  t.regex(err(dockerIpv6(held, 'dual', SLICE, 'fd00:21:0:1::a:1', none)), /in use by Docker endpoint ffffffffffff/);
  t.regex(err(dockerIpv6({}, 'dual', SLICE, 'fd00:21:0:1::a:1', () => true)), /in use by another container/);
});

test('the address table: IPv6 keys in RFC 5952 text; binding one family keeps the other', (t) => {
  t.deepEqual(parseIpamTable('{"dual":{"198.21.1.5":"ep:a","fd00:21:0:1::5":"ep:a"}}'), {
    dual: { '198.21.1.5': 'ep:a', 'fd00:21:0:1::5': 'ep:a' },
  });
  t.is(typeof parseIpamTable('{"dual":{"fd00:21:0:1:0:0:0:5":"ep:a"}}'), 'string');
  let tb = bind({}, 'dual', '198.21.1.5', 'docker:1:1');
  tb = bind(tb, 'dual', 'fd00:21:0:1::5', 'docker:1:1');
  tb = bind(tb, 'dual', '198.21.1.5', 'ep:a');
  tb = bind(tb, 'dual', 'fd00:21:0:1::5', 'ep:a');
  t.deepEqual(tb, { dual: { '198.21.1.5': 'ep:a', 'fd00:21:0:1::5': 'ep:a' } });
  t.deepEqual(bind(tb, 'dual', '198.21.1.9', 'ep:a').dual, { 'fd00:21:0:1::5': 'ep:a', '198.21.1.9': 'ep:a' });
});

test('planEndpoint with an IPv6 address: its prefix length and this host’s IPv6 gateway; refused on an IPv4-only network', (t) => {
  const none = () => false;
  const p = planEndpoint({ network: 'dual', ip: '198.21.1.5', ip6: 'fd00:21:0:1::5' }, snap, 1500, none);
  t.like(p, { ip: '198.21.1.5', ip6: 'fd00:21:0:1::5', prefixLen6: 48, gateway6: 'fd00:21:0:1::1' });
  t.false('ip6' in (planEndpoint({ network: 'dual', ip: '198.21.1.5' }, snap, 1500, none) as object));
  t.regex(
    err(planEndpoint({ network: 'default', ip: '198.18.65.5', ip6: 'fd00::5' }, snap, 1500, none)),
    /has no IPv6 prefix/,
  );
  t.regex(
    err(planEndpoint({ network: 'dual', ip: '198.21.1.5', ip6: 'fd00:21:0:2::5' }, snap, 1500, none)),
    /not in this host's IPv6 slice/,
  );
});

test('--docker-networks auto: a dual-stack network’s Docker network is made with its IPv6 prefix; one found IPv4 only is reported', (t) => {
  const plan = planDockerNetworks(snap.networks, []);
  t.deepEqual(plan.create[1], { name: 'dual', network: 'dual', cidr: '198.21.0.0/16', cidr6: 'fd00:21::/48' });
  t.false('cidr6' in plan.create[0]!);
  const old = planDockerNetworks(snap.networks, [
    {
      id: 'x',
      name: 'dual',
      driver: 'gremesh',
      labels: { 'gremesh.auto': 'true' },
      options: {},
      subnet: '198.21.0.0/16',
      ipv6: false,
      containers: 0,
    },
  ]);
  t.deepEqual(old.conflicts, [
    'Docker network dual is IPv4 only, gremesh network dual also has the IPv6 prefix fd00:21::/48: remove it (docker network rm dual) to have it made again with IPv6',
  ]);
});

const EP = 'e'.repeat(64);
const EP2 = 'd'.repeat(64);

function setup(t: { teardown(f: () => void): void }) {
  const dir = tempDir('gmp6');
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const ovs = new FakeOvsDriver();
  const rec = new ContainerReconciler({
    runtime: new FakeRuntime(),
    links: fakeLinks,
    ovs,
    ipam: new FileIpam(`${dir}/ipam.json`),
    bridge: 'gremesh0',
    underlayMtu: 1500,
    userspace: true,
    stateDir: dir,
    snapshot: () => snap,
    onChange: async () => {},
    log: silentLogger,
  });
  const plugin = new DockerPlugin({ backend: rec, snapshot: () => snap, stateDir: dir, log: silentLogger });
  return { dir, ovs, rec, h: plugin.handlers() };
}

test('an endpoint on a --ipv6 network: the mapped IPv6 address, gremesh-ip6 on its port, Join’s IPv6 gateway; released with its IPv4 one', async (t) => {
  const { ovs, rec, h, dir } = setup(t);
  rec.start(3_600_000);
  const pool4 = (await h['/IpamDriver.RequestPool']!({ AddressSpace: 'gremesh', Pool: '198.21.0.0/16' })) as {
    PoolID: string;
  };
  const pool6 = (await h['/IpamDriver.RequestPool']!({ AddressSpace: 'gremesh', V6: true })) as { PoolID: string };
  t.is(pool6.PoolID, 'gremesh6/dual', 'no IPv6 --subnet: the network of the IPv4 pool just asked for');
  await h['/NetworkDriver.CreateNetwork']!({
    NetworkID: 'dn6',
    IPv4Data: [{ AddressSpace: 'gremesh', Pool: '198.21.0.0/16', Gateway: '198.21.1.1/16' }],
    IPv6Data: [{ AddressSpace: 'gremesh', Pool: 'fd00:21::/48', Gateway: 'fd00:21:0:1::1/48' }],
  });
  const a4 = (await h['/IpamDriver.RequestAddress']!({ PoolID: pool4.PoolID })) as { Address: string };
  const a6 = (await h['/IpamDriver.RequestAddress']!({ PoolID: pool6.PoolID })) as { Address: string };
  t.is(a4.Address, '198.21.1.2/16');
  t.is(a6.Address, 'fd00:21:0:1::2/48', 'the address its IPv4 one maps to, as on the label path');
  await h['/NetworkDriver.CreateEndpoint']!({
    NetworkID: 'dn6',
    EndpointID: EP,
    Interface: { Address: a4.Address, AddressIPv6: a6.Address },
  });
  const port = ovs.state.interfaces.find((i) => i.externalIds[ENDPOINT_KEY] === EP)!;
  t.is(port.externalIds[IP6_KEY], 'fd00:21:0:1::2');
  const join = (await h['/NetworkDriver.Join']!({ NetworkID: 'dn6', EndpointID: EP })) as Record<string, unknown>;
  t.is(join.GatewayIPv6, 'fd00:21:0:1::1');
  t.is(join.Gateway, '198.21.1.1');
  t.deepEqual(new FileIpam(`${dir}/ipam.json`).table.dual, { '198.21.1.2': `ep:${EP}`, 'fd00:21:0:1::2': `ep:${EP}` });
  // --ip6: in the slice above the mapped block is honoured; a held one, or one of the block, is refused
  await h['/IpamDriver.RequestAddress']!({ PoolID: pool4.PoolID });
  const s6 = (await h['/IpamDriver.RequestAddress']!({ PoolID: pool6.PoolID, Address: 'fd00:21:0:1::1:77' })) as {
    Address: string;
  };
  t.is(s6.Address, 'fd00:21:0:1::1:77/48');
  await t.throwsAsync(h['/IpamDriver.RequestAddress']!({ PoolID: pool6.PoolID, Address: 'fd00:21:0:1::1:77' }), {
    message: /--ip6 fd00:21:0:1::1:77 is in use by a Docker endpoint being created/,
  });
  // refused: the endpoint's IPv4 reservation goes too (Docker never releases it after a failed IPv6 one)
  await h['/IpamDriver.RequestAddress']!({ PoolID: pool4.PoolID });
  await t.throwsAsync(h['/IpamDriver.RequestAddress']!({ PoolID: pool6.PoolID, Address: 'fd00:21:0:2::1:77' }), {
    message: /not in this host's IPv6 slice fd00:21:0:1::\/64/,
  });
  t.false('198.21.1.4' in (new FileIpam(`${dir}/ipam.json`).table.dual ?? {}));
  await h['/IpamDriver.ReleaseAddress']!({ PoolID: pool6.PoolID, Address: 'fd00:21:0:1::1:77' });
  t.deepEqual(Object.keys(new FileIpam(`${dir}/ipam.json`).table.dual ?? {}), ['198.21.1.2', 'fd00:21:0:1::2']);
  // two endpoints asking at once: the tie is ambiguous, the second address comes from above the block
  const b4 = (await h['/IpamDriver.RequestAddress']!({ PoolID: pool4.PoolID })) as { Address: string };
  const c4 = (await h['/IpamDriver.RequestAddress']!({ PoolID: pool4.PoolID })) as { Address: string };
  const b6 = (await h['/IpamDriver.RequestAddress']!({ PoolID: pool6.PoolID })) as { Address: string };
  t.deepEqual([b4.Address, c4.Address, b6.Address], ['198.21.1.3/16', '198.21.1.4/16', 'fd00:21:0:1::100/48']);
  await h['/NetworkDriver.CreateEndpoint']!({
    NetworkID: 'dn6',
    EndpointID: EP2,
    Interface: { Address: b4.Address, AddressIPv6: b6.Address },
  });
  const c6 = (await h['/IpamDriver.RequestAddress']!({ PoolID: pool6.PoolID })) as { Address: string };
  t.is(c6.Address, 'fd00:21:0:1::4/48', 'alone again: the mapped one');
  // an address our IPAM did not hand out is refused
  await t.throwsAsync(
    h['/NetworkDriver.CreateEndpoint']!({
      NetworkID: 'dn6',
      EndpointID: 'c'.repeat(64),
      Interface: { Address: c4.Address, AddressIPv6: 'fd00:21:0:1::999/48' },
    }),
    { message: /address fd00:21:0:1::999 was not handed out by gremesh/ },
  );
  // the endpoint goes; Docker's release of either address frees both
  await h['/NetworkDriver.DeleteEndpoint']!({ NetworkID: 'dn6', EndpointID: EP });
  await h['/IpamDriver.ReleaseAddress']!({ PoolID: pool6.PoolID, Address: 'fd00:21:0:1::2' });
  await h['/IpamDriver.ReleaseAddress']!({ PoolID: pool4.PoolID, Address: '198.21.1.2' });
  const left = new FileIpam(`${dir}/ipam.json`).table.dual ?? {};
  t.false('198.21.1.2' in left || 'fd00:21:0:1::2' in left);
  rec.stop();
});

test('an endpoint port with gremesh-ip6 the table does not know is taken back with both addresses', async (t) => {
  const { ovs, rec, dir } = setup(t);
  await ovs.apply([
    {
      op: 'add-port',
      bridge: 'gremesh0',
      port: 'gmeeeeeeeeeee',
      iface: {
        externalIds: endpointIds(
          { id: EP, network: 'dual', ip: '198.21.1.7', ip6: 'fd00:21:0:1::7', mac: '0a:58:c6:15:01:07' },
          undefined,
        ),
      },
    },
  ]);
  rec.start(3_600_000);
  for (const end = Date.now() + 5000; !fs.existsSync(`${dir}/docker-endpoints.json`) && Date.now() < end;)
    await new Promise((r) => setTimeout(r, 10));
  const eps = JSON.parse(fs.readFileSync(`${dir}/docker-endpoints.json`, 'utf8')) as Record<string, object>;
  t.like(eps[EP], { ip6: 'fd00:21:0:1::7', prefixLen6: 48, gateway6: 'fd00:21:0:1::1' });
  t.deepEqual(new FileIpam(`${dir}/ipam.json`).table.dual, { '198.21.1.7': `ep:${EP}`, 'fd00:21:0:1::7': `ep:${EP}` });
  rec.stop();
});
