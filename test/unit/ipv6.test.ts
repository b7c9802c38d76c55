// IPv6 (issue 27): the pure parts. Address text, prefixes, the network's IPv6 spec, the
// container's IPv6 plan, port security and the ND responder flows, NAT66, persistence.
import test from 'ava';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import {
  cidr6Contains,
  cidrs6Overlap,
  formatIp6,
  linkLocalOf,
  parseCidr6,
  parseIp6,
  subnetAt6,
  formatCidr6,
} from '../../common/ipv6.js';
import { checkIpv6Spec } from '../../coordinator/validate.js';
import { slice6Cidr } from '../../coordinator/allocator.js';
import { planIpv6 } from '../../agent/docker/attachment.js';
import { ICMP6_TYPE, computeDesired, computeFlows, ipv6PortSecurity, ndReply } from '../../agent/bridge/desired.js';
import { flowMod } from '../../agent/ovs/openflow/codec.js';
import { renderFlow } from '../../agent/ovs/flows/render.js';
import { resolvePorts } from '../../agent/ovs/flows/flow.js';
import { computeNftRuleset } from '../../agent/net/nat.js';
import { SqliteStore } from '../../coordinator/sqlite-store.js';
import type { LocalPort, Snapshot } from '../../agent/model.js';

test('IPv6 text: parse, RFC 5952 output, prefixes, slices, EUI-64 link-local', (t) => {
  t.is(parseIp6('fd00:19::1'), (0xfd00n << 112n) | (0x19n << 96n) | 1n);
  for (const bad of ['', ':::', '1::2::3', 'fd00:19::1/64', '12345::', 'g::1', '1.2.3.4', '1:2:3:4:5:6:7'])
    t.is(parseIp6(bad), undefined, bad);
  t.is(formatIp6(parseIp6('2001:0db8:0000:0000:0001:0000:0000:0001')!), '2001:db8::1:0:0:1');
  t.is(formatIp6(parseIp6('fd00:0:0:1::')!), 'fd00:0:0:1::');
  t.is(formatIp6(0n), '::');
  t.is(formatIp6(parseIp6('1:2:3:4:5:6:7:8')!), '1:2:3:4:5:6:7:8');
  t.is(parseCidr6('fd00:19::1/48'), undefined, 'host bits refused');
  const c = parseCidr6('fd00:19::/48')!;
  t.is(formatCidr6(subnetAt6(c, 64, 3)), 'fd00:19:0:3::/64');
  t.true(cidr6Contains(c, parseIp6('fd00:19:0:ffff::1')!));
  t.false(cidr6Contains(c, parseIp6('fd00:1a::1')!));
  t.true(cidrs6Overlap(c, parseCidr6('fd00:19:0:100::/56')!));
  t.false(cidrs6Overlap(c, parseCidr6('fd00:20::/48')!));
  t.is(linkLocalOf('0a:58:c6:13:00:02'), 'fe80::858:c6ff:fe13:2', 'as the kernel makes it (addr_gen_mode eui64)');
});

test('a network’s IPv6 prefix: refused in one line when malformed, too small, not unicast, overlapping', (t) => {
  const v4 = { cidr: '198.19.0.0/16', hostPrefixLen: 24 };
  t.is(checkIpv6Spec('fd00:19::/48', 64, v4, []), undefined);
  t.regex(checkIpv6Spec('fd00:19::1/48', 64, v4, [])!, /not an IPv6 network/);
  t.regex(checkIpv6Spec('fe80::/48', 64, v4, [])!, /not global or unique-local/);
  t.regex(checkIpv6Spec('ff00::/16', 64, v4, [])!, /not global or unique-local/);
  t.regex(checkIpv6Spec('fd00:19::/48', 40, v4, [])!, /must be longer/);
  t.regex(checkIpv6Spec('fd00:19::/48', 124, v4, [])!, /at most \/120/);
  t.regex(checkIpv6Spec('fd00:19::/60', 64, v4, [])!, /16 \/64 slices, fewer than the 256/);
  t.regex(checkIpv6Spec('fd00:19::/48', 64, v4, [{ name: 'a', ipv6Cidr: 'fd00::/16' }])!, /overlaps network a/);
  t.regex(
    checkIpv6Spec('fd00:19::/48', 64, v4, [], [{ what: 'host h1’s underlay IP', ip: 'fd00:19::7' }])!,
    /underlay must stay outside/,
  );
  t.is(slice6Cidr({ ipv6Cidr: 'fd00:19::/48', ipv6HostPrefixLen: 64 }, 2), 'fd00:19:0:2::/64');
  t.is(slice6Cidr({}, 2), undefined, 'IPv4-only network: no IPv6 slice');
});

