// Pure: OpenFlow 1.4 messages for the flows the agent writes. A flow is a typed value
// (agent/ovs/flows/flow.ts: table by name, match fields, these actions); this module
// encodes it as ovs-ofctl would:
//   match:   in_port, dl_src, dl_dst[/mask], ip, arp, nw_src, nw_proto, tp_dst[/mask]
//            (tcp or udp), arp_op, arp_spa, arp_tpa, arp_sha, reg2, reg3, reg6, reg7,
//            tun_id, ct_state
//   actions: load:N->FIELD[] and move:FIELD[]->FIELD[] of the NXM fields below,
//            resubmit(,T), output:N, in_port, set_field:N->tun_id,
//            ct(commit,zone=N,table=T) (NXAST_CT, zone immediate), drop (no actions)
// A value it cannot encode (a port still by name, a bad MAC) is an error, never silently
// dropped (the e2e test installs the same flows both ways and compares dump-flows).
import type { CtFlag, Flow, Match } from '../flows/flow.js';
import { TABLES } from '../flows/pipeline.js';
import { ip6Bytes, parseIp6 } from '../../../common/ipv6.js';

export const OFP_VERSION = 0x05; // OpenFlow 1.4
export const OFPT = {
  HELLO: 0,
  ERROR: 1,
  ECHO_REQUEST: 2,
  ECHO_REPLY: 3,
  FLOW_MOD: 14,
  BARRIER_REQUEST: 20,
  BARRIER_REPLY: 21,
  BUNDLE_CONTROL: 33,
  BUNDLE_ADD_MESSAGE: 34,
} as const;
export const OFPBCT = {
  OPEN_REQUEST: 0,
  OPEN_REPLY: 1,
  COMMIT_REQUEST: 4,
  COMMIT_REPLY: 5,
  DISCARD_REQUEST: 6,
} as const;
const OFPBF_ATOMIC = 1;
const OFPBF_ORDERED = 2;
const OFPFC_ADD = 0;
const OFPFC_DELETE_STRICT = 4;
const OFPP_ANY = 0xffffffff;
const OFPG_ANY = 0xffffffff;
const OFP_NO_BUFFER = 0xffffffff;
const OFPP10_IN_PORT = 0xfff8; // Nicira actions carry OpenFlow 1.0 port numbers
const NX_VENDOR_ID = 0x00002320;
const NXAST_RESUBMIT_TABLE = 14;
const NXAST_REG_LOAD = 7;
const NXAST_REG_MOVE = 6;
const NXAST_CT = 35; // struct nx_action_conntrack
const NX_CT_F_COMMIT = 1;
const NX_CT_RECIRC_NONE = 0xff; // OFPTT_ALL: no recirculation
const OFPP_IN_PORT = 0xfffffff8;
const OFPAT_OUTPUT = 0;
const OFPAT_SET_FIELD = 25;
const OFPIT_APPLY_ACTIONS = 4;

/** an OXM/NXM field: class, field number, value bytes */
interface OxmField {
  cls: number;
  field: number;
  bytes: number;
}
const OXM = {
  in_port: { cls: 0x8000, field: 0, bytes: 4 },
  eth_dst: { cls: 0x8000, field: 3, bytes: 6 },
  eth_src: { cls: 0x8000, field: 4, bytes: 6 },
  eth_type: { cls: 0x8000, field: 5, bytes: 2 },
  ip_proto: { cls: 0x8000, field: 10, bytes: 1 },
  ipv4_src: { cls: 0x8000, field: 11, bytes: 4 },
  tcp_dst: { cls: 0x8000, field: 14, bytes: 2 },
  udp_dst: { cls: 0x8000, field: 16, bytes: 2 },
  arp_op: { cls: 0x8000, field: 21, bytes: 2 },
  arp_spa: { cls: 0x8000, field: 22, bytes: 4 },
  arp_tpa: { cls: 0x8000, field: 23, bytes: 4 },
  arp_sha: { cls: 0x8000, field: 24, bytes: 6 },
  ipv6_src: { cls: 0x8000, field: 26, bytes: 16 },
  icmpv6_type: { cls: 0x8000, field: 29, bytes: 1 },
  ipv6_nd_target: { cls: 0x8000, field: 31, bytes: 16 },
  ipv6_nd_sll: { cls: 0x8000, field: 32, bytes: 6 },
  ipv6_nd_tll: { cls: 0x8000, field: 33, bytes: 6 },
  tunnel_id: { cls: 0x8000, field: 38, bytes: 8 },
  /** ERICOXM_OF_ (class 0x1000): the ND header's reserved word (R/S/O flags) and its first option's type */
  nd_reserved: { cls: 0x1000, field: 1, bytes: 4 },
  nd_options_type: { cls: 0x1000, field: 2, bytes: 1 },
  reg2: { cls: 0x0001, field: 2, bytes: 4 },
  reg3: { cls: 0x0001, field: 3, bytes: 4 },
  reg6: { cls: 0x0001, field: 6, bytes: 4 },
  reg7: { cls: 0x0001, field: 7, bytes: 4 },
  ct_state: { cls: 0x0001, field: 105, bytes: 4 },
} satisfies Record<string, OxmField>;
type FieldName = keyof typeof OXM;

