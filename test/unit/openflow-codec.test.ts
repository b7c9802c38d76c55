import test from 'ava';
import { act, flow, type CtFlag } from '../../agent/ovs/flows/flow.js';
import {
  bundleAdd,
  bundleControl,
  encodeFlowMod,
  flowMod,
  splitMessages,
  OFPT,
} from '../../agent/ovs/openflow/codec.js';
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
    ['table=0,priority=1,sctp,actions=drop', /match "sctp"/],
    ['table=0,priority=1,actions=normal', /action "normal"/],
    ['table=0,priority=1,nw_src=1.2.3.4,actions=drop', /without ip\/arp/],
    ['table=0,priority=1,dl_src=zz,actions=drop', /not a MAC/],
    ['table=0,priority=1,ip,nw_src=1.2.3.400,actions=drop', /not an IPv4/],
    ['table=255,priority=1,actions=drop', /table: 255 is too large/],
    ['table=0,priority=70000,actions=drop', /priority/],
    ['table=0,priority=1,arp_tpa=1.2.3.4,actions=drop', /without ip\/arp/],
    ['table=0,priority=1,actions=move:NXM_OF_ETH_SRC[]->NXM_OF_ARP_SPA[]', /different widths/],
    ['table=0,priority=1,actions=load:0x1ffff->NXM_OF_ARP_OP[]', /too large/],
    ['table=0,priority=1,nw_proto=6,actions=drop', /without ip\/arp/],
    ['table=0,priority=1,ip,tp_dst=80,actions=drop', /tp_dst without nw_proto/],
    ['table=0,priority=1,ip,nw_proto=1,tp_dst=80,actions=drop', /tp_dst without nw_proto/],
    ['table=0,priority=1,tcp,tp_dst=0x51/0xfff0,actions=drop', /outside the mask/],
    ['table=0,priority=1,tcp,tp_dst=70000,actions=drop', /too large/],
    ['table=0,priority=1,ip,nw_proto=256,actions=drop', /too large/],
    ['table=0,priority=1,reg2=0x100000000,actions=drop', /too large/],
    ['table=0,priority=1,ct_state=+trk+snat,actions=drop', /flag "snat"/],
    ['table=0,priority=1,ct_state=0x22/0x22,actions=drop', /match "ct_state=0x22\/0x22"/],
    ['table=0,priority=1,ct_state=+trk-trk,actions=drop', /both set and clear/],
    ['table=0,priority=1,actions=ct(zone=5)', /ct action without ip/],
    ['table=0,priority=1,ip,ct_state=+trk+inv,actions=ct(commit,zone=5)', /\+inv/],
    ['table=0,priority=1,ip,actions=ct(zone=65536)', /ct zone: 65536 is too large/],
    ['table=0,priority=1,ip,actions=ct(zone=5,table=255)', /ct table: 255 is too large/],
    ['table=0,priority=1,ip,actions=ct(commit,zone=5,alg=ftp)', /action "ct\(commit,zone=5,alg=ftp\)"/],
    ['table=0,priority=1,ip,actions=ct(zone=5,zone=6)', /action "ct\(zone=5,zone=6\)"/],
  ] as const)
    t.throws(() => parseFlow(line), { message: re }, line);
});

/** header 8 + fixed 40: where the match starts */
const MATCH_AT = 48;
const hex = (b: Buffer) => b.toString('hex');

test('NXAST_CT is struct nx_action_conntrack: 24 bytes, flags, immediate zone, recirc table or none, no ALG', (t) => {
  // match: OFPMT_OXM + eth_type (4 + 6 = 10 -> 16), the instruction's 8 bytes, then the action
  const at = MATCH_AT + 16 + 8;
  const ct = (c: Parameters<typeof act.ct>[0]) => {
    const m = flowMod(flow('policy', 100, { ethType: 'ip' }, [act.ct(c)]), 'add', 1);
    t.is(m.length, at + 24);
    return hex(m.subarray(at));
  };
  // vendor action, len 24, NX_VENDOR_ID, subtype 35 | flags | zone_src 0 (immediate) | zone_imm | recirc_table | pad[3] | alg 0
  t.is(ct({ commit: true, zone: 5 }), 'ffff0018000023200023' + '0001' + '00000000' + '0005' + 'ff' + '000000' + '0000');
  t.is(ct({ commit: false, zone: 5, table: 'policyRules' }), 'ffff0018000023200023' + '0000000000000005280000000000');
  t.is(ct({ commit: true, zone: 0xffff, table: 'deliver' }), 'ffff0018000023200023' + '000100000000ffff320000000000');
  t.is(
    ct({ commit: false, zone: 0 }),
    'ffff0018000023200023' + '0000' + '00000000' + '0000' + 'ff' + '000000' + '0000',
  );
  t.deepEqual(parseFlow('table=30,priority=100,ip,actions=ct(zone=5,table=40)').actions, [
    { type: 'ct', commit: false, zone: 5, table: 40 },
  ]);
  t.deepEqual(parseFlow('table=40,priority=1,ip,actions=ct(commit,zone=5),resubmit(,50)').actions, [
    { type: 'ct', commit: true, zone: 5 },
    { type: 'resubmit', table: 50 },
  ]);
  t.deepEqual(
    parseFlow('table=40,priority=1,ip,actions=ct(commit,table=50,zone=7)').actions,
    [{ type: 'ct', commit: true, zone: 7, table: 50 }],
    "OVS's own order (table before zone) reads the same",
  );
  t.deepEqual(
    parseFlow('table=40,priority=1,ip,actions=ct(commit)').actions,
    [{ type: 'ct', commit: true, zone: 0 }],
    'OVS leaves zone 0 out',
  );
});

