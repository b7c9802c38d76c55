// rtnetlink codec: pure builders and parsers of the few messages the link driver sends
// (RTM_NEWLINK veth, RTM_SETLINK up, RTM_DELLINK, RTM_GETLINK by name, RTM_NEWADDR,
// RTM_NEWROUTE default) and of the kernel's answers (ACK/error, link). No I/O here.
import { constants } from 'node:os';
import { ip6Bytes } from '../../../common/ipv6.js';

export const NLMSG = { ERROR: 2, DONE: 3 } as const;
export const RTM = { NEWLINK: 16, DELLINK: 17, GETLINK: 18, SETLINK: 19, NEWADDR: 20, NEWROUTE: 24 } as const;
export const NLM_F = { REQUEST: 0x1, ACK: 0x4, REPLACE: 0x100, EXCL: 0x200, CREATE: 0x400 } as const;
export const IFLA = { ADDRESS: 1, IFNAME: 3, MTU: 4, LINKINFO: 18, NET_NS_PID: 19 } as const;
export const IFLA_INFO = { KIND: 1, DATA: 2 } as const;
export const VETH_INFO_PEER = 1;
export const IFA = { ADDRESS: 1, LOCAL: 2 } as const;
export const RTA = { DST: 1, OIF: 4, GATEWAY: 5 } as const;
export const AF_INET = 2;
export const IFF_UP = 1;
const RT_TABLE_MAIN = 254;
const RTPROT_BOOT = 3;
const RTN_UNICAST = 1;
const HDR = 16;

const align4 = (n: number): number => (n + 3) & ~3;

/** one attribute (type, payload), padded to 4 bytes */
export function attr(type: number, payload: Buffer): Buffer {
  const b = Buffer.alloc(align4(4 + payload.length));
  b.writeUInt16LE(4 + payload.length, 0);
  b.writeUInt16LE(type, 2);
  payload.copy(b, 4);
  return b;
}
export const attrU32 = (type: number, v: number): Buffer => {
  const p = Buffer.alloc(4);
  p.writeUInt32LE(v >>> 0, 0);
  return attr(type, p);
};
/** a NUL-terminated string attribute (what the kernel expects for names and kinds) */
export const attrStr = (type: number, s: string): Buffer => attr(type, Buffer.from(`${s}\0`));
export const attrNest = (type: number, children: Buffer[]): Buffer => attr(type, Buffer.concat(children));

export function macBytes(mac: string): Buffer {
  const b = Buffer.from(mac.split(':').map((h) => parseInt(h, 16)));
  if (b.length !== 6 || mac.split(':').some((h) => !/^[0-9a-fA-F]{1,2}$/.test(h))) throw new Error(`bad MAC ${mac}`);
  return b;
}
export function ipv4Bytes(ip: string): Buffer {
  const p = ip.split('.').map(Number);
  if (p.length !== 4 || p.some((x) => !Number.isInteger(x) || x < 0 || x > 255)) throw new Error(`bad IPv4 ${ip}`);
  return Buffer.from(p);
}

/** struct ifinfomsg: family, type, index, flags, change */
export function ifinfomsg(index = 0, flags = 0, change = 0): Buffer {
  const b = Buffer.alloc(16);
  b.writeInt32LE(index, 4);
  b.writeUInt32LE(flags, 8);
  b.writeUInt32LE(change, 12);
  return b;
}

/** a whole message: header (length, type, flags, seq, port 0) and body */
export function message(type: number, flags: number, seq: number, body: Buffer[]): Buffer {
  const payload = Buffer.concat(body);
  const h = Buffer.alloc(HDR);
  h.writeUInt32LE(HDR + payload.length, 0);
  h.writeUInt16LE(type, 4);
  h.writeUInt16LE(flags, 6);
  h.writeUInt32LE(seq >>> 0, 8);
  return Buffer.concat([h, payload]);
}

export interface VethSpec {
  name: string;
  mtu: number;
  up: boolean;
  peer: { name: string; mtu: number; mac?: string; netnsPid?: number };
}

/** RTM_NEWLINK of a veth pair (`ip link add NAME mtu M [up] type veth peer name P address A mtu M [netns PID]`) */
export function newVeth(seq: number, v: VethSpec): Buffer {
  const peer = [
    attrStr(IFLA.IFNAME, v.peer.name),
    ...(v.peer.mac ? [attr(IFLA.ADDRESS, macBytes(v.peer.mac))] : []),
    attrU32(IFLA.MTU, v.peer.mtu),
    ...(v.peer.netnsPid !== undefined ? [attrU32(IFLA.NET_NS_PID, v.peer.netnsPid)] : []),
  ];
  const info = attrNest(IFLA.LINKINFO, [
    attrStr(IFLA_INFO.KIND, 'veth'),
    attrNest(IFLA_INFO.DATA, [attrNest(VETH_INFO_PEER, [ifinfomsg(), ...peer])]),
  ]);
  const up = v.up ? IFF_UP : 0;
  return message(RTM.NEWLINK, NLM_F.REQUEST | NLM_F.ACK | NLM_F.CREATE | NLM_F.EXCL, seq, [
    ifinfomsg(0, up, up),
    attrStr(IFLA.IFNAME, v.name),
    attrU32(IFLA.MTU, v.mtu),
    info,
  ]);
}