/** ct_state bits (OVS lib/packets.h CS_*) */
export const CT_STATE_BITS: Record<CtFlag, number> = {
  new: 0x01,
  est: 0x02,
  rel: 0x04,
  rpl: 0x08,
  inv: 0x10,
  trk: 0x20,
};

/** NXM fields by the names load/move use (class 0: NXM_OF, 1: NXM_NX) */
export const NXM = {
  NXM_OF_ETH_DST: { cls: 0x0000, field: 1, bytes: 6 },
  NXM_OF_ETH_SRC: { cls: 0x0000, field: 2, bytes: 6 },
  NXM_OF_ARP_OP: { cls: 0x0000, field: 15, bytes: 2 },
  NXM_OF_ARP_SPA: { cls: 0x0000, field: 16, bytes: 4 },
  NXM_OF_ARP_TPA: { cls: 0x0000, field: 17, bytes: 4 },
  NXM_NX_REG2: OXM.reg2,
  NXM_NX_REG3: OXM.reg3,
  NXM_NX_REG6: OXM.reg6,
  NXM_NX_REG7: OXM.reg7,
  NXM_NX_ARP_SHA: { cls: 0x0001, field: 17, bytes: 6 },
  NXM_NX_ARP_THA: { cls: 0x0001, field: 18, bytes: 6 },
  NXM_NX_IPV6_SRC: { cls: 0x0001, field: 19, bytes: 16 },
  NXM_NX_IPV6_DST: { cls: 0x0001, field: 20, bytes: 16 },
} satisfies Record<string, OxmField>;
export type NxmName = keyof typeof NXM;
const nxmHeader = (f: OxmField) => ((f.cls << 16) | (f.field << 9) | f.bytes) >>> 0;

/** the fields set_field writes */
export type SetFieldName = 'tunnel_id' | 'ipv6_src' | 'icmpv6_type' | 'nd_reserved' | 'nd_options_type' | 'ipv6_nd_tll';

/** an OpenFlow port number, or a port's name before it is resolved (not encodable) */
export type PortRef = number | string;

export type Action =
  | { type: 'output'; port: PortRef }
  /** `in_port`: back out of the port it came in on */
  | { type: 'in_port' }
  | { type: 'resubmit'; table: number }
  /** `load:N->FIELD[]`: NXAST_REG_LOAD of a whole field, as ovs-ofctl sends it (it reads back as load) */
  | { type: 'load'; field: NxmName; value: bigint }
  /** `move:A[]->B[]`: NXAST_REG_MOVE of a whole field */
  | { type: 'move'; src: NxmName; dst: NxmName }
  /** `set_field:N->tun_id` (and the ND responder's IPv6/ICMPv6/ND fields): OFPAT_SET_FIELD */
  | { type: 'set'; field: SetFieldName; value: bigint }
  /** `ct(commit,zone=N,table=T)`: NXAST_CT with an immediate zone; no table: the packet goes on with the next action */
  | { type: 'ct'; commit: boolean; zone: number; table?: number };

/** a flow as it goes on the wire: table number, OXM fields in encoding order */
export interface ParsedFlow {
  cookie: bigint;
  table: number;
  priority: number;
  /** in the order they are encoded (prerequisites first) */
  match: { field: FieldName; value: Buffer; mask?: Buffer }[];
  actions: Action[];
}
export type WireFlow = ParsedFlow;

