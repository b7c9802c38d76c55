// Docker's network + IPAM plugin: the pure answers (protocol.ts), and the endpoint side of
// the container reconciler against fakes at its boundaries (Docker, OVS, the kernel).
import test from 'ava';
import * as fs from 'node:fs';
import {
  bindNetwork,
  choosePool,
  dockerNetworkName,
  networkOfPool,
  planDockerNetworks,
  type DockerNetworkInfo,
} from '../../agent/docker/plugin/protocol.js';
import { DockerPlugin } from '../../agent/docker/plugin/driver.js';
import { planEndpoint } from '../../agent/docker/attachment.js';
import { ContainerReconciler } from '../../agent/docker/containers.js';
import { FileIpam } from '../../agent/docker/ipam.js';
import { ENDPOINT_KEY, endpointIds } from '../../agent/ovs/ids.js';
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
    { name: 'blue', cidr: '198.19.0.0/16', hostPrefixLen: 24, greKey: 2, mtu: 1400 },
  ],
  slices: [
    { network: 'default', cidr: '198.18.65.0/24' },
    { network: 'blue', cidr: '198.19.1.0/24' },
  ],
  peers: [
    {
      name: 'h1',
      underlayIp: '198.18.0.11',
      slices: [],
      endpoints: [{ network: 'default', host: 'h1', mac: '02:00:00:00:00:01', ip: '198.18.64.2', containerId: 'x' }],
    },
  ],
};

test('RequestPool: --subnet picks the gremesh network and this host’s gateway; everything else is refused with the reason', (t) => {
  t.deepEqual(choosePool({ Pool: '198.18.64.0/18' }, snap), {
    PoolID: 'gremesh/default',
    Pool: '198.18.64.0/18',
    Data: { 'com.docker.network.gateway': '198.18.65.1/18' },
  });
  t.is(networkOfPool('gremesh/blue'), 'blue');
  t.is(networkOfPool('LocalDefault/10.0.0.0/8'), undefined);
  const err = (r: Parameters<typeof choosePool>[0]) => {
    const a = choosePool(r, snap);
    return 'error' in a ? a.error : 'accepted';
  };
  t.regex(err({}), /--subnet is required.*known: default 198\.18\.64\.0\/18, blue 198\.19\.0\.0\/16/);
  t.regex(err({ Pool: '10.0.0.0/8' }), /no gremesh network has the subnet 10\.0\.0\.0\/8/);
  t.regex(err({ Pool: '198.18.0.0/17' }), /no gremesh network has the subnet/, 'the CIDR exactly, not one around it');
  t.regex(err({ Pool: '198.18.64.0/17' }), /is not an IPv4 network/, 'host bits set');
  t.regex(err({ Pool: 'nonsense' }), /is not an IPv4 network/);
  t.regex(err({ Pool: '198.18.64.0/18', V6: true }), /is not an IPv6 network/);
  t.regex(err({ Pool: '198.18.64.0/18', SubPool: '198.18.64.0/24' }), /--ip-range is not supported/);
  t.regex(err({ Pool: '198.18.64.0/18', Options: { 'gremesh.network': 'blue' } }), /is gremesh network default/);
  t.deepEqual(choosePool({ Pool: '198.18.64.0/18' }, undefined), {
    error: 'the agent has no desired state yet (coordinator not reached)',
  });
});

