import test from 'ava';
import { bundleAdd, bundleControl, encodeFlowMod, splitMessages, OFPT } from '../../agent/ovs/openflow/codec.js';
import { parseFlow } from '../../agent/ovs/openflow/parse-text.js';

test('parseFlow reads every match and action computeFlows writes, prerequisites first', (t) => {
  const f = parseFlow(
    'cookie=0x67726d,table=10,priority=100,in_port=7,dl_src=0a:58:c6:12:40:02,arp,arp_spa=198.18.64.2,arp_sha=0a:58:c6:12:40:02,actions=resubmit(,20)',
  );
  t.is(f.cookie, 0x67726dn);
  t.is(f.table, 10);
  t.is(f.priority, 100);
  t.deepEqual(
    f.match.map((m) => m.field),
    ['in_port', 'eth_src', 'eth_type', 'arp_spa', 'arp_sha'],
  );
  t.deepEqual(f.actions, [{ type: 'resubmit', table: 20 }]);
  const g = parseFlow(
    'cookie=0x67726d,table=20,priority=50,reg7=0,reg6=1,dl_dst=01:00:00:00:00:00/01:00:00:00:00:00,actions=output:3,set_field:1->tun_id,output:4',
  );
  t.deepEqual(g.match.find((m) => m.field === 'eth_dst')!.mask, Buffer.from('010000000000', 'hex'));
  t.deepEqual(g.actions, [
    { type: 'output', port: 3 },
    { type: 'set', field: 'tunnel_id', value: 1n },
    { type: 'output', port: 4 },
  ]);
  const h = parseFlow(
    'table=0,priority=100,in_port=2,tun_id=2,actions=load:2->NXM_NX_REG6[],load:1->NXM_NX_REG7[],resubmit(,20)',
  );
  t.deepEqual(
    h.actions.slice(0, 2).map((a) => [a.type, 'value' in a ? a.value : undefined]),
    [
      ['load', 2n],
      ['load', 1n],
    ],
  );
  const arp = parseFlow(
    'table=20,priority=110,reg7=0,reg6=1,arp,arp_op=1,arp_tpa=198.18.64.2,actions=move:NXM_OF_ETH_SRC[]->NXM_OF_ETH_DST[],load:0x0a58c6124002->NXM_OF_ETH_SRC[],load:0x2->NXM_OF_ARP_OP[],move:NXM_NX_ARP_SHA[]->NXM_NX_ARP_THA[],move:NXM_OF_ARP_SPA[]->NXM_OF_ARP_TPA[],load:0x0a58c6124002->NXM_NX_ARP_SHA[],load:0xc6124002->NXM_OF_ARP_SPA[],in_port',
  );
  t.deepEqual(
    arp.match.map((m) => m.field),
    ['eth_type', 'arp_op', 'arp_tpa', 'reg6', 'reg7'],
  );
  t.deepEqual(
    arp.actions.map((a) => a.type),
    ['move', 'load', 'load', 'move', 'move', 'load', 'load', 'in_port'],
  );
  t.deepEqual(parseFlow('cookie=0x67726d,table=0,priority=0,actions=drop').actions, []);
  t.deepEqual(parseFlow('table=20,priority=100,reg6=1,dl_dst=0a:58:c6:12:40:02').actions, [], 'a delete_strict key');
});

test('parseFlow refuses what it does not know, and bad values, in one line', (t) => {
  for (const [line, re] of [
    ['table=0,priority=1,tcp,actions=drop', /match "tcp"/],
    ['table=0,priority=1,actions=normal', /action "normal"/],
    ['table=0,priority=1,nw_src=1.2.3.4,actions=drop', /without ip\/arp/],
    ['table=0,priority=1,dl_src=zz,actions=drop', /not a MAC/],
    ['table=0,priority=1,ip,nw_src=1.2.3.400,actions=drop', /not an IPv4/],
    ['table=255,priority=1,actions=drop', /table: 255 is too large/],
    ['table=0,priority=70000,actions=drop', /priority/],
    ['table=0,priority=1,arp_tpa=1.2.3.4,actions=drop', /without ip\/arp/],
    ['table=0,priority=1,actions=move:NXM_OF_ETH_SRC[]->NXM_OF_ARP_SPA[]', /different widths/],
    ['table=0,priority=1,actions=load:0x1ffff->NXM_OF_ARP_OP[]', /too large/],
  ] as const)
    t.throws(() => parseFlow(line), { message: re }, line);
});

test('flow mods are 8-byte aligned, carry the xid, and a delete has no instructions', (t) => {
  const f = parseFlow('cookie=0x67726d,table=0,priority=100,in_port=7,actions=load:1->NXM_NX_REG6[],resubmit(,10)');
  const add = encodeFlowMod(f, 'add', 42);
  t.is(add.readUInt8(0), 5, 'OpenFlow 1.4');
  t.is(add.readUInt8(1), OFPT.FLOW_MOD);
  t.is(add.readUInt16BE(2), add.length);
  t.is(add.readUInt32BE(4), 42);
  t.is(add.length % 8, 0);
  // header 8 + fixed 40 + match (4 + in_port 8 = 12 -> 16) + instruction 8 + reg_load 24 + resubmit 16
  t.is(add.length, 8 + 40 + 16 + 8 + 24 + 16);
  const del = encodeFlowMod(f, 'delete_strict', 43);
  t.is(del.length, 8 + 40 + 16);
  t.is(del.readUInt8(8 + 17), 4, 'OFPFC_DELETE_STRICT');
  const inner = bundleAdd(9, add);
  t.is(inner.readUInt32BE(4), 42, 'a bundled message keeps its xid');
  t.is(inner.readUInt32BE(8), 9);
  t.is(bundleControl(9, 4, 7).length, 16);
});

test('splitMessages: whole messages out of a stream, the rest waits', (t) => {
  const a = encodeFlowMod(parseFlow('table=0,priority=0,actions=drop'), 'add', 1);
  const b = bundleControl(1, 0, 2);
  const joined = Buffer.concat([a, b]);
  const r = splitMessages(joined.subarray(0, a.length + 5));
  t.is(r.messages.length, 1);
  t.is(r.rest.length, 5);
  const r2 = splitMessages(Buffer.concat([r.rest, joined.subarray(a.length + 5)]));
  t.deepEqual(
    r2.messages.map((m) => [m.type, m.xid]),
    [[OFPT.BUNDLE_CONTROL, 2]],
  );
});
