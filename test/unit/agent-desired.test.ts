import test from 'ava';
import {
  computeDesired,
  computeFlows,
  containerMtu,
  diffOvs,
  gatewayOf,
  localPorts,
  tunnelPortName,
} from '../../agent/bridge/desired.js';
import { renderFlow } from '../../agent/ovs/flows/render.js';
import type { OvsInterface, OvsState, Snapshot } from '../../agent/model.js';

const snap = (peers = 3): Snapshot => ({
  revision: 7,
  host: 'h1',
  underlayIp: '198.18.0.11',
  networks: [
    { name: 'default', cidr: '198.18.64.0/18', hostPrefixLen: 24, greKey: 1, mtu: 0 },
    { name: 'blue', cidr: '198.19.0.0/16', hostPrefixLen: 24, greKey: 2, mtu: 1400 },
  ],
  slices: [
    { network: 'default', cidr: '198.18.64.0/24' },
    { network: 'blue', cidr: '198.19.0.0/24' },
  ],
  peers: Array.from({ length: peers }, (_, i) => ({
    name: `h${i + 2}`,
    underlayIp: `198.18.0.${12 + i}`,
    slices: [],
    endpoints: [
      {
        network: 'default',
        host: `h${i + 2}`,
        mac: `0a:58:c6:12:4${i + 1}:0a`,
        ip: `198.18.6${5 + i}.10`,
        containerId: '',
      },
    ],
  })),
});
const params = { bridge: 'gremesh0', datapath: 'netdev' as const, underlayMtu: 1500 };
const iface = (o: Partial<OvsInterface>): OvsInterface => ({
  name: 'x',
  bridge: 'gremesh0',
  type: '',
  ofport: 1,
  options: {},
  externalIds: {},
  portExternalIds: {},
  bfdStatus: {},
  macInUse: '',
  mtu: 1500,
  error: '',
  linkState: 'up',
  ifindex: 0,
  ...o,
});

test('names, MTU and gateway', (t) => {
  t.is(tunnelPortName('198.18.0.12'), 'gre-c612000c');
  t.is(containerMtu(0, 1500), 1458);
  t.is(containerMtu(1400, 1500), 1400);
  t.deepEqual(gatewayOf('198.18.65.0/24', '198.18.64.0/18'), { ip: '198.18.65.1', prefixLen: 18 });
});

test('computeDesired: one tunnel per peer (never to itself), a gateway per network', (t) => {
  const s = snap();
  s.peers.push({ name: 'h1', underlayIp: '198.18.0.11', slices: [], endpoints: [] });
  const d = computeDesired(s, params);
  t.deepEqual(
    d.tunnels.map((x) => x.port),
    ['gre-c612000c', 'gre-c612000d', 'gre-c612000e'],
  );
  t.deepEqual(
    d.gateways.map((g) => [g.port, g.ip, g.prefixLen, g.mtu]),
    [
      ['gmgw1', '198.18.64.1', 18, 1458],
      ['gmgw2', '198.19.0.1', 16, 1400],
    ],
  );
  t.deepEqual(d.mtu, { default: 1458, blue: 1400 });
});

test('localPorts: interfaces on the bridge with gremesh external_ids, plus our gateways', (t) => {
  const d = computeDesired(snap(), params);
  const o: OvsState = {
    bridges: [],
    interfaces: [
      iface({
        name: 'ep1',
        externalIds: { 'gremesh-network': 'default', 'gremesh-ip': '198.18.64.10', 'gremesh-mac': '0a:58:c6:12:40:0a' },
      }),
      iface({
        name: 'ep2',
        bridge: 'other',
        externalIds: { 'gremesh-network': 'default', 'gremesh-ip': '198.18.64.11', 'gremesh-mac': '0a:58:c6:12:40:0b' },
      }),
      iface({
        name: 'ep3',
        externalIds: { 'gremesh-network': 'default', 'gremesh-ip': 'bogus', 'gremesh-mac': '0a:58:c6:12:40:0b' },
      }),
      iface({
        name: 'ep4',
        ofport: -1,
        externalIds: { 'gremesh-network': 'default', 'gremesh-ip': '198.18.64.12', 'gremesh-mac': '0a:58:c6:12:40:0c' },
      }),
      iface({ name: 'gmgw1', type: 'internal' }),
    ],
  };
  t.deepEqual(
    localPorts(o, 'gremesh0', d).map((l) => [l.port, l.gateway]),
    [
      ['ep1', false],
      ['gmgw1', true],
    ],
  );
});

