// The pure parts of trace, events and metrics.
import test from 'ava';
import { parseTrace, verdict, traceFlow, natRule, type PortInfo } from '../../agent/bridge/trace.js';
import { resolveEnd } from '../../coordinator/trace.js';
import { attachEvents, tunnelEvents } from '../../coordinator/events.js';
import { reasonClass } from '../../agent/metrics.js';
import { parseMetricsAddr } from '../../common/metrics.js';
import { formatTrace } from '../../coordinator/trace-format.js';

// ovs-appctl ofproto/trace on a lab host (OVS 3.1), trimmed of nothing
const SENT = `Flow: icmp,in_port=3,vlan_tci=0x0000,dl_src=0a:58:c6:12:40:02,dl_dst=0a:58:c6:12:41:02,nw_src=198.18.64.2,nw_dst=198.18.65.2,nw_tos=0,nw_ecn=0,nw_ttl=64,nw_frag=no,icmp_type=8,icmp_code=0

bridge("gremesh0")
------------------
 0. in_port=3, priority 100, cookie 0x67726d
    load:0x1->NXM_NX_REG6[]
    resubmit(,10)
10. ip,in_port=3,dl_src=0a:58:c6:12:40:02,nw_src=198.18.64.2, priority 100, cookie 0x67726d
    resubmit(,20)
20. reg6=0x1,reg7=0,dl_dst=0a:58:c6:12:41:02, priority 90, cookie 0x67726d
    set_field:0x1->tun_id
    output:2
     -> output to native tunnel
     -> tunneling to 198.18.0.12 via br-phy
     -> tunneling from aa:e9:fc:85:7c:ec 198.18.0.11 to de:d6:df:95:d1:eb 198.18.0.12

bridge("br-phy")
----------------
 0. priority 0
    NORMAL
     -> forwarding to learned port

Final flow: icmp,reg6=0x1,tun_id=0x1,in_port=3,vlan_tci=0x0000,dl_src=0a:58:c6:12:40:02,dl_dst=0a:58:c6:12:41:02,nw_src=198.18.64.2,nw_dst=198.18.65.2,nw_tos=0,nw_ecn=0,nw_ttl=64,nw_frag=no,icmp_type=8,icmp_code=0
Megaflow: recirc_id=0,eth,icmp,in_port=3,dl_src=0a:58:c6:12:40:02,dl_dst=0a:58:c6:12:41:02,nw_src=198.18.64.2,nw_ecn=0,nw_frag=no
Datapath actions: tnl_push(tnl_port(5),header(size=42,type=3,eth(dst=de:d6:df:95:d1:eb,src=aa:e9:fc:85:7c:ec,dl_type=0x0800),ipv4(src=198.18.0.11,dst=198.18.0.12,proto=47,tos=0,ttl=64,frag=0x4000),gre((flags=0x2000,proto=0x6558),key=0x1)),out_port(2)),1
`;
const SPOOFED = `Flow: icmp,in_port=3,vlan_tci=0x0000,dl_src=0a:58:c6:12:40:02,dl_dst=0a:58:c6:12:41:02,nw_src=198.18.64.99,nw_dst=198.18.65.2

bridge("gremesh0")
------------------
 0. in_port=3, priority 100, cookie 0x67726d
    load:0x1->NXM_NX_REG6[]
    resubmit(,10)
10. priority 0, cookie 0x67726d
    drop

Final flow: unchanged
Megaflow: recirc_id=0,eth,ip,in_port=3,dl_src=0a:58:c6:12:40:02,nw_src=198.18.64.99,nw_frag=no
Datapath actions: drop
`;
const tunnel = (forwarding: boolean): PortInfo => ({
  kind: 'tunnel',
  name: 'gre-c612000c',
  peer: 'h2',
  forwarding,
  bfdState: forwarding ? 'up' : 'down',
  bfdDiagnostic: forwarding ? '' : 'Control Detection Time Expired',
});
const req = { from: 'container', dstMac: '0a:58:c6:12:41:02', dstIp: '198.18.65.2', greKey: 0, peer: '' };