/** RTM_SETLINK by name: up (or down) */
export const setLinkUp = (seq: number, name: string, up = true): Buffer =>
  message(RTM.SETLINK, NLM_F.REQUEST | NLM_F.ACK, seq, [
    ifinfomsg(0, up ? IFF_UP : 0, IFF_UP),
    attrStr(IFLA.IFNAME, name),
  ]);

/** RTM_DELLINK by name */
export const delLink = (seq: number, name: string): Buffer =>
  message(RTM.DELLINK, NLM_F.REQUEST | NLM_F.ACK, seq, [ifinfomsg(), attrStr(IFLA.IFNAME, name)]);

/** RTM_GETLINK by name (answered by one RTM_NEWLINK or an error) */
export const getLink = (seq: number, name: string): Buffer =>
  message(RTM.GETLINK, NLM_F.REQUEST, seq, [ifinfomsg(), attrStr(IFLA.IFNAME, name)]);

export const AF_INET6 = 10;
/** ifa_flags: no duplicate address detection (an IPv6 address that is this container's alone: port security) */
const IFA_F_NODAD = 0x02;

/**
 * RTM_NEWADDR: IPv4 `ip addr add A/P dev INDEX` (local and address both A, like ip), IPv6
 * `ip -6 addr add A/P dev INDEX nodad`; the family is the address's.
 */
export function newAddr(seq: number, index: number, cidr: string): Buffer {
  const [ip, len] = cidr.split('/');
  const six = ip!.includes(':');
  const max = six ? 128 : 32;
  const prefix = Number(len ?? max);
  if (!Number.isInteger(prefix) || prefix < 0 || prefix > max) throw new Error(`bad prefix ${cidr}`);
  const m = Buffer.alloc(8);
  m.writeUInt8(six ? AF_INET6 : AF_INET, 0);
  m.writeUInt8(prefix, 1);
  if (six) m.writeUInt8(IFA_F_NODAD, 2);
  m.writeUInt32LE(index, 4);
  const attrs = six
    ? [attr(IFA.ADDRESS, ip6Bytes(ip!))]
    : [attr(IFA.LOCAL, ipv4Bytes(ip!)), attr(IFA.ADDRESS, ipv4Bytes(ip!))];
  return message(RTM.NEWADDR, NLM_F.REQUEST | NLM_F.ACK | NLM_F.CREATE | NLM_F.EXCL, seq, [m, ...attrs]);
}

/** RTM_NEWROUTE (`ip [-6] route replace default via GW dev INDEX`) in the main table; the family is the gateway's */
export function replaceDefaultRoute(seq: number, index: number, gateway: string): Buffer {
  const six = gateway.includes(':');
  const m = Buffer.alloc(12);
  m.writeUInt8(six ? AF_INET6 : AF_INET, 0);
  m.writeUInt8(RT_TABLE_MAIN, 4);
  m.writeUInt8(RTPROT_BOOT, 5);
  m.writeUInt8(0, 6); // RT_SCOPE_UNIVERSE
  m.writeUInt8(RTN_UNICAST, 7);
  return message(RTM.NEWROUTE, NLM_F.REQUEST | NLM_F.ACK | NLM_F.CREATE | NLM_F.REPLACE, seq, [
    m,
    attr(RTA.GATEWAY, six ? ip6Bytes(gateway) : ipv4Bytes(gateway)),
    attrU32(RTA.OIF, index),
  ]);
}

export interface Reply {
  type: number;
  seq: number;
  /** for NLMSG_ERROR: 0 is an ACK, otherwise a positive errno */
  errno?: number;
  body: Buffer;
}

/** split a datagram of the kernel into its messages */
export function parseReplies(buf: Buffer): Reply[] {
  const out: Reply[] = [];
  let off = 0;
  while (off + HDR <= buf.length) {
    const len = buf.readUInt32LE(off);
    if (len < HDR || off + len > buf.length) break;
    const type = buf.readUInt16LE(off + 4);
    const seq = buf.readUInt32LE(off + 8);
    const body = buf.subarray(off + HDR, off + len);
    out.push(type === NLMSG.ERROR ? { type, seq, errno: -body.readInt32LE(0) || 0, body } : { type, seq, body });
    off += align4(len);
  }
  return out;
}

/** the index and name of an RTM_NEWLINK body */
export function parseLink(body: Buffer): { index: number; flags: number; name?: string } {
  const index = body.readInt32LE(4);
  const flags = body.readUInt32LE(8);
  let name: string | undefined;
  for (let off = 16; off + 4 <= body.length;) {
    const len = body.readUInt16LE(off);
    if (len < 4) break;
    if ((body.readUInt16LE(off + 2) & 0x3fff) === IFLA.IFNAME)
      name = body
        .subarray(off + 4, off + len)
        .toString()
        .replace(/\0.*$/s, '');
    off += align4(len);
  }
  return { index, flags, name };
}

const ERRNO_NAMES = new Map(Object.entries(constants.errno).map(([k, v]) => [v, k]));
export const errnoName = (n: number): string => ERRNO_NAMES.get(n) ?? `errno ${n}`;

/** a failed netlink (or socket) operation: its errno, by number and name */
export class NetlinkError extends Error {
  readonly code: string;
  constructor(
    readonly op: string,
    readonly errno: number,
  ) {
    super(`${op}: ${errnoName(errno)}`);
    this.code = errnoName(errno);
    this.name = 'NetlinkError';
  }
}