test('flows: split horizon — nothing that came from a tunnel is ever sent into a tunnel', (t) => {
  const s = snap(3);
  const d = computeDesired(s, params);
  const locals = [
    { port: 'ep1', network: 'default', ip: '198.18.64.10', mac: '0a:58:c6:12:40:0a', gateway: false, containerId: '' },
    { port: 'gmgw1', network: 'default', ip: '198.18.64.1', mac: '0a:58:c6:12:40:01', gateway: true, containerId: '' },
  ];
  const flows = computeFlows(s, d, locals, new Set(d.tunnels.map((x) => x.port))).map(renderFlow);
  for (const f of flows) {
    const fromTunnel = /reg7=1/.test(f) || (/in_port=gre-/.test(f) && /table=20/.test(f));
    if (fromTunnel) t.notRegex(f.split('actions=')[1]!, /output:gre-/, f);
  }
  // table 20 flows without reg7=0 must not output to a tunnel either (they serve tunnel-origin traffic too)
  for (const f of flows.filter((x) => x.includes('table=20') && !x.includes('reg7=0')))
    t.notRegex(f.split('actions=')[1]!, /gre-/, f);
  const bcast = flows.find((f) => f.includes('reg7=0,reg6=1,dl_dst=01:00:00:00:00:00'))!;
  t.is((bcast.match(/output:gre-/g) ?? []).length, 3, 'broadcast from local reaches every tunnel exactly once');
  t.regex(bcast, /output:ep1.*output:gmgw1/);
});

test('flows: port security, l2pop unicast to exactly one tunnel, unknown networks ignored, default drops', (t) => {
  const s = snap(2);
  const d = computeDesired(s, params);
  const locals = [
    { port: 'ep1', network: 'default', ip: '198.18.64.10', mac: '0a:58:c6:12:40:0a', gateway: false, containerId: '' },
    { port: 'ghost', network: 'nonet', ip: '1.1.1.1', mac: '0a:00:00:00:00:01', gateway: false, containerId: '' },
  ];
  const flows = computeFlows(s, d, locals, new Set(['gre-c612000c'])).map(renderFlow); // h3's tunnel not up yet
  t.true(
    flows.some(
      (f) => f.includes('table=10') && f.includes('in_port=ep1,dl_src=0a:58:c6:12:40:0a,ip,nw_src=198.18.64.10'),
    ),
  );
  t.true(flows.some((f) => f.includes('arp,arp_spa=198.18.64.10,arp_sha=0a:58:c6:12:40:0a')));
  const uni = flows.filter((f) => f.includes('priority=90'));
  t.deepEqual(
    uni.map((f) => f.split('actions=')[1]),
    ['set_field:1->tun_id,output:gre-c612000c'],
    'only the present tunnel, one flow per MAC',
  );
  t.false(flows.some((f) => f.includes('ghost')));
  t.deepEqual(flows.filter((f) => f.includes('priority=0')).length, 3);
});

test('diffOvs: a fresh OVS gets the bridge, tunnels and gateways; a converged one gets nothing', (t) => {
  const d = computeDesired(snap(2), params);
  const ops = diffOvs(d, { bridges: [], interfaces: [] });
  t.deepEqual(ops[0], {
    op: 'ensure-bridge',
    bridge: 'gremesh0',
    datapath: 'netdev',
    failMode: 'secure',
    protocols: ['OpenFlow10', 'OpenFlow13', 'OpenFlow14'],
    externalIds: { 'gremesh-owner': 'agent' },
  });
  t.deepEqual(
    ops.find((o) => o.op === 'add-port' && o.port === 'gre-c612000c'),
    {
      op: 'add-port',
      bridge: 'gremesh0',
      port: 'gre-c612000c',
      iface: {
        type: 'gre',
        options: { remote_ip: '198.18.0.12', key: 'flow' },
        bfd: { enable: 'true' },
        externalIds: { 'gremesh-owner': 'agent', 'gremesh-peer': 'h2' },
      },
      portExternalIds: { 'gremesh-owner': 'agent' },
    },
  );
  const gw = ops.find((o) => o.op === 'add-port' && o.port === 'gmgw1');
  t.like(gw, { iface: { type: 'internal', mac: '0a:58:c6:12:40:01', mtuRequest: 1458 } });
  const converged: OvsState = {
    bridges: [
      {
        name: 'gremesh0',
        datapathType: 'netdev',
        failMode: 'secure',
        protocols: ['OpenFlow10', 'OpenFlow13', 'OpenFlow14'],
        externalIds: { 'gremesh-owner': 'agent' },
      },
    ],
    interfaces: [
      ...d.tunnels.map((x) =>
        iface({
          name: x.port,
          type: 'gre',
          options: { remote_ip: x.remoteIp, key: 'flow' },
          externalIds: { 'gremesh-owner': 'agent', 'gremesh-peer': x.peer },
        }),
      ),
      ...d.gateways.map((g) =>
        iface({
          name: g.port,
          type: 'internal',
          mtu: g.mtu,
          macInUse: g.mac,
          externalIds: { 'gremesh-owner': 'agent', 'gremesh-network': g.network, 'gremesh-ip': g.ip },
        }),
      ),
    ],
  };
  t.deepEqual(diffOvs(d, converged), []);
});