test('parseTrace: the tables of our bridge only, with their rules and actions; where it went', (t) => {
  const p = parseTrace(SENT, 'gremesh0');
  t.deepEqual(
    p.steps.map((s) => [s.table, s.tableName, s.rule, s.actions]),
    [
      [0, 'classify', 'in_port=3, priority 100', 'load:0x1->NXM_NX_REG6[]'],
      [10, 'port security', 'ip,in_port=3,dl_src=0a:58:c6:12:40:02,nw_src=198.18.64.2, priority 100', ''],
      [20, 'forward', 'reg6=0x1,reg7=0,dl_dst=0a:58:c6:12:41:02, priority 90', 'set_field:0x1->tun_id,output:2'],
    ],
  );
  t.deepEqual(p.outputs, [2]);
  t.regex(p.datapathActions, /^tnl_push/);
});

test('verdict: sent over a forwarding tunnel, dropped on one BFD says is down, spoofed source, delivered', (t) => {
  const sent = parseTrace(SENT, 'gremesh0');
  t.deepEqual(verdict(req, sent, new Map([[2, tunnel(true)]]), 'h1'), {
    verdict: 'sent',
    detail: 'sent to peer h2 over gre-c612000c',
    peer: 'h2',
    tunnel: 'gre-c612000c',
  });
  t.is(
    verdict(req, sent, new Map([[2, tunnel(false)]]), 'h1').detail,
    'dropped: tunnel gre-c612000c to h2 is down (BFD down: Control Detection Time Expired)',
  );
  const spoofed = verdict(req, parseTrace(SPOOFED, 'gremesh0'), new Map(), 'h1');
  t.is(spoofed.verdict, 'dropped');
  t.regex(spoofed.detail, /^dropped at port security/);
  const c: PortInfo = { kind: 'container', name: 'gmaaaaaaaaaaa', container: 'c-h2', network: 'default' };
  t.regex(verdict(req, sent, new Map([[2, c]]), 'h2').detail, /^delivered to c-h2 on h2/);
  t.is(verdict(req, { steps: [], outputs: [], datapathActions: '' }, new Map(), 'h1').verdict, 'dropped');
});

test('traceFlow: the packet as ofproto/trace reads it, from a port or arriving on a tunnel', (t) => {
  const p = { srcMac: 'a', dstMac: 'b', srcIp: '1.1.1.1', dstIp: '2.2.2.2', proto: 'tcp', port: 443 };
  t.is(
    traceFlow(p, 3),
    'in_port=3,dl_src=a,dl_dst=b,tcp,tp_src=40000,tp_dst=443,nw_src=1.1.1.1,nw_dst=2.2.2.2,nw_ttl=64',
  );
  t.regex(
    traceFlow({ ...p, proto: 'icmp' }, 1, { key: 2, src: '198.18.0.11', dst: '198.18.0.12' }),
    /^in_port=1,tun_id=2,tun_src=198\.18\.0\.11,tun_dst=198\.18\.0\.12,.*icmp,icmp_type=8/,
  );
});

test('natRule: the masquerade line of that network, read from the ruleset', (t) => {
  const rs = `table ip gremesh {\n\tchain postrouting {\n\t\tip saddr 198.19.0.0/16 ip daddr != 198.19.0.0/16 oifname != "gmgw*" masquerade\n\t\tip saddr 198.18.64.0/18 ip daddr != 198.18.64.0/18 oifname != "gmgw*" masquerade\n\t}\n}`;
  t.is(
    natRule(rs, '198.18.64.0/18'),
    'ip saddr 198.18.64.0/18 ip daddr != 198.18.64.0/18 oifname != "gmgw*" masquerade',
  );
  t.is(natRule(rs, '10.0.0.0/8'), undefined);
});

