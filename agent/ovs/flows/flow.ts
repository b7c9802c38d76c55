// A flow as a typed value (table by name, priority, cookie, match fields, the codec's
// actions), a small builder so the pipeline reads as tables and actions, its structural
// key (table, priority, match: what delete_strict names) and the delta between two flow
// sets. computeFlows writes these; the OpenFlow encoder takes them as they are; ovs-ofctl
// gets them rendered (render.ts).
import { COOKIE } from '../../model.js';
import type { Action, NxmName, PortRef } from '../openflow/codec.js';
import { TABLES, type TableName } from './pipeline.js';

export type { Action, PortRef } from '../openflow/codec.js';

/** the match fields the pipeline uses (ovs-ofctl's names in the comments) */
export interface Match {
  /** in_port */
  inPort?: PortRef;
  /** reg7: 1 for a frame that came from a tunnel */
  reg7?: number;
  /** reg6: the frame's network key */
  reg6?: number;
  /** tun_id */
  tunId?: number | bigint;
  /** dl_src */
  dlSrc?: string;
  /** dl_dst, with dlDstMask: dl_dst=MAC/MASK */
  dlDst?: string;
  dlDstMask?: string;
  /** ip or arp */
  ethType?: 'ip' | 'arp';
  /** nw_src */
  nwSrc?: string;
  /** arp_op */
  arpOp?: number;
  /** arp_spa */
  arpSpa?: string;
  /** arp_tpa */
  arpTpa?: string;
  /** arp_sha */
  arpSha?: string;
}

/** the match fields in the order ovs-ofctl text names them (render.ts) and the key lists them */
export const MATCH_FIELDS = [
  'inPort',
  'reg7',
  'reg6',
  'tunId',
  'dlSrc',
  'dlDst',
  'dlDstMask',
  'ethType',
  'nwSrc',
  'arpOp',
  'arpSpa',
  'arpTpa',
  'arpSha',
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
};

/** Pure: a flow's identity for delete_strict: table, priority and match (not cookie, not actions). */
export function flowKey(f: Flow): string {
  // numbers as they are, text quoted: a port's name is not its number
  const m = MATCH_FIELDS.map((k) => {
    const v = f.match[k];
    return v === undefined ? '' : typeof v === 'string' ? JSON.stringify(v) : String(v);
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