test('diffOvs: removes only stale ports it owns; never a port made by someone else', (t) => {
  const d = computeDesired(snap(1), params);
  const o: OvsState = {
    bridges: [
      {
        name: 'gremesh0',
        datapathType: 'netdev',
        failMode: 'secure',
        protocols: ['OpenFlow10', 'OpenFlow13', 'OpenFlow14'],
        externalIds: { 'gremesh-owner': 'agent' },
      },
    ],
    interfaces: [
      iface({
        name: 'gre-c612000c',
        type: 'gre',
        options: { remote_ip: '198.18.0.12', key: 'flow' },
        externalIds: { 'gremesh-owner': 'agent', 'gremesh-peer': 'h2' },
      }),
      iface({ name: 'gre-c6120063', type: 'gre', externalIds: { 'gremesh-owner': 'agent' } }),
      iface({ name: 'gre-manual', type: 'gre', externalIds: {} }),
      iface({ name: 'ep1', externalIds: { 'gremesh-network': 'default' } }),
    ],
  };
  const dels = diffOvs(d, o).filter((c) => c.op === 'delete-port');
  t.deepEqual(dels, [{ op: 'delete-port', bridge: 'gremesh0', port: 'gre-c6120063' }]);
});

test('reportableEndpoints: only endpoints inside this host’s slice of their network', async (t) => {
  const { reportableEndpoints } = await import('../../agent/bridge/desired.js');
  const l = (ip: string, network = 'default') => ({
    port: ip,
    network,
    ip,
    mac: '0a:58:00:00:00:01',
    gateway: false,
    containerId: '',
  });
  const got = reportableEndpoints(
    [l('198.18.64.5'), l('198.18.65.5'), l('198.18.64.6', 'blue')],
    [{ network: 'default', cidr: '198.18.64.0/24' }],
  );
  t.deepEqual(
    got.map((x) => x.ip),
    ['198.18.64.5'],
  );
});

test('nft ruleset: masquerade out of the network, replies only back in, no GRE from containers, no forwarding between networks', async (t) => {
  const { computeNftRuleset } = await import('../../agent/net/nat.js');
  const r = computeNftRuleset([
    {
      port: 'gmgw1',
      network: 'default',
      greKey: 1,
      ip: '198.18.64.1',
      prefixLen: 18,
      mac: '0a:58:c6:12:40:01',
      mtu: 1458,
      networkCidr: '198.18.64.0/18',
    },
  ]);
  t.regex(r, /ip saddr 198\.18\.64\.0\/18 ip daddr != 198\.18\.64\.0\/18 oifname != "gmgw\*" masquerade/);
  t.regex(r, /iifname "gmgw\*" meta l4proto gre drop/);
  t.regex(r, /iifname "gmgw\*" oifname "gmgw\*" drop/);
  t.regex(r, /oifname "gmgw1" ct state established,related accept\n\s+oifname "gmgw1" drop/);
  t.true(r.indexOf('l4proto gre drop') < r.indexOf('iifname "gmgw1" ip saddr'), 'the GRE drop comes before the accept');
  t.regex(
    r,
    /^table ip6 gremesh\ndelete table ip6 gremesh\ntable ip gremesh\ndelete table ip gremesh\n/,
    'one atomic replace',
  );
});