test('a container’s IPv6 address: the IPv4 offset in the IPv6 slice, or a free static one above that block', (t) => {
  const net = { name: 'six', ipv6Cidr: 'fd00:19::/48' };
  const slice = { cidr: '198.19.1.0/24', ipv6Cidr: 'fd00:19:0:1::/64' };
  const free = () => false;
  t.deepEqual(planIpv6(net, slice, '198.19.1.5', undefined, free), {
    ip6: 'fd00:19:0:1::5',
    prefixLen6: 48,
    gateway6: 'fd00:19:0:1::1',
  });
  t.is(planIpv6({ name: 'v4' }, { cidr: '198.19.1.0/24' }, '198.19.1.5', undefined, free), undefined);
  const err = (want: string, taken = false) => {
    const r = planIpv6(net, slice, '198.19.1.5', want, () => taken);
    return r && 'error' in r ? r.error : '';
  };
  t.regex(err('fd00:19:0:2::1234'), /not in this host's IPv6 slice/);
  t.regex(err('fd00:19:0:1::20'), /where the IPv4 addresses map to/);
  t.regex(err('nope'), /not an IPv6 address/);
  t.regex(err('fd00:19:0:1::beef:1', true), /in use by another container/);
  t.is(
    (planIpv6(net, slice, '198.19.1.5', 'fd00:19:0:1:0::BEEF:1', free) as { ip6: string }).ip6,
    'fd00:19:0:1::beef:1',
  );
  const r = planIpv6({ name: 'v4' }, { cidr: '198.19.1.0/24' }, '198.19.1.5', 'fd00::1', free);
  t.regex(r && 'error' in r ? r.error : '', /has no IPv6 prefix/);
});

const snap: Snapshot = {
  revision: 1,
  host: 'h1',
  underlayIp: '198.18.0.11',
  networks: [
    {
      name: 'six',
      cidr: '198.19.0.0/16',
      hostPrefixLen: 24,
      greKey: 2,
      mtu: 0,
      ipv6Cidr: 'fd00:19::/48',
      ipv6HostPrefixLen: 64,
    },
  ],
  slices: [{ network: 'six', cidr: '198.19.0.0/24', ipv6Cidr: 'fd00:19::/64' }],
  peers: [
    {
      name: 'h2',
      underlayIp: '198.18.0.12',
      slices: [{ network: 'six', cidr: '198.19.1.0/24', ipv6Cidr: 'fd00:19:0:1::/64' }],
      endpoints: [
        {
          network: 'six',
          host: 'h2',
          mac: '0a:58:c6:13:01:02',
          ip: '198.19.1.2',
          ip6: 'fd00:19:0:1::2',
          containerId: 'b',
        },
      ],
    },
  ],
};

test('dual-stack flows: port security, the ND responder for local and remote addresses, and every flow encodes', (t) => {
  const d = computeDesired(snap, { bridge: 'gremesh0', datapath: 'netdev', underlayMtu: 1500 });
  t.like(d.gateways[0], { ip: '198.19.0.1', ip6: 'fd00:19::1', prefixLen6: 48 });
  const locals: LocalPort[] = [
    {
      port: 'gmgw2',
      network: 'six',
      ip: '198.19.0.1',
      ip6: 'fd00:19::1',
      mac: '0a:58:c6:13:00:01',
      gateway: true,
      containerId: '',
    },
    {
      port: 'gma',
      network: 'six',
      ip: '198.19.0.2',
      ip6: 'fd00:19::2',
      mac: '0a:58:c6:13:00:02',
      gateway: false,
      containerId: 'a',
    },
  ];
  const flows = computeFlows(snap, d, locals, new Set(['gre-c612000c']));
  const text = flows.map(renderFlow);
  const has = (re: RegExp) =>
    t.true(
      text.some((l) => re.test(l)),
      re.source,
    );
  has(/table=10,priority=100,in_port=gma,dl_src=0a:58:c6:13:00:02,ipv6,ipv6_src=fd00:19::2,actions=resubmit\(,20\)/);
  has(/table=10,priority=100,in_port=gma,dl_src=0a:58:c6:13:00:02,ipv6,ipv6_src=fe80::858:c6ff:fe13:2,/);
  has(/table=10,priority=101,in_port=gma,ipv6,nw_proto=58,icmpv6_type=134,actions=drop/);
  has(/table=10,priority=101,in_port=gma,ipv6,nw_proto=58,icmpv6_type=137,actions=drop/);
  has(/icmpv6_type=136,nd_target=fd00:19::2,nd_tll=0a:58:c6:13:00:02,actions=resubmit\(,20\)/);
  t.false(
    text.some((l) => /icmpv6_type=136,nd_target=fd00:19:0:1::2/.test(l) && /in_port=gma/.test(l)),
    'no NA for another',
  );
  // the responder: for the remote endpoint, the local container and the gateway (router flag)
  for (const [ip6, mac, flags] of [
    ['fd00:19:0:1::2', '0a:58:c6:13:01:02', '0x60000000'],
    ['fd00:19::2', '0a:58:c6:13:00:02', '0x60000000'],
    ['fd00:19::1', '0a:58:c6:13:00:01', '0xe0000000'],
  ]) {
    has(
      new RegExp(
        `table=20,priority=110,reg7=0,reg6=2,dl_dst=33:33:00:00:00:00/ff:ff:00:00:00:00,ipv6,nw_proto=58,icmpv6_type=135,nd_target=${ip6},actions=.*set_field:${flags}->nd_reserved,set_field:2->nd_options_type,resubmit\\(,25\\)`,
      ),
    );
    has(
      new RegExp(
        `table=25,priority=100,reg6=2,ipv6,nw_proto=58,icmpv6_type=136,nd_target=${ip6},actions=set_field:${mac}->nd_tll,in_port`,
      ),
    );
  }
  has(/table=25,priority=0,actions=drop/);
  // every flow is one OVS takes: the encoder refuses what the switch would (prerequisites)
  const ports = new Map([
    ['gmgw2', 1],
    ['gma', 2],
    ['gre-c612000c', 3],
  ]);
  for (const f of resolvePorts(flows, ports)) t.notThrows(() => flowMod(f, 'add', 1), renderFlow(f));
  // an IPv4-only snapshot has no table 25 at all
  const v4: Snapshot = {
    ...snap,
    networks: [{ ...snap.networks[0]!, ipv6Cidr: undefined, ipv6HostPrefixLen: undefined }],
  };
  t.false(computeFlows(v4, d, [], new Set()).some((f) => f.table === 'ndReply'));
});

test('the ND responder turns a solicitation into the advertisement; port security drops DAD and RA', (t) => {
  const a = ndReply('0a:58:c6:13:00:02', 'fd00:19::2', false);
  t.deepEqual(
    a.filter((x) => x.type === 'set').map((x) => (x as { field: string }).field),
    ['ipv6_src', 'icmpv6_type', 'nd_reserved', 'nd_options_type'],
  );
  const ps = ipv6PortSecurity('gma', '0a:58:c6:13:00:02', 'fd00:19::2');
  t.false(
    ps.some((f) => f.match.ipv6Src === '::'),
    'no flow lets :: (DAD) through',
  );
  t.true(ps.some((f) => f.match.icmp6Type === ICMP6_TYPE.ra && f.actions.length === 0));
});

test('NAT66: a dual-stack gateway gets an ip6 table masquerading its prefix; none: the table goes', (t) => {
  const gw = {
    port: 'gmgw2',
    network: 'six',
    greKey: 2,
    ip: '198.19.0.1',
    prefixLen: 16,
    mac: '0a:58:c6:13:00:01',
    mtu: 1458,
    ip6: 'fd00:19::1',
    prefixLen6: 48,
  };
  const r = computeNftRuleset([{ ...gw, networkCidr: '198.19.0.0/16', networkCidr6: 'fd00:19::/48' }]);
  t.regex(
    r,
    /table ip6 gremesh \{[\s\S]*ip6 saddr fd00:19::\/48 ip6 daddr != fd00:19::\/48 oifname != "gmgw\*" masquerade/,
  );
  t.regex(r, /iifname "gmgw\*" meta l4proto ipv6-icmp accept/);
  t.regex(r, /iifname "gmgw\*" oifname "gmgw\*" drop/);
  const none = computeNftRuleset([{ ...gw, ip6: undefined, networkCidr: '198.19.0.0/16' }]);
  t.regex(none, /^table ip6 gremesh\ndelete table ip6 gremesh\ntable ip gremesh/);
  t.notRegex(none, /table ip6 gremesh \{/);
});

test('SqliteStore keeps a network’s IPv6 prefix across reopening', async (t) => {
  const f = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'gm-ipv6-')), 'c.db');
  const a = new SqliteStore(f);
  await a.tx((x) =>
    x.putNetwork({
      name: 'six',
      cidr: '198.19.0.0/16',
      hostPrefixLen: 24,
      greKey: 2,
      mtu: 0,
      createdMs: 1,
      ipv6Cidr: 'fd00:19::/48',
      ipv6HostPrefixLen: 64,
    }),
  );
  a.close();
  const b = new SqliteStore(f);
  t.like(await b.tx((x) => x.network('six')), { ipv6Cidr: 'fd00:19::/48', ipv6HostPrefixLen: 64 });
  b.close();
});
