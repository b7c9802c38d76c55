// A flow as a typed value (table by name, priority, cookie, match fields, the codec's
// actions), a small builder so the pipeline reads as tables and actions, its structural
// key (table, priority, match: what delete_strict names) and the delta between two flow
// sets. computeFlows writes these; the OpenFlow encoder takes them as they are; ovs-ofctl
// gets them rendered (render.ts).
import { COOKIE } from '../../model.js';
import type { Action, NxmName, PortRef, SetFieldName } from '../openflow/codec.js';
import { TABLES, type TableName } from './pipeline.js';

export type { Action, PortRef } from '../openflow/codec.js';

/** a conntrack state flag (ct_state): new, established, related, reply direction, invalid, tracked */
export type CtFlag = 'new' | 'est' | 'rel' | 'rpl' | 'inv' | 'trk';
/** the flags in the one order text and keys list them (trk first: +trk+new-est) */
export const CT_FLAGS: readonly CtFlag[] = ['trk', 'new', 'est', 'rel', 'rpl', 'inv'];
/** ct_state: the flags that must be set (on) and those that must be clear (off) */
export interface CtState {
  on: readonly CtFlag[];
  off?: readonly CtFlag[];
}
/** Pure: ct_state as ovs-ofctl text (+trk+new-est): the set flags, then the clear ones, each in CT_FLAGS order */
export function ctStateText(c: CtState): string {
  return [
    ...CT_FLAGS.filter((f) => c.on.includes(f)).map((f) => `+${f}`),
    ...CT_FLAGS.filter((f) => c.off?.includes(f)).map((f) => `-${f}`),
  ].join('');
}

/** the match fields the pipeline uses (ovs-ofctl's names in the comments) */
export interface Match {
  /** in_port */
  inPort?: PortRef;
  /** reg7: 1 for a frame that came from a tunnel */
  reg7?: number;
  /** reg6: the frame's network key */
  reg6?: number;
  /** reg2: the source's policy group */
  reg2?: number;
  /** reg3: the destination's policy group */
  reg3?: number;
  /** tun_id */
  tunId?: number | bigint;
  /** dl_src */
  dlSrc?: string;
  /** dl_dst, with dlDstMask: dl_dst=MAC/MASK */
  dlDst?: string;
  dlDstMask?: string;
  /** ip, arp or ipv6 */
  ethType?: 'ip' | 'arp' | 'ip6';
  /** nw_src */
  nwSrc?: string;
  /** ipv6_src (with ipv6) */
  ipv6Src?: string;
  /** nw_proto (with ip) */
  ipProto?: number;
  /** tp_dst (with nw_proto 6: TCP, 17: UDP), with tpDstMask: tp_dst=0xV/0xM */
  tpDst?: number;
  tpDstMask?: number;
  /** ct_state=+trk+est: the conntrack state after a ct action with a table */
  ctState?: CtState;
  /** arp_op */
  arpOp?: number;
  /** arp_spa */
  arpSpa?: string;
  /** arp_tpa */
  arpTpa?: string;
  /** arp_sha */
  arpSha?: string;
  /** icmpv6_type (with ipv6 and nw_proto 58) */
  icmp6Type?: number;
  /** nd_target (icmpv6_type 135 or 136) */
  ndTarget?: string;
  /** nd_sll (135; 00:00:00:00:00:00: no such option) */
  ndSll?: string;
  /** nd_tll (136; zero: no such option) */
  ndTll?: string;
}

/** the match fields in the order ovs-ofctl text names them (render.ts) and the key lists them */
export const MATCH_FIELDS = [
  'inPort',
  'reg7',
  'reg6',
  'reg2',
  'reg3',
  'tunId',
  'dlSrc',
  'dlDst',
  'dlDstMask',
  'ethType',
  'nwSrc',
  'ipv6Src',
  'ipProto',
  'tpDst',
  'tpDstMask',
  'ctState',
  'arpOp',
  'arpSpa',
  'arpTpa',
  'arpSha',
  'icmp6Type',
  'ndTarget',
  'ndSll',
  'ndTll',
] as const satisfies readonly (keyof Match)[];

export interface Flow {
  table: TableName;
  priority: number;
  cookie: bigint;
  match: Match;
  /** empty: drop */
  actions: Action[];
}