export const num = (s: string, what: string, max: bigint): bigint => {
  if (!/^(0x[0-9a-f]+|\d+)$/i.test(s)) throw new Error(`${what}: "${s}" is not a number`);
  const v = BigInt(s);
  if (v > max) throw new Error(`${what}: ${s} is too large`);
  return v;
};
const uint = (v: bigint | number, bytes: number): Buffer => {
  let x = BigInt(v);
  const b = Buffer.alloc(bytes);
  for (let i = bytes - 1; i >= 0; i--) {
    b[i] = Number(x & 0xffn);
    x >>= 8n;
  }
  return b;
};
const mac = (s: string, what: string): Buffer => {
  if (!/^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/i.test(s)) throw new Error(`${what}: "${s}" is not a MAC address`);
  return Buffer.from(s.replace(/:/g, ''), 'hex');
};
const ipv4 = (s: string, what: string): Buffer => {
  const p = s.split('.');
  if (p.length !== 4 || p.some((x) => !/^\d{1,3}$/.test(x) || Number(x) > 255))
    throw new Error(`${what}: "${s}" is not an IPv4 address`);
  return Buffer.from(p.map(Number));
};
const ipv6 = (s: string, what: string): Buffer => {
  if (parseIp6(s) === undefined) throw new Error(`${what}: "${s}" is not an IPv6 address`);
  return ip6Bytes(s);
};
const bad = (what: string): never => {
  throw new Error(`${what} is not one the pipeline uses`);
};
const ETH_TYPES: Record<string, number> = { ip: 0x0800, arp: 0x0806, ip6: 0x86dd };
const portNumber = (p: PortRef, what: string): number => {
  if (typeof p !== 'number') throw new Error(`${what}: port "${p}" is not resolved to an OpenFlow number`);
  if (!Number.isInteger(p) || p < 0 || p > 0xffffff00) throw new Error(`${what}: ${p} is not a port number`);
  return p;
};
const bounded = (v: number, what: string, max: number): number => {
  if (!Number.isInteger(v) || v < 0 || v > max) throw new Error(`${what}: ${v} is out of range`);
  return v;
};

/** OVS encodes in its own field order (prerequisites first); keep one fixed order */
const ORDER: FieldName[] = [
  'in_port',
  'eth_dst',
  'eth_src',
  'eth_type',
  'ipv4_src',
  'ipv6_src',
  'ip_proto',
  'tcp_dst',
  'udp_dst',
  'icmpv6_type',
  'ipv6_nd_target',
  'ipv6_nd_sll',
  'ipv6_nd_tll',
  'arp_op',
  'arp_spa',
  'arp_tpa',
  'arp_sha',
  'tunnel_id',
  'reg2',
  'reg3',
  'reg6',
  'reg7',
  'ct_state',
];