test('CreateNetwork: bound by the subnet our IPAM gave, -o checked, the MTU option read; another IPAM’s pool refused', (t) => {
  const req = (generic: Record<string, string> = {}, v4: object = {}) => ({
    NetworkID: 'n1',
    Options: { 'com.docker.network.generic': generic },
    IPv4Data: [{ AddressSpace: 'gremesh', Pool: '198.19.0.0/16', Gateway: '198.19.1.1/16', ...v4 }],
  });
  t.deepEqual(bindNetwork(req(), snap), { network: 'blue' });
  t.deepEqual(bindNetwork(req({ 'gremesh.network': 'blue', 'com.docker.network.driver.mtu': '1300' }), snap), {
    network: 'blue',
    mtu: 1300,
  });
  const err = (r: Parameters<typeof bindNetwork>[0]) => {
    const a = bindNetwork(r, snap);
    return 'error' in a ? a.error : 'accepted';
  };
  t.regex(err(req({ 'gremesh.network': 'nope' })), /no gremesh network "nope"/);
  t.regex(err(req({ 'gremesh.network': 'default' })), /subnet 198\.19\.0\.0\/16 is gremesh network blue/);
  t.regex(err(req({ 'gremesh.colour': 'x' })), /unknown option -o "gremesh.colour"/);
  t.regex(err(req({ 'com.docker.network.driver.mtu': 'big' })), /must be a whole number/);
  t.regex(err(req({}, { AddressSpace: 'LocalDefault' })), /--ipam-driver gremesh/);
  t.regex(err(req({}, { Gateway: '198.19.0.1/16' })), /gateway 198\.19\.0\.1 is not this host's \(198\.19\.1\.1\)/);
  t.regex(err(req({}, { Pool: '172.20.0.0/16' })), /no gremesh network's/);
  t.regex(err({ NetworkID: 'n', IPv4Data: [] }), /exactly one subnet/);
  t.regex(err({ ...req(), IPv6Data: [{ Pool: 'fd00::/64' }] }), /gremesh network blue has no IPv6 prefix/);
});

test('Docker network names: reserved names get a gremesh- prefix; auto mode makes, keeps and removes only its own', (t) => {
  t.is(dockerNetworkName('default'), 'gremesh-default');
  t.is(dockerNetworkName('bridge'), 'gremesh-bridge');
  t.is(dockerNetworkName('blue'), 'blue');
  const d = (name: string, over: Partial<DockerNetworkInfo> = {}): DockerNetworkInfo => ({
    id: name,
    name,
    driver: 'gremesh',
    labels: { 'gremesh.auto': 'true' },
    options: {},
    subnet: undefined,
    containers: 0,
    ...over,
  });
  const plan = planDockerNetworks(snap.networks, [
    d('bridge', { driver: 'bridge', labels: {} }),
    d('blue', { driver: 'macvlan', labels: {} }),
    d('red', { options: { 'gremesh.network': 'red' } }),
    d('green', { options: { 'gremesh.network': 'green' }, containers: 2 }),
    d('mine', { labels: {}, options: { 'gremesh.network': 'gone' } }),
  ]);
  t.deepEqual(plan.create, [{ name: 'gremesh-default', network: 'default', cidr: '198.18.64.0/18' }]);
  t.deepEqual(
    plan.remove.map((x) => x.name),
    ['red'],
    'an auto network whose gremesh network is gone; not one in use, not one made by hand',
  );
  t.deepEqual(plan.conflicts, [
    'Docker network blue exists with driver macvlan: gremesh network blue is not made there',
  ]);
  t.deepEqual(
    planDockerNetworks(snap.networks, [d('gremesh-default', { subnet: '198.18.64.0/18' }), d('blue')]).create,
    [],
    'nothing to do when both exist',
  );
});

test('planEndpoint: as a labelled container (MTU, gateway, MAC from the address); a smaller network MTU wins; a MAC in use is refused', (t) => {
  const none = () => false;
  t.deepEqual(planEndpoint({ network: 'default', ip: '198.18.65.7' }, snap, 1500, none), {
    network: 'default',
    ip: '198.18.65.7',
    prefixLen: 18,
    mac: '0a:58:c6:12:41:07',
    mtu: 1458,
    gateway: '198.18.65.1',
  });
  const blue = planEndpoint({ network: 'blue', ip: '198.19.1.5', mtu: 1300 }, snap, 1500, none);
  t.is('error' in blue ? 0 : blue.mtu, 1300);
  const big = planEndpoint({ network: 'blue', ip: '198.19.1.5', mtu: 9000 }, snap, 1500, none);
  t.is('error' in big ? 0 : big.mtu, 1400, 'the network’s own MTU when the option is larger');
  const onPeer = planEndpoint({ network: 'default', ip: '198.18.65.7', mac: '02:00:00:00:00:01' }, snap, 1500, none);
  t.deepEqual(onPeer, { error: '--mac-address 02:00:00:00:00:01 is in use on h1' });
  const group = planEndpoint({ network: 'default', ip: '198.18.65.7', mac: '01:00:5e:00:00:01' }, snap, 1500, none);
  t.regex('error' in group ? group.error : '', /not a unicast MAC/);
});

const EP = 'e'.repeat(64);

async function waitFor(f: () => boolean, ms = 5000): Promise<void> {
  for (const end = Date.now() + ms; !f() && Date.now() < end;) await new Promise((r) => setTimeout(r, 10));
}

function setup(t: { teardown(f: () => void): void }, dir = tempDir('gmpl'), vethsThere = new Set<string>()) {
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const ovs = new FakeOvsDriver();
  const runtime = new FakeRuntime();
  const made: string[] = [];
  const rec = new ContainerReconciler({
    runtime,
    links: { ...fakeLinks, makeVeth: async (h) => void made.push(h), linkExists: async (n) => vethsThere.has(n) },
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
  return { dir, ovs, runtime, rec, plugin, h: plugin.handlers(), made };
}

test('an endpoint through the plugin: address from the slice, veth and port with the binding, then gone on DeleteEndpoint; the address waits for ReleaseAddress', async (t) => {
  const { ovs, rec, h, made, dir } = setup(t);
  rec.start(3_600_000);
  t.deepEqual(await h['/Plugin.Activate']!({}), { Implements: ['NetworkDriver', 'IpamDriver'] });
  const pool = (await h['/IpamDriver.RequestPool']!({ AddressSpace: 'gremesh', Pool: '198.18.64.0/18' })) as {
    PoolID: string;
  };
  await h['/NetworkDriver.CreateNetwork']!({
    NetworkID: 'dn1',
    Options: { 'com.docker.network.generic': {} },
    IPv4Data: [{ AddressSpace: 'gremesh', Pool: '198.18.64.0/18', Gateway: '198.18.65.1/18' }],
  });
  const addr = (await h['/IpamDriver.RequestAddress']!({ PoolID: pool.PoolID, Address: '' })) as { Address: string };
  t.is(addr.Address, '198.18.65.2/18', 'the first free address of this host’s slice, with the network’s prefix');
  const created = (await h['/NetworkDriver.CreateEndpoint']!({
    NetworkID: 'dn1',
    EndpointID: EP,
    Interface: { Address: addr.Address },
  })) as { Interface: { MacAddress?: string } };
  t.deepEqual(created, { Interface: { MacAddress: '0a:58:c6:12:41:02' } });
  t.deepEqual(made, ['gmeeeeeeeeeee'], 'one veth pair, named after the endpoint');
  const port = ovs.state.interfaces.find((i) => i.externalIds[ENDPOINT_KEY] === EP)!;
  t.is(port.name, 'gmeeeeeeeeeee');
  t.is(port.externalIds['gremesh-ip'], '198.18.65.2');
  t.is(port.externalIds['gremesh-network'], 'default');
  // asked again (Docker retries): the same answer, nothing doubled
  await h['/NetworkDriver.CreateEndpoint']!({ NetworkID: 'dn1', EndpointID: EP, Interface: { Address: addr.Address } });
  t.is(made.length, 1);
  const join = (await h['/NetworkDriver.Join']!({ NetworkID: 'dn1', EndpointID: EP, SandboxKey: '/x' })) as object;
  t.deepEqual(join, {
    InterfaceName: { SrcName: 'gneeeeeeeeeee', DstPrefix: 'eth' },
    Gateway: '198.18.65.1',
    DisableGatewayService: true,
  });
  // a label pass (the container loop) leaves the endpoint's port alone
  rec.markDirty();
  await rec.nextPass();
  t.truthy(ovs.state.interfaces.find((i) => i.name === 'gmeeeeeeeeeee'));
  // --ip of an address in use, outside the slice
  const taken = h['/IpamDriver.RequestAddress']!({ PoolID: pool.PoolID, Address: '198.18.65.2' });
  await t.throwsAsync(taken, { message: /--ip 198\.18\.65\.2 is taken by Docker endpoint eeeeeeeeeeee/ });
  await t.throwsAsync(h['/IpamDriver.RequestAddress']!({ PoolID: pool.PoolID, Address: '198.18.64.9' }), {
    message: /not a usable address of this host's slice 198\.18\.65\.0\/24/,
  });
  // a late ReleaseAddress while the endpoint lives takes nothing from it
  await h['/IpamDriver.ReleaseAddress']!({ PoolID: pool.PoolID, Address: '198.18.65.2' });
  t.is(new FileIpam(`${dir}/ipam.json`).table.default?.['198.18.65.2'], `ep:${EP}`);
  await h['/NetworkDriver.Leave']!({ NetworkID: 'dn1', EndpointID: EP });
  await h['/NetworkDriver.DeleteEndpoint']!({ NetworkID: 'dn1', EndpointID: EP });
  t.falsy(
    ovs.state.interfaces.find((i) => i.name === 'gmeeeeeeeeeee'),
    'port gone',
  );
  t.is(new FileIpam(`${dir}/ipam.json`).table.default?.['198.18.65.2'], `ep:${EP}`, 'held until Docker releases it');
  await h['/IpamDriver.ReleaseAddress']!({ PoolID: pool.PoolID, Address: '198.18.65.2' });
  t.deepEqual(new FileIpam(`${dir}/ipam.json`).table.default, {});
  await h['/NetworkDriver.DeleteEndpoint']!({ NetworkID: 'dn1', EndpointID: EP }); // again: fine
  rec.stop();
});

test('CreateEndpoint refuses an address gremesh did not hand out (another IPAM), and an unknown Docker network', async (t) => {
  const { rec, h } = setup(t);
  rec.start(3_600_000);
  await h['/NetworkDriver.CreateNetwork']!({
    NetworkID: 'dn1',
    IPv4Data: [{ AddressSpace: 'gremesh', Pool: '198.18.64.0/18', Gateway: '198.18.65.1/18' }],
  });
  await t.throwsAsync(
    h['/NetworkDriver.CreateEndpoint']!({ NetworkID: 'dn1', EndpointID: EP, Interface: { Address: '198.18.65.9/18' } }),
    { message: /was not handed out by gremesh on this host/ },
  );
  await t.throwsAsync(
    h['/NetworkDriver.CreateEndpoint']!({
      NetworkID: 'nope',
      EndpointID: EP,
      Interface: { Address: '198.18.65.9/18' },
    }),
    { message: /not known to this agent/ },
  );
  rec.stop();
});

test('after a restart: endpoints Docker no longer lists and addresses it never released are dropped once past the grace; live ones stay', async (t) => {
  const dir = tempDir('gmpl');
  const old = Date.now() - 120_000;
  const ep = (id: string) => ({
    id,
    dockerNetwork: 'dn1',
    network: 'default',
    ip: id === EP ? '198.18.65.2' : '198.18.65.3',
    prefixLen: 18,
    mac: '0a:58:c6:12:41:02',
    mtu: 1458,
    gateway: '198.18.65.1',
    hostIf: `gm${id.slice(0, 11)}`,
    peerIf: `gn${id.slice(0, 11)}`,
    created: old,
    joined: true,
  });
  const live = 'a'.repeat(64);
  fs.writeFileSync(`${dir}/docker-endpoints.json`, JSON.stringify({ [EP]: ep(EP), [live]: ep(live) }));
  fs.writeFileSync(
    `${dir}/ipam.json`,
    JSON.stringify({
      default: {
        '198.18.65.2': `ep:${EP}`,
        '198.18.65.3': `ep:${live}`,
        '198.18.65.4': `docker:${old}:1`,
        '198.18.65.5': `docker:${Date.now()}:2`,
      },
    }),
  );
  const { rec, runtime, ovs } = setup(t, dir, new Set([`gm${live.slice(0, 11)}`]));
  runtime.dockerEndpoints.add(live);
  rec.start(3_600_000);
  await rec.nextPass();
  t.deepEqual(Object.keys(JSON.parse(fs.readFileSync(`${dir}/docker-endpoints.json`, 'utf8')) as object), [live]);
  t.deepEqual(Object.keys(new FileIpam(`${dir}/ipam.json`).table.default ?? {}), [
    '198.18.65.2', // its endpoint is gone: released after the grace, counted from now (Docker may still release it)
    '198.18.65.3', // live
    '198.18.65.5', // handed to Docker just now: its endpoint may be on its way
  ]);
  await waitFor(() => ovs.state.interfaces.some((i) => i.name === `gm${live.slice(0, 11)}`));
  t.falsy(
    ovs.state.interfaces.find((i) => i.name === `gm${EP.slice(0, 11)}`),
    'the live endpoint’s port is back, not the gone one’s',
  );
  rec.stop();
});

test('an endpoint port the table does not know (its file lost) is taken back, not unplugged under its container; a lost network binding is found from the address', async (t) => {
  const { ovs, rec, h, dir } = setup(t);
  await ovs.apply([
    {
      op: 'add-port',
      bridge: 'gremesh0',
      port: 'gmeeeeeeeeeee',
      iface: {
        externalIds: endpointIds(
          { id: EP, network: 'default', ip: '198.18.65.7', mac: '0a:58:c6:12:41:07' },
          undefined,
        ),
      },
    },
  ]);
  rec.start(3_600_000);
  await waitFor(() => fs.existsSync(`${dir}/docker-endpoints.json`));
  t.truthy(
    ovs.state.interfaces.find((i) => i.name === 'gmeeeeeeeeeee'),
    'still plugged',
  );
  t.is(new FileIpam(`${dir}/ipam.json`).table.default?.['198.18.65.7'], `ep:${EP}`, 'its address is held again');
  const pool = (await h['/IpamDriver.RequestPool']!({ Pool: '198.18.64.0/18' })) as { PoolID: string };
  const addr = (await h['/IpamDriver.RequestAddress']!({ PoolID: pool.PoolID })) as { Address: string };
  t.is(addr.Address, '198.18.65.2/18');
  // docker-networks.json lost: CreateEndpoint on a network the agent never saw binds it from the address
  const r = await h['/NetworkDriver.CreateEndpoint']!({
    NetworkID: 'unseen',
    EndpointID: 'f'.repeat(64),
    Interface: { Address: addr.Address },
  });
  t.deepEqual(r, { Interface: { MacAddress: '0a:58:c6:12:41:02' } });
  rec.stop();
});
