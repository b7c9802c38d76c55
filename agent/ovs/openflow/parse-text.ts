// Pure: ovs-ofctl flow text (the vocabulary computeFlows writes, rendered by
// agent/ovs/flows/render.ts) read back into the codec's wire form. Not on the install
// path (flows are typed end to end); kept for tests that compare against text and for
// reading dumped flows. Anything it does not know is an error.
import { CT_FLAGS, type CtFlag, type Match } from '../flows/flow.js';
import { NXM, checkActions, num, wireMatch, type Action, type NxmName, type ParsedFlow } from './codec.js';

const isNxm = (s: string): s is NxmName => Object.hasOwn(NXM, s);

/** Pure: one flow line (`cookie=..,table=..,priority=..,MATCH,actions=...`), or a delete_strict key (no actions). */
export function parseFlow(line: string): ParsedFlow {
  const i = line.indexOf('actions=');
  const head = (i < 0 ? line : line.slice(0, i)).replace(/,$/, '');
  const acts = i < 0 ? undefined : line.slice(i + 'actions='.length);
  const f: ParsedFlow = { cookie: 0n, table: 0, priority: 32768, match: [], actions: [] };
  const m: Match = {};
  for (const tok of head.split(',').filter(Boolean)) {
    const [k, v] = tok.includes('=') ? [tok.slice(0, tok.indexOf('=')), tok.slice(tok.indexOf('=') + 1)] : [tok, ''];
    const n = (what: string, max: bigint) => Number(num(v, what, max));
    switch (k) {
      case 'cookie':
        f.cookie = num(v, 'cookie', 0xffffffffffffffffn);
        break;
      case 'table':
        f.table = n('table', 254n);
        break;
      case 'priority':
        f.priority = n('priority', 65535n);
        break;
      case 'in_port':
        m.inPort = n('in_port', 0xffffff00n);
        break;
      case 'dl_src':
        m.dlSrc = v;
        break;
      case 'dl_dst': {
        const [a, b] = v.split('/');
        m.dlDst = a!;
        if (b !== undefined) m.dlDstMask = b;
        break;
      }
      case 'ip':
      case 'arp':
        m.ethType = k;
        break;
      case 'nw_src':
        m.nwSrc = v;
        break;
      case 'nw_proto':
        m.ipProto = n('nw_proto', 0xffn);
        break;
      case 'tcp':
      case 'udp':
      case 'icmp':
        // as OVS dumps ip,nw_proto=6/17/1
        m.ethType = 'ip';
        m.ipProto = { tcp: 6, udp: 17, icmp: 1 }[k];
        break;
      case 'tp_dst':
      case 'tcp_dst':
      case 'udp_dst': {
        const [a, b] = v.split('/');
        m.tpDst = Number(num(a!, k, 0xffffn));
        if (b !== undefined) m.tpDstMask = Number(num(b, `${k} mask`, 0xffffn));
        break;
      }
      case 'ct_state': {
        // +flag/-flag only (as rendered, and as OVS dumps a masked ct_state)
        if (!/^([+-][a-z]+)+$/.test(v))
          throw new Error(`flow match "${tok}" is not one the native OpenFlow writer knows`);
        const on: CtFlag[] = [];
        const off: CtFlag[] = [];
        for (const [, sign, flag] of v.matchAll(/([+-])([a-z]+)/g)) {
          if (!CT_FLAGS.includes(flag as CtFlag))
            throw new Error(`ct_state flag "${flag}" is not one the native OpenFlow writer knows`);
          (sign === '+' ? on : off).push(flag as CtFlag);
        }
        m.ctState = off.length ? { on, off } : { on };
        break;
      }
      case 'arp_spa':
        m.arpSpa = v;
        break;
      case 'arp_tpa':
        m.arpTpa = v;
        break;
      case 'arp_op':
        m.arpOp = n('arp_op', 0xffffn);
        break;
      case 'arp_sha':
        m.arpSha = v;
        break;
      case 'reg2':
      case 'reg3':
      case 'reg6':
      case 'reg7':
        m[k] = n(k, 0xffffffffn);
        break;
      case 'tun_id':
        m.tunId = num(v, 'tun_id', 0xffffffffffffffffn);
        break;
      default:
        throw new Error(`flow match "${tok}" is not one the native OpenFlow writer knows`);
    }
  }
  f.match = wireMatch(m);
  if (acts !== undefined && acts !== 'drop') f.actions = splitActions(acts).map(parseAction);
  checkActions(m, f.actions);
  return f;
}

function parseAction(a: string): Action {
  let r: RegExpExecArray | null;
  if ((r = /^output:(\d+)$/.exec(a))) return { type: 'output', port: Number(num(r[1]!, 'output', 0xffffff00n)) };
  if ((r = /^resubmit\(,(\d+)\)$/.exec(a))) return { type: 'resubmit', table: Number(num(r[1]!, 'resubmit', 254n)) };
  if (a === 'in_port') return { type: 'in_port' };
  if ((r = /^load:(\w+)->(\w+)\[\]$/.exec(a)) && isNxm(r[2]!)) {
    const field = r[2];
    return { type: 'load', field, value: num(r[1]!, 'load', (1n << BigInt(8 * NXM[field].bytes)) - 1n) };
  }
  if ((r = /^move:(\w+)\[\]->(\w+)\[\]$/.exec(a)) && isNxm(r[1]!) && isNxm(r[2]!)) {
    const [src, dst] = [r[1], r[2]];
    if (NXM[src].bytes !== NXM[dst].bytes) throw new Error(`flow action "${a}": fields of different widths`);
    return { type: 'move', src, dst };
  }
  if ((r = /^ct\(([^)]*)\)$/.exec(a))) {
    const opts = r[1]!.split(',').filter(Boolean);
    const val = (k: string) => opts.find((o) => o.startsWith(`${k}=`))?.slice(k.length + 1);
    const keys = opts.map((o) => o.split('=')[0]);
    if (opts.some((o) => o !== 'commit' && !/^(zone|table)=\d+$/.test(o)) || new Set(keys).size !== keys.length)
      throw new Error(`flow action "${a}" is not one the native OpenFlow writer knows`);
    const table = val('table');
    return {
      type: 'ct',
      commit: opts.includes('commit'),
      zone: Number(num(val('zone') ?? '0', 'ct zone', 0xffffn)),
      ...(table === undefined ? {} : { table: Number(num(table, 'ct table', 254n)) }),
    };
  }
  if ((r = /^set_field:(\w+)->tun_id$/.exec(a)))
    return { type: 'set', field: 'tunnel_id', value: num(r[1]!, 'set_field', 0xffffffffffffffffn) };
  throw new Error(`flow action "${a}" is not one the native OpenFlow writer knows`);
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