/** Pure: a typed match as OXM fields in encoding order; a value that is not one refuses the flow */
export function wireMatch(x: Match): ParsedFlow['match'] {
  const m = new Map<FieldName, { value: Buffer; mask?: Buffer }>();
  if (x.inPort !== undefined) m.set('in_port', { value: uint(portNumber(x.inPort, 'in_port'), 4) });
  if (x.dlSrc !== undefined) m.set('eth_src', { value: mac(x.dlSrc, 'dl_src') });
  if (x.dlDst !== undefined)
    m.set('eth_dst', {
      value: mac(x.dlDst, 'dl_dst'),
      mask: x.dlDstMask === undefined ? undefined : mac(x.dlDstMask, 'dl_dst mask'),
    });
  if (x.ethType !== undefined)
    m.set('eth_type', { value: uint(ETH_TYPES[x.ethType] ?? bad(`eth_type "${String(x.ethType)}"`), 2) });
  if (x.ipv6Src !== undefined) m.set('ipv6_src', { value: ipv6(x.ipv6Src, 'ipv6_src') });
  if (x.icmp6Type !== undefined) {
    if (x.ethType !== 'ip6' || x.ipProto !== 58) throw new Error('icmpv6_type without icmp6 (ipv6, nw_proto 58)');
    m.set('icmpv6_type', { value: uint(bounded(x.icmp6Type, 'icmpv6_type', 0xff), 1) });
  }
  const nd = (k: 'ndTarget' | 'ndSll' | 'ndTll', types: number[]) => {
    if (x[k] !== undefined && !types.includes(x.icmp6Type ?? -1))
      throw new Error(`${k} without icmpv6_type ${types.join(' or ')}`);
  };
  nd('ndTarget', [135, 136]);
  nd('ndSll', [135]);
  nd('ndTll', [136]);
  if (x.ndTarget !== undefined) m.set('ipv6_nd_target', { value: ipv6(x.ndTarget, 'nd_target') });
  if (x.ndSll !== undefined) m.set('ipv6_nd_sll', { value: mac(x.ndSll, 'nd_sll') });
  if (x.ndTll !== undefined) m.set('ipv6_nd_tll', { value: mac(x.ndTll, 'nd_tll') });
  if (x.nwSrc !== undefined) m.set('ipv4_src', { value: ipv4(x.nwSrc, 'nw_src') });
  if (x.ipProto !== undefined) m.set('ip_proto', { value: uint(bounded(x.ipProto, 'nw_proto', 0xff), 1) });
  if (x.tpDstMask !== undefined && x.tpDst === undefined) throw new Error('a tp_dst mask without tp_dst');
  if (x.tpDst !== undefined) {
    if (x.ipProto !== 6 && x.ipProto !== 17) throw new Error('tp_dst without nw_proto 6 (tcp) or 17 (udp)');
    const v = bounded(x.tpDst, 'tp_dst', 0xffff);
    const mask = x.tpDstMask === undefined ? undefined : bounded(x.tpDstMask, 'tp_dst mask', 0xffff);
    // OVS refuses a value with bits outside its mask (bad wildcards); ovs-ofctl would clear them
    if (mask !== undefined && (v & ~mask) !== 0)
      throw new Error(`tp_dst ${v}: bits outside the mask 0x${mask.toString(16)}`);
    m.set(x.ipProto === 6 ? 'tcp_dst' : 'udp_dst', {
      value: uint(v, 2),
      mask: mask === undefined ? undefined : uint(mask, 2),
    });
  }
  if (x.ctState !== undefined) {
    const bits = (fs: readonly CtFlag[] = []) =>
      fs.reduce((a, f) => {
        if (!Object.hasOwn(CT_STATE_BITS, f)) throw new Error(`ct_state: "${f}" is not a conntrack flag`);
        return a | CT_STATE_BITS[f];
      }, 0);
    const [on, off] = [bits(x.ctState.on), bits(x.ctState.off)];
    if (!(on | off)) throw new Error('ct_state without flags');
    if (on & off) throw new Error('ct_state: a flag both set and clear');
    // always masked: the flags named, the others wildcarded
    m.set('ct_state', { value: uint(on, 4), mask: uint(on | off, 4) });
  }
  if (x.arpOp !== undefined) m.set('arp_op', { value: uint(bounded(x.arpOp, 'arp_op', 0xffff), 2) });
  if (x.arpSpa !== undefined) m.set('arp_spa', { value: ipv4(x.arpSpa, 'arp_spa') });
  if (x.arpTpa !== undefined) m.set('arp_tpa', { value: ipv4(x.arpTpa, 'arp_tpa') });
  if (x.arpSha !== undefined) m.set('arp_sha', { value: mac(x.arpSha, 'arp_sha') });
  if (x.tunId !== undefined) m.set('tunnel_id', { value: uint(x.tunId, 8) });
  if (x.reg2 !== undefined) m.set('reg2', { value: uint(bounded(x.reg2, 'reg2', 0xffffffff), 4) });
  if (x.reg3 !== undefined) m.set('reg3', { value: uint(bounded(x.reg3, 'reg3', 0xffffffff), 4) });
  if (x.reg6 !== undefined) m.set('reg6', { value: uint(bounded(x.reg6, 'reg6', 0xffffffff), 4) });
  if (x.reg7 !== undefined) m.set('reg7', { value: uint(bounded(x.reg7, 'reg7', 0xffffffff), 4) });
  if (
    (m.has('ipv4_src') && x.ethType !== 'ip') ||
    (m.has('ipv6_src') && x.ethType !== 'ip6') ||
    (m.has('ip_proto') && x.ethType !== 'ip' && x.ethType !== 'ip6') ||
    (['arp_op', 'arp_spa', 'arp_tpa', 'arp_sha'] as const).some((k) => m.has(k) && x.ethType !== 'arp')
  )
    throw new Error('an IPv4/ARP field without ip/arp');
  const out: ParsedFlow['match'] = [];
  for (const k of ORDER) {
    const v = m.get(k);
    if (v) out.push({ field: k, ...v });
  }
  return out;
}

/**
 * Pure: actions the switch would refuse for this match, refused here (OVS check_CT:
 * OFPBAC_MATCH_INCONSISTENT): ct needs an IP match, and an invalid packet cannot be committed.
 */
export function checkActions(x: Match, actions: Action[]): void {
  for (const a of actions) {
    if (a.type !== 'ct') continue;
    if (x.ethType !== 'ip') throw new Error('a ct action without ip in the match');
    if (a.commit && x.ctState?.on.includes('inv')) throw new Error('ct(commit) of a ct_state=+inv packet');
  }
}

