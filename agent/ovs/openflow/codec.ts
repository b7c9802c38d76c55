// Pure: OpenFlow 1.4 messages for the flows the agent writes. The flows stay text (the
// same lines ovs-ofctl takes, computeFlows' output, which the delta and the repair path
// compare); this module reads exactly that vocabulary and encodes it as ovs-ofctl would:
//   match:   cookie, table, priority, in_port, dl_src, dl_dst[/mask], ip, arp, nw_src,
//            arp_op, arp_spa, arp_tpa, arp_sha, reg6, reg7, tun_id
//   actions: load:N->FIELD[] and move:FIELD[]->FIELD[] of the NXM fields below,
//            resubmit(,T), output:N, in_port, set_field:N->tun_id, drop
// Anything else is an error, never silently dropped (the e2e test installs the same
// flows both ways and compares ovs-ofctl dump-flows).

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
  ipv4_src: { cls: 0x8000, field: 11, bytes: 4 },
  arp_op: { cls: 0x8000, field: 21, bytes: 2 },
  arp_spa: { cls: 0x8000, field: 22, bytes: 4 },
  arp_tpa: { cls: 0x8000, field: 23, bytes: 4 },
  arp_sha: { cls: 0x8000, field: 24, bytes: 6 },
  tunnel_id: { cls: 0x8000, field: 38, bytes: 8 },
  reg6: { cls: 0x0001, field: 6, bytes: 4 },
  reg7: { cls: 0x0001, field: 7, bytes: 4 },
} satisfies Record<string, OxmField>;
type FieldName = keyof typeof OXM;

/** NXM fields by the names load/move use (class 0: NXM_OF, 1: NXM_NX) */
const NXM: Record<string, OxmField> = {
  NXM_OF_ETH_DST: { cls: 0x0000, field: 1, bytes: 6 },
  NXM_OF_ETH_SRC: { cls: 0x0000, field: 2, bytes: 6 },
  NXM_OF_ARP_OP: { cls: 0x0000, field: 15, bytes: 2 },
  NXM_OF_ARP_SPA: { cls: 0x0000, field: 16, bytes: 4 },
  NXM_OF_ARP_TPA: { cls: 0x0000, field: 17, bytes: 4 },
  NXM_NX_REG6: OXM.reg6,
  NXM_NX_REG7: OXM.reg7,
  NXM_NX_ARP_SHA: { cls: 0x0001, field: 17, bytes: 6 },
  NXM_NX_ARP_THA: { cls: 0x0001, field: 18, bytes: 6 },
};
const nxmHeader = (f: OxmField) => ((f.cls << 16) | (f.field << 9) | f.bytes) >>> 0;

export type Action =
  | { type: 'output'; port: number }
  /** `in_port`: back out of the port it came in on */
  | { type: 'in_port' }
  | { type: 'resubmit'; table: number }
  /** `load:N->FIELD[]`: NXAST_REG_LOAD of a whole field, as ovs-ofctl sends it (it reads back as load) */
  | { type: 'load'; field: OxmField; value: bigint }
  /** `move:A[]->B[]`: NXAST_REG_MOVE of a whole field */
  | { type: 'move'; src: OxmField; dst: OxmField }
  /** `set_field:N->tun_id`: OFPAT_SET_FIELD */
  | { type: 'set'; field: 'tunnel_id'; value: bigint };

export interface ParsedFlow {
  cookie: bigint;
  table: number;
  priority: number;
  /** in the order they are encoded (prerequisites first) */
  match: { field: FieldName; value: Buffer; mask?: Buffer }[];
  actions: Action[];
}