test('ct_state is NXM_NX_CT_STATE (0x0001, 105), 4 bytes, always masked: value the set flags, mask set and clear', (t) => {
  const m = (on: CtFlag[], off?: CtFlag[]) => {
    const f = flowMod(flow('policyRules', 1, { ctState: off ? { on, off } : { on } }), 'delete_strict', 1);
    return hex(f.subarray(MATCH_AT));
  };
  // OFPMT_OXM, len 4 + 4 + 8 = 16 | class 0x0001, field 105 << 1 | hasmask = 0xd3, length 8 | value | mask
  t.is(m(['trk', 'est']), '00010010' + '0001d308' + '00000022' + '00000022');
  t.is(m(['est', 'trk']), m(['trk', 'est']), 'flag order does not matter');
  t.is(m(['trk', 'new'], ['est']), '00010010' + '0001d308' + '00000021' + '00000023');
  t.is(m(['trk', 'inv']), '00010010' + '0001d308' + '00000030' + '00000030');
  t.is(m(['trk', 'rel', 'rpl'], ['new']), '00010010' + '0001d308' + '0000002c' + '0000002d');
  t.deepEqual(
    parseFlow('table=40,priority=1,ct_state=+trk+new-est').match,
    parseFlow('table=40,priority=1,ct_state=-est+new+trk').match,
  );
  t.throws(() => flowMod(flow('policyRules', 1, { ctState: { on: [] } }), 'add', 1), { message: /without flags/ });
});

test('nw_proto, tcp_dst/udp_dst (masked or not), reg2/reg3: their OXM/NXM entries, prerequisites first', (t) => {
  const match = (line: string) => {
    const f = parseFlow(line);
    const b = encodeFlowMod(f, 'delete_strict', 1).subarray(MATCH_AT);
    return { fields: f.match.map((x) => x.field), oxm: hex(b.subarray(4, b.readUInt16BE(2))) };
  };
  const tcp = match('table=40,priority=1,reg3=17,reg2=16,ip,nw_proto=6,tp_dst=0x50/0xfff0,ct_state=+trk+new');
  t.deepEqual(tcp.fields, ['eth_type', 'ip_proto', 'tcp_dst', 'reg2', 'reg3', 'ct_state']);
  t.is(
    tcp.oxm,
    // eth_type 0x0800 | ip_proto (10 << 1 = 0x14) 6 | tcp_dst (14 << 1 | 1 = 0x1d) 0x0050/0xfff0 | reg2 (2 << 1) 16 | reg3 (3 << 1) 17 | ct_state
    '80000a020800' +
      '8000140106' +
      '80001d040050fff0' +
      '0001040400000010' +
      '0001060400000011' +
      '0001d3080000002100000021',
  );
  const udp = match('table=40,priority=1,ip,nw_proto=17,tp_dst=53');
  t.is(udp.oxm, '80000a020800' + '8000140111' + '800020020035', 'udp_dst (16 << 1 = 0x20), exact');
  t.is(match('table=40,priority=1,udp,tp_dst=53').oxm, udp.oxm, 'udp is ip,nw_proto=17');
  t.is(match('table=40,priority=1,icmp').oxm, match('table=40,priority=1,ip,nw_proto=1').oxm, 'icmp is ip,nw_proto=1');
  t.is(
    match('table=40,priority=1,tcp,tp_dst=80').oxm,
    '80000a020800' + '8000140106' + '80001c020050',
    'tcp_dst exact (14 << 1)',
  );
  t.deepEqual(
    match('table=40,priority=1,ip,nw_src=198.18.64.2,nw_proto=1').fields,
    ['eth_type', 'ipv4_src', 'ip_proto'],
    'as OVS puts them: nw_src, then nw_proto',
  );
  // load:N->NXM_NX_REG2[]: NXAST_REG_LOAD (7), ofs_nbits 31, header 1 << 16 | 2 << 9 | 4, the value in 8 bytes
  const load = flowMod(flow('policy', 1, {}, [act.load('NXM_NX_REG2', 16), act.load('NXM_NX_REG3', 3)]), 'add', 1);
  t.is(
    hex(load.subarray(MATCH_AT + 8 + 8)),
    'ffff001800002320' +
      '0007001f' +
      '00010404' +
      '0000000000000010' +
      'ffff001800002320' +
      '0007001f' +
      '00010604' +
      '0000000000000003',
  );
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
