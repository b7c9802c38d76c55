// Pure: a typed flow as ovs-ofctl text, exactly the lines the agent wrote when flows were
// text. Used only where text is the interface: the ovs-ofctl paths (replace-flows, the
// fallback bundle) and what trace and status print.
import { NXM, type Action, type NxmName } from '../openflow/codec.js';
import { MATCH_FIELDS, ctStateText, type Flow, type Match } from './flow.js';
import { TABLES } from './pipeline.js';

/** how a load's value is written: registers in decimal, the ARP opcode in short hex, addresses in hex of their width */
const loadValue = (field: NxmName, v: bigint): string => {
  if (field.startsWith('NXM_NX_REG')) return v.toString();
  if (field === 'NXM_OF_ARP_OP') return `0x${v.toString(16)}`;
  return `0x${v.toString(16).padStart(NXM[field].bytes * 2, '0')}`;
};

const MATCH_TEXT: Record<(typeof MATCH_FIELDS)[number], (m: Match) => string | undefined> = {
  inPort: (m) => (m.inPort === undefined ? undefined : `in_port=${m.inPort}`),
  reg7: (m) => (m.reg7 === undefined ? undefined : `reg7=${m.reg7}`),
  reg6: (m) => (m.reg6 === undefined ? undefined : `reg6=${m.reg6}`),
  reg2: (m) => (m.reg2 === undefined ? undefined : `reg2=${m.reg2}`),
  reg3: (m) => (m.reg3 === undefined ? undefined : `reg3=${m.reg3}`),
  tunId: (m) => (m.tunId === undefined ? undefined : `tun_id=${m.tunId}`),
  dlSrc: (m) => (m.dlSrc === undefined ? undefined : `dl_src=${m.dlSrc}`),
  dlDst: (m) =>
    m.dlDst === undefined ? undefined : `dl_dst=${m.dlDst}${m.dlDstMask === undefined ? '' : `/${m.dlDstMask}`}`,
  dlDstMask: () => undefined,
  ethType: (m) => m.ethType,
  nwSrc: (m) => (m.nwSrc === undefined ? undefined : `nw_src=${m.nwSrc}`),
  ipProto: (m) => (m.ipProto === undefined ? undefined : `nw_proto=${m.ipProto}`),
  tpDst: (m) =>
    m.tpDst === undefined
      ? undefined
      : m.tpDstMask === undefined
        ? `tp_dst=${m.tpDst}`
        : `tp_dst=0x${m.tpDst.toString(16)}/0x${m.tpDstMask.toString(16)}`,
  tpDstMask: () => undefined,
  ctState: (m) => (m.ctState === undefined ? undefined : `ct_state=${ctStateText(m.ctState)}`),
  arpOp: (m) => (m.arpOp === undefined ? undefined : `arp_op=${m.arpOp}`),
  arpSpa: (m) => (m.arpSpa === undefined ? undefined : `arp_spa=${m.arpSpa}`),
  arpTpa: (m) => (m.arpTpa === undefined ? undefined : `arp_tpa=${m.arpTpa}`),
  arpSha: (m) => (m.arpSha === undefined ? undefined : `arp_sha=${m.arpSha}`),
};

/** Pure: the match as ovs-ofctl text (`in_port=3,dl_src=...`; empty: everything) */
export function renderMatch(m: Match): string {
  return MATCH_FIELDS.map((k) => MATCH_TEXT[k](m))
    .filter((x) => x !== undefined)
    .join(',');
}

export function renderAction(a: Action): string {
  switch (a.type) {
    case 'output':
      return `output:${a.port}`;
    case 'in_port':
      return 'in_port';
    case 'resubmit':
      return `resubmit(,${a.table})`;
    case 'load':
      return `load:${loadValue(a.field, a.value)}->${a.field}[]`;
    case 'move':
      return `move:${a.src}[]->${a.dst}[]`;
    case 'set':
      return `set_field:${a.value}->tun_id`;
    case 'ct':
      return `ct(${a.commit ? 'commit,' : ''}zone=${a.zone}${a.table === undefined ? '' : `,table=${a.table}`})`;
  }
}

/** Pure: the actions as ovs-ofctl text (none: drop) */
export function renderActions(actions: Action[]): string {
  return actions.length ? actions.map(renderAction).join(',') : 'drop';
}

/** Pure: the flow's delete_strict key as ovs-ofctl text: table, priority, match */
export function renderKey(f: Flow): string {
  const m = renderMatch(f.match);
  return `table=${TABLES[f.table]},priority=${f.priority}${m ? `,${m}` : ''}`;
}

/** Pure: the whole flow as ovs-ofctl text (`cookie=..,table=..,priority=..,MATCH,actions=...`) */
export function renderFlow(f: Flow): string {
  return `cookie=0x${f.cookie.toString(16)},${renderKey(f)},actions=${renderActions(f.actions)}`;
}