const num = (s: string, what: string, max: bigint): bigint => {
  if (!/^(0x[0-9a-f]+|\d+)$/i.test(s)) throw new Error(`${what}: "${s}" is not a number`);
  const v = BigInt(s);
  if (v > max) throw new Error(`${what}: ${s} is too large`);
  return v;
};
const uint = (v: bigint, bytes: number): Buffer => {
  const b = Buffer.alloc(bytes);
  for (let i = bytes - 1; i >= 0; i--) {
    b[i] = Number(v & 0xffn);
    v >>= 8n;
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

/** Pure: one flow line as computeFlows writes it (`cookie=..,table=..,priority=..,MATCH,actions=...`), or a delete_strict key (no actions). */
export function parseFlow(line: string): ParsedFlow {
  const i = line.indexOf('actions=');
  const head = (i < 0 ? line : line.slice(0, i)).replace(/,$/, '');
  const acts = i < 0 ? undefined : line.slice(i + 'actions='.length);
  const f: ParsedFlow = { cookie: 0n, table: 0, priority: 32768, match: [], actions: [] };
  const m = new Map<FieldName, { value: Buffer; mask?: Buffer }>();
  let ethType: number | undefined;
  for (const tok of head.split(',').filter(Boolean)) {
    const [k, v] = tok.includes('=') ? [tok.slice(0, tok.indexOf('=')), tok.slice(tok.indexOf('=') + 1)] : [tok, ''];
    switch (k) {
      case 'cookie':
        f.cookie = num(v, 'cookie', 0xffffffffffffffffn);
        break;
      case 'table':
        f.table = Number(num(v, 'table', 254n));
        break;
      case 'priority':
        f.priority = Number(num(v, 'priority', 65535n));
        break;
      case 'in_port':
        m.set('in_port', { value: uint(num(v, 'in_port', 0xffffff00n), 4) });
        break;
      case 'dl_src':
        m.set('eth_src', { value: mac(v, 'dl_src') });
        break;
      case 'dl_dst': {
        const [a, b] = v.split('/');
        m.set('eth_dst', { value: mac(a!, 'dl_dst'), mask: b === undefined ? undefined : mac(b, 'dl_dst mask') });
        break;
      }
      case 'ip':
        ethType = 0x0800;
        break;
      case 'arp':
        ethType = 0x0806;
        break;
      case 'nw_src':
        m.set('ipv4_src', { value: ipv4(v, 'nw_src') });
        break;
      case 'arp_spa':
      case 'arp_tpa':
        m.set(k, { value: ipv4(v, k) });
        break;
      case 'arp_op':
        m.set('arp_op', { value: uint(num(v, 'arp_op', 0xffffn), 2) });
        break;
      case 'arp_sha':
        m.set('arp_sha', { value: mac(v, 'arp_sha') });
        break;
      case 'reg6':
      case 'reg7':
        m.set(k, { value: uint(num(v, k, 0xffffffffn), 4) });
        break;
      case 'tun_id':
        m.set('tunnel_id', { value: uint(num(v, 'tun_id', 0xffffffffffffffffn), 8) });
        break;
      default:
        throw new Error(`flow match "${tok}" is not one the native OpenFlow writer knows`);
    }
  }
  if (
    (m.has('ipv4_src') && ethType !== 0x0800) ||
    (['arp_op', 'arp_spa', 'arp_tpa', 'arp_sha'] as const).some((x) => m.has(x) && ethType !== 0x0806)
  )
    throw new Error(`flow "${line}": an IPv4/ARP field without ip/arp`);
  // OVS encodes in its own field order (prerequisites first); keep one fixed order
  const order: FieldName[] = [
    'in_port',
    'eth_dst',
    'eth_src',
    'eth_type',
    'ipv4_src',
    'arp_op',
    'arp_spa',
    'arp_tpa',
    'arp_sha',
    'tunnel_id',
    'reg6',
    'reg7',
  ];
  if (ethType !== undefined) m.set('eth_type', { value: uint(BigInt(ethType), 2) });
  for (const k of order) {
    const x = m.get(k);
    if (x) f.match.push({ field: k, ...x });
  }
  if (acts !== undefined && acts !== 'drop')
    for (const a of splitActions(acts)) {
      let r: RegExpExecArray | null;
      if ((r = /^output:(\d+)$/.exec(a)))
        f.actions.push({ type: 'output', port: Number(num(r[1]!, 'output', 0xffffff00n)) });
      else if ((r = /^resubmit\(,(\d+)\)$/.exec(a)))
        f.actions.push({ type: 'resubmit', table: Number(num(r[1]!, 'resubmit', 254n)) });
      else if (a === 'in_port') f.actions.push({ type: 'in_port' });
      else if ((r = /^load:(\w+)->(\w+)\[\]$/.exec(a)) && NXM[r[2]!]) {
        const field = NXM[r[2]!]!;
        f.actions.push({ type: 'load', field, value: num(r[1]!, 'load', (1n << BigInt(8 * field.bytes)) - 1n) });
      } else if ((r = /^move:(\w+)\[\]->(\w+)\[\]$/.exec(a)) && NXM[r[1]!] && NXM[r[2]!]) {
        const [src, dst] = [NXM[r[1]!]!, NXM[r[2]!]!];
        if (src.bytes !== dst.bytes) throw new Error(`flow action "${a}": fields of different widths`);
        f.actions.push({ type: 'move', src, dst });
      } else if ((r = /^set_field:(\w+)->tun_id$/.exec(a)))
        f.actions.push({ type: 'set', field: 'tunnel_id', value: num(r[1]!, 'set_field', 0xffffffffffffffffn) });
      else throw new Error(`flow action "${a}" is not one the native OpenFlow writer knows`);
    }
  return f;
}

/** actions split on top-level commas (resubmit(,10) has one inside) */
function splitActions(s: string): string[] {
  const out: string[] = [];
  let depth = 0;
  let cur = '';
  for (const ch of s) {
    if (ch === '(') depth++;
    if (ch === ')') depth--;
    if (ch === ',' && depth === 0) {
      out.push(cur);
      cur = '';
    } else cur += ch;
  }
  if (cur) out.push(cur);
  return out;
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
  if (a.type === 'output') {
    const b = Buffer.alloc(16);
    b.writeUInt16BE(OFPAT_OUTPUT, 0);
    b.writeUInt16BE(16, 2);
    b.writeUInt32BE(a.port, 4);
    return b;
  }
  if (a.type === 'in_port') return encodeAction({ type: 'output', port: OFPP_IN_PORT });
  if (a.type === 'move') {
    const b = nxAction(NXAST_REG_MOVE, 24);
    b.writeUInt16BE(a.src.bytes * 8, 10); // n_bits; src_ofs = dst_ofs = 0
    b.writeUInt32BE(nxmHeader(a.src), 16);
    b.writeUInt32BE(nxmHeader(a.dst), 20);
    return b;
  }
  if (a.type === 'resubmit') {
    const b = nxAction(NXAST_RESUBMIT_TABLE, 16);
    b.writeUInt16BE(OFPP10_IN_PORT, 10);
    b.writeUInt8(a.table, 12);
    return b;
  }
  if (a.type === 'load') {
    const b = nxAction(NXAST_REG_LOAD, 24);
    b.writeUInt16BE(a.field.bytes * 8 - 1, 10); // ofs 0, n_bits = the whole field
    b.writeUInt32BE(nxmHeader(a.field), 12);
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
export function flowMod(flow: ParsedFlow, command: 'add' | 'delete_strict', xid: number): Buffer {
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
