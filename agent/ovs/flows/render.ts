// Pure: a typed flow as ovs-ofctl text, exactly the lines the agent wrote when flows were
// text. Used only where text is the interface: the ovs-ofctl paths (replace-flows, the
// fallback bundle) and what trace and status print.
import { NXM, type Action, type NxmName, type SetFieldName } from '../openflow/codec.js';
import { formatIp6 } from '../../../common/ipv6.js';
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
  ethType: (m) => (m.ethType === 'ip6' ? 'ipv6' : m.ethType),
  nwSrc: (m) => (m.nwSrc === undefined ? undefined : `nw_src=${m.nwSrc}`),
  ipv6Src: (m) => (m.ipv6Src === undefined ? undefined : `ipv6_src=${m.ipv6Src}`),
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
  icmp6Type: (m) => (m.icmp6Type === undefined ? undefined : `icmpv6_type=${m.icmp6Type}`),
  ndTarget: (m) => (m.ndTarget === undefined ? undefined : `nd_target=${m.ndTarget}`),
  ndSll: (m) => (m.ndSll === undefined ? undefined : `nd_sll=${m.ndSll}`),
  ndTll: (m) => (m.ndTll === undefined ? undefined : `nd_tll=${m.ndTll}`),
};

/** set_field's value as ovs-ofctl writes it, and the field's text name */
const setText = (field: SetFieldName, v: bigint): string => {
  const hex = (bytes: number) => v.toString(16).padStart(bytes * 2, '0');
  switch (field) {
    case 'tunnel_id':
      return `set_field:${v}->tun_id`;
    case 'ipv6_src':
      return `set_field:${formatIp6(v)}->ipv6_src`;
    case 'icmpv6_type':
      return `set_field:${v}->icmpv6_type`;
    case 'nd_reserved':
      return `set_field:0x${hex(4)}->nd_reserved`;
    case 'nd_options_type':
      return `set_field:${v}->nd_options_type`;
    case 'ipv6_nd_tll':
      return `set_field:${hex(6).replace(/(..)(?!$)/g, '$1:')}->nd_tll`;
  }
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
      return setText(a.field, a.value);
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