test('resolveEnd: by name, address or id prefix; ambiguous and unknown refs are one-line errors', (t) => {
  const eps = [
    { network: 'default', host: 'h1', mac: 'm1', ip: '198.18.64.2', containerId: 'abcdef123456', name: 'web' },
    { network: 'default', host: 'h2', mac: 'm2', ip: '198.18.65.2', containerId: 'abc999999999', name: 'db' },
  ];
  t.is((resolveEnd('web', eps, false) as { endpoint: { host: string } }).endpoint.host, 'h1');
  t.is((resolveEnd('198.18.65.2', eps, false) as { endpoint: { name: string } }).endpoint.name, 'db');
  t.is((resolveEnd('abcdef', eps, false) as { endpoint: { name: string } }).endpoint.name, 'web');
  t.regex((resolveEnd('abc9', eps, false) as { endpoint: { name: string } }).endpoint.name, /db/);
  t.regex((resolveEnd('abc', eps, false) as { error: string }).error, /no container or address "abc"/);
  t.deepEqual(resolveEnd('outside:198.51.100.1', eps, true), { outside: '198.51.100.1' });
  t.regex((resolveEnd('outside:198.51.100.1', eps, false) as { error: string }).error, /not outside/);
  t.regex((resolveEnd('outside:nope', eps, true) as { error: string }).error, /needs an IPv4 or IPv6 address/);
  const twice = [...eps, { ...eps[0]!, host: 'h3', containerId: 'ffff' }];
  t.regex((resolveEnd('web', twice, false) as { error: string }).error, /matches 2 containers/);
});

test('events: a tunnel event only on a change of forwarding; new attach errors only', (t) => {
  const tun = (forwarding: boolean) => ({
    peer: 'h2',
    remoteIp: '198.18.0.12',
    port: 'gre-c612000c',
    bfdState: forwarding ? 'up' : 'down',
    forwarding,
    bfdDiagnostic: forwarding ? '' : 'Control Detection Time Expired',
    bfdFlaps: 1,
  });
  t.deepEqual(tunnelEvents('h1', [], [tun(false)], 1), [], 'first sight of a tunnel: nothing');
  t.deepEqual(tunnelEvents('h1', [tun(true)], [tun(true)], 1), []);
  const down = tunnelEvents('h1', [tun(true)], [tun(false)], 5);
  t.deepEqual(down, [
    {
      timeMs: 5,
      kind: 'tunnel-down',
      host: 'h1',
      peer: 'h2',
      detail: 'gre-c612000c to h2 (198.18.0.12): BFD down, Control Detection Time Expired',
    },
  ]);
  t.is(tunnelEvents('h1', [tun(false)], [tun(true)], 6)[0]!.kind, 'tunnel-up');
  const e1 = { container: 'x', reason: 'unknown network "n"' };
  t.is(attachEvents('h1', [], [e1], 1).length, 1);
  t.is(attachEvents('h1', [e1], [e1], 1).length, 0, 'the same error again: no new event');
});

test('metrics: --metrics ADDR:PORT is checked; attach error reasons are few label values', (t) => {
  t.deepEqual(parseMetricsAddr('127.0.0.1:9477'), { host: '127.0.0.1', port: 9477 });
  for (const bad of ['9477', '127.0.0.1', 'host:0', ':80', '1.2.3.4:99999'])
    t.regex(parseMetricsAddr(bad) as string, /--metrics takes ADDR:PORT/, bad);
  t.is(reasonClass('unknown network "x" (known: default)'), 'unknown_network');
  t.is(reasonClass('network mode is "bridge", gremesh attaches only containers run with --net=none'), 'network_mode');
  t.is(reasonClass('gremesh.mac "zz" is not a unicast MAC address'), 'bad_label');
  t.is(reasonClass('attach failed: sh ... exited 2'), 'attach_failed');
  t.is(reasonClass('something new'), 'other');
});

test('formatTrace: a line per table and host, a verdict per host, the answer last', (t) => {
  const text = formatTrace({
    src: 'c1 (198.18.64.2 on h1)',
    dst: 'c2 (198.18.65.2 on h2)',
    verdict: 'delivered to c2 on h2',
    hops: [
      {
        host: 'h1',
        steps: [
          { table: 0, tableName: 'classify', rule: 'in_port=3, priority 100', actions: 'load:0x1->NXM_NX_REG6[]' },
        ],
        verdict: 'sent',
        detail: 'sent to peer h2 over gre-c612000c',
        peer: 'h2',
        tunnel: 'gre-c612000c',
        datapathActions: '',
      },
    ],
  });
  t.is(
    text,
    [
      'trace c1 (198.18.64.2 on h1) -> c2 (198.18.65.2 on h2)',
      'h1:',
      '   0 classify      in_port=3, priority 100  => load:0x1->NXM_NX_REG6[]',
      '  sent to peer h2 over gre-c612000c',
      'verdict: delivered to c2 on h2',
    ].join('\n'),
  );
});