/** our cookie: every flow the agent writes carries it */
export const AGENT_COOKIE = BigInt(COOKIE);

/** Pure: a flow of ours */
export function flow(table: TableName, priority: number, match: Match, actions: Action[] = []): Flow {
  return { table, priority, cookie: AGENT_COOKIE, match, actions };
}

/** the actions, by ovs-ofctl's names */
export const act = {
  output: (port: PortRef): Action => ({ type: 'output', port }),
  inPort: (): Action => ({ type: 'in_port' }),
  resubmit: (table: TableName): Action => ({ type: 'resubmit', table: TABLES[table] }),
  load: (field: NxmName, value: number | bigint): Action => ({ type: 'load', field, value: BigInt(value) }),
  move: (src: NxmName, dst: NxmName): Action => ({ type: 'move', src, dst }),
  setTunnel: (key: number): Action => ({ type: 'set', field: 'tunnel_id', value: BigInt(key) }),
  /** set_field:V->F of the ND responder's fields (ipv6_src, icmpv6_type, nd_reserved, nd_options_type, nd_tll) */
  setField: (field: SetFieldName, value: bigint | number): Action => ({ type: 'set', field, value: BigInt(value) }),
  /** ct(commit,zone=Z,table=T): through conntrack (commit: remember the connection); with a table the
   *  packet continues there with ct_state set, without one it goes on with the next action */
  ct: (o: { commit: boolean; zone: number; table?: TableName }): Action => ({
    type: 'ct',
    commit: o.commit,
    zone: o.zone,
    ...(o.table === undefined ? {} : { table: TABLES[o.table] }),
  }),
};

/** Pure: a flow's identity for delete_strict: table, priority and match (not cookie, not actions). */
export function flowKey(f: Flow): string {
  // numbers as they are, text quoted: a port's name is not its number
  const m = MATCH_FIELDS.map((k) => {
    const v = f.match[k];
    if (v === undefined) return '';
    if (typeof v === 'object') return ctStateText(v);
    return typeof v === 'string' ? JSON.stringify(v) : String(v);
  });
  return `${TABLES[f.table]}/${f.priority}/${m.join('/')}`;
}

const actionKey = (a: Action): string => {
  switch (a.type) {
    case 'output':
      return `o${typeof a.port}:${a.port}`;
    case 'in_port':
      return 'i';
    case 'resubmit':
      return `r${a.table}`;
    case 'load':
      return `l${a.value}>${a.field}`;
    case 'move':
      return `m${a.src}>${a.dst}`;
    case 'set':
      return `s${a.value}>${a.field}`;
    case 'ct':
      return `c${a.commit ? 1 : 0}:${a.zone}:${a.table ?? ''}`;
  }
};

/** Pure: the whole flow's identity: its key, cookie and actions (equal: the same flow). */
export function flowIdentity(f: Flow): string {
  return `${flowKey(f)}|${f.cookie}|${f.actions.map(actionKey).join(',')}`;
}

/** Pure: the bundle that turns flow set `from` into `to`: delete_strict (by key) what went, add what is new or changed. */
export function flowDelta(from: Flow[], to: Flow[]): { remove: Flow[]; add: Flow[] } {
  const fromIds = new Set(from.map(flowIdentity));
  const toKeys = new Set(to.map(flowKey));
  const remove = new Map<string, Flow>();
  for (const f of from) {
    const k = flowKey(f);
    if (!toKeys.has(k) && !remove.has(k)) remove.set(k, f);
  }
  return { remove: [...remove.values()], add: to.filter((f) => !fromIds.has(flowIdentity(f))) };
}

/** Pure: in_port and output ports named by a known port as their OpenFlow numbers (others stay as they are). */
export function resolvePorts(flows: Flow[], ofports: Map<string, number>): Flow[] {
  const num = (p: PortRef): PortRef => (typeof p === 'string' ? (ofports.get(p) ?? p) : p);
  return flows.map((f) => ({
    ...f,
    match: f.match.inPort === undefined ? f.match : { ...f.match, inPort: num(f.match.inPort) },
    actions: f.actions.map((a) => (a.type === 'output' ? { ...a, port: num(a.port) } : a)),
  }));
}