/** Pure: a typed flow as it goes on the wire (table by number, ports by number) */
export function wireFlow(f: Flow): ParsedFlow {
  const match = wireMatch(f.match);
  checkActions(f.match, f.actions);
  return {
    cookie: f.cookie,
    table: TABLES[f.table],
    priority: bounded(f.priority, 'priority', 65535),
    match,
    actions: f.actions,
  };
}

const pad8 = (n: number) => (n + 7) & ~7;

function oxm(f: OxmField, value: Buffer, mask?: Buffer): Buffer {
  const h = Buffer.alloc(4);
  h.writeUInt16BE(f.cls, 0);
  h.writeUInt8((f.field << 1) | (mask ? 1 : 0), 2);
  h.writeUInt8(f.bytes * (mask ? 2 : 1), 3);
  return Buffer.concat([h, value, ...(mask ? [mask] : [])]);
}

function encodeMatch(f: ParsedFlow): Buffer {
  const fields = Buffer.concat(f.match.map((x) => oxm(OXM[x.field], x.value, x.mask)));
  const len = 4 + fields.length;
  const b = Buffer.alloc(pad8(len));
  b.writeUInt16BE(1, 0); // OFPMT_OXM
  b.writeUInt16BE(len, 2);
  fields.copy(b, 4);
  return b;
}

/** a Nicira extension action of `len` bytes with its header written (vendor, subtype) */
function nxAction(subtype: number, len: number): Buffer {
  const b = Buffer.alloc(len);
  b.writeUInt16BE(0xffff, 0);
  b.writeUInt16BE(len, 2);
  b.writeUInt32BE(NX_VENDOR_ID, 4);
  b.writeUInt16BE(subtype, 8);
  return b;
}

function encodeAction(a: Action): Buffer {
  if (a.type === 'output' || a.type === 'in_port') {
    const b = Buffer.alloc(16);
    b.writeUInt16BE(OFPAT_OUTPUT, 0);
    b.writeUInt16BE(16, 2);
    b.writeUInt32BE(a.type === 'in_port' ? OFPP_IN_PORT : portNumber(a.port, 'output'), 4);
    return b;
  }
  if (a.type === 'move') {
    const [src, dst] = [NXM[a.src], NXM[a.dst]];
    if (src.bytes !== dst.bytes) throw new Error(`flow action move:${a.src}[]->${a.dst}[]: fields of different widths`);
    const b = nxAction(NXAST_REG_MOVE, 24);
    b.writeUInt16BE(src.bytes * 8, 10); // n_bits; src_ofs = dst_ofs = 0
    b.writeUInt32BE(nxmHeader(src), 16);
    b.writeUInt32BE(nxmHeader(dst), 20);
    return b;
  }
  if (a.type === 'resubmit') {
    bounded(a.table, 'resubmit', 254);
    const b = nxAction(NXAST_RESUBMIT_TABLE, 16);
    b.writeUInt16BE(OFPP10_IN_PORT, 10);
    b.writeUInt8(a.table, 12);
    return b;
  }
  if (a.type === 'ct') {
    const b = nxAction(NXAST_CT, 24);
    b.writeUInt16BE(a.commit ? NX_CT_F_COMMIT : 0, 10);
    b.writeUInt32BE(0, 12); // zone_src 0: the zone is immediate
    b.writeUInt16BE(bounded(a.zone, 'ct zone', 0xffff), 16);
    b.writeUInt8(a.table === undefined ? NX_CT_RECIRC_NONE : bounded(a.table, 'ct table', 254), 18);
    return b; // pad[3], alg 0 (no ALG), no nested actions: len stays 24
  }
  if (a.type === 'load') {
    const field = NXM[a.field];
    if (a.value < 0n || a.value >= 1n << BigInt(8 * field.bytes))
      throw new Error(`load to ${a.field}: ${a.value} is too large`);
    const b = nxAction(NXAST_REG_LOAD, 24);
    b.writeUInt16BE(field.bytes * 8 - 1, 10); // ofs 0, n_bits = the whole field
    b.writeUInt32BE(nxmHeader(field), 12);
    b.writeBigUInt64BE(a.value, 16);
    return b;
  }
  const f = OXM[a.field];
  const field = oxm(f, uint(a.value, f.bytes));
  const len = pad8(4 + field.length);
  const b = Buffer.alloc(len);
  b.writeUInt16BE(OFPAT_SET_FIELD, 0);
  b.writeUInt16BE(len, 2);
  field.copy(b, 4);
  return b;
}

/** Pure: a whole OpenFlow message */
export function ofMessage(type: number, xid: number, body: Buffer = Buffer.alloc(0)): Buffer {
  const h = Buffer.alloc(8);
  h.writeUInt8(OFP_VERSION, 0);
  h.writeUInt8(type, 1);
  h.writeUInt16BE(8 + body.length, 2);
  h.writeUInt32BE(xid, 4);
  return Buffer.concat([h, body]);
}

/** Pure: OFPT_FLOW_MOD adding `flow`, or deleting (strict: table, priority, match) the flow with that key */
export function flowMod(flow: Flow, command: 'add' | 'delete_strict', xid: number): Buffer {
  return encodeFlowMod(wireFlow(flow), command, xid);
}

/** Pure: OFPT_FLOW_MOD of a flow in its wire form */
export function encodeFlowMod(flow: ParsedFlow, command: 'add' | 'delete_strict', xid: number): Buffer {
  const fixed = Buffer.alloc(40);
  fixed.writeBigUInt64BE(command === 'add' ? flow.cookie : 0n, 0);
  fixed.writeBigUInt64BE(0n, 8); // cookie_mask
  fixed.writeUInt8(flow.table, 16);
  fixed.writeUInt8(command === 'add' ? OFPFC_ADD : OFPFC_DELETE_STRICT, 17);
  fixed.writeUInt16BE(flow.priority, 22);
  fixed.writeUInt32BE(OFP_NO_BUFFER, 24);
  fixed.writeUInt32BE(OFPP_ANY, 28);
  fixed.writeUInt32BE(OFPG_ANY, 32);
  const parts = [fixed, encodeMatch(flow)];
  if (command === 'add' && flow.actions.length) {
    const acts = Buffer.concat(flow.actions.map(encodeAction));
    const ins = Buffer.alloc(8);
    ins.writeUInt16BE(OFPIT_APPLY_ACTIONS, 0);
    ins.writeUInt16BE(8 + acts.length, 2);
    parts.push(ins, acts);
  }
  return ofMessage(OFPT.FLOW_MOD, xid, Buffer.concat(parts));
}

/** Pure: OFPT_BUNDLE_CONTROL (atomic, ordered) */
export function bundleControl(bundleId: number, type: number, xid: number): Buffer {
  const b = Buffer.alloc(8);
  b.writeUInt32BE(bundleId, 0);
  b.writeUInt16BE(type, 4);
  b.writeUInt16BE(OFPBF_ATOMIC | OFPBF_ORDERED, 6);
  return ofMessage(OFPT.BUNDLE_CONTROL, xid, b);
}

/** Pure: OFPT_BUNDLE_ADD_MESSAGE carrying `inner` (whose xid must be the same) */
export function bundleAdd(bundleId: number, inner: Buffer): Buffer {
  const b = Buffer.alloc(8);
  b.writeUInt32BE(bundleId, 0);
  b.writeUInt16BE(OFPBF_ATOMIC | OFPBF_ORDERED, 6);
  return ofMessage(OFPT.BUNDLE_ADD_MESSAGE, inner.readUInt32BE(4), Buffer.concat([b, inner]));
}

/** Pure: whole messages out of a byte stream; the rest waits for more bytes. */
export function splitMessages(buf: Buffer): { messages: { type: number; xid: number; msg: Buffer }[]; rest: Buffer } {
  const messages: { type: number; xid: number; msg: Buffer }[] = [];
  let off = 0;
  while (buf.length - off >= 8) {
    const len = buf.readUInt16BE(off + 2);
    if (len < 8 || buf.length - off < len) break;
    const msg = buf.subarray(off, off + len);
    messages.push({ type: msg.readUInt8(1), xid: msg.readUInt32BE(4), msg });
    off += len;
  }
  return { messages, rest: buf.subarray(off) };
}

/** Pure: an OFPT_ERROR in words (type/code numbers as OVS prints them) */
export function describeError(msg: Buffer): string {
  const type = msg.length >= 12 ? msg.readUInt16BE(8) : -1;
  const code = msg.length >= 12 ? msg.readUInt16BE(10) : -1;
  const names: Record<number, string> = {
    1: 'bad request',
    2: 'bad action',
    3: 'bad instruction',
    4: 'bad match',
    5: 'flow mod failed',
    17: 'bundle failed',
  };
  return `OpenFlow error ${names[type] ?? `type ${type}`} (code ${code})`;
}
