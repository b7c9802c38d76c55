// `coordctl trace` on one host: the exact packet a container would send (or that arrives
// on the tunnel from a peer) through `ovs-appctl ofproto/trace` on our bridge, read back
// as the pipeline's tables and one verdict in words. The parsing and the verdict are
// pure; the driver runs ovs-appctl (a diagnostic, not a hot path) and reads nftables for
// the NAT step, which ofproto/trace cannot see.
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Runner } from '../../common/exec.js';
import { cidrContains, parseCidr, parseIp } from '../../common/ipv4.js';
import { cidr6Contains, parseCidr6, parseIp6 } from '../../common/ipv6.js';
import type { TraceHop, TraceRequest, TraceStep } from '../../proto/gen/gremesh/v1/gremesh.js';
import { TABLES as TABLE, TABLE_NAMES } from '../ovs/flows/pipeline.js';
import type { OvsState, Snapshot } from '../model.js';
import { LINK_LOCAL, NFT_TABLE } from '../net/nat.js';
import { MAC_KEY, NETWORK_KEY, PEER_KEY, parseBinding } from '../ovs/ids.js';
import type { TunnelHealth } from './reconciler.js';
import { policyStepOf } from './policy-flows.js';

/**
 * Pure: what the policy of the packet's network decided, from the policyRules step the
 * trace crossed (undefined: the network is not policed or the packet met no rule there).
 */
/** Pure: the verdict with what policy decided in it: dropped by a rule, or delivered with the rule that allowed it */
export function withPolicy<V extends { verdict: string; detail: string }>(
  v: V,
  t: ParsedTrace,
  net: Snapshot['networks'][number] | undefined,
): V {
  const decided = policyDecision(t, net);
  if (decided && v.verdict === 'dropped' && t.steps.at(-1)?.table === TABLE.policyRules)
    return { ...v, detail: `dropped by policy: ${decided}` };
  if (decided && v.verdict === 'delivered') return { ...v, detail: `${v.detail}; policy: ${decided}` };
  return v;
}

export function policyDecision(t: ParsedTrace, net: Snapshot['networks'][number] | undefined): string | undefined {
  if (!net) return undefined;
  const step = t.steps.find((x) => x.table === TABLE.policyRules);
  const prio = step && /priority (\d+)$/.exec(step.rule);
  return prio
    ? policyStepOf({ isolation: net.isolation ?? 'none', rules: net.rules ?? [] }, Number(prio[1]))
    : undefined;
}

export interface ParsedTrace {
  steps: TraceStep[];
  /** OpenFlow ports the packet was sent to, in order (the ARP responder's in_port included) */
  outputs: number[];
  datapathActions: string;
}

/** Pure: `ovs-appctl ofproto/trace` output on our bridge → the tables it crossed and where it went. */
export function parseTrace(text: string, bridge: string): ParsedTrace {
  const steps: TraceStep[] = [];
  const outputs: number[] = [];
  let inBridge = false;
  let datapathActions = '';
  let current: TraceStep | undefined;
  for (const raw of text.split('\n')) {
    const line = raw.replace(/\s+$/, '');
    const b = /^\s*bridge\("([^"]+)"\)/.exec(line);
    if (b) {
      inBridge = b[1] === bridge;
      current = undefined;
      continue;
    }
    const dp = /^Datapath actions: (.*)$/.exec(line);
    if (dp) datapathActions = dp[1]!;
    if (!inBridge || /^\s*-+$/.test(line)) continue;
    if (/^(Final flow|Megaflow|Datapath actions):/.test(line)) {
      inBridge = false;
      continue;
    }
    const t = /^\s*(\d+)\. (.*?)(?:, priority (\d+))?(?:, cookie (0x[0-9a-f]+))?$/.exec(line);
    if (t && !line.includes('->') && !/^\s*\d+\.\s*$/.test(line)) {
      const table = Number(t[1]);
      const match = t[2]!;
      current = {
        table,
        tableName: TABLE_NAMES[table] ?? `table ${table}`,
        rule: t[3] !== undefined ? `${match === '' ? '(any)' : match}, priority ${t[3]}` : match,
        actions: '',
      };
      steps.push(current);
      continue;
    }
    const action = line.trim();
    if (!current || !action || action.startsWith('->') || action.startsWith('>>')) continue;
    if (/^resubmit\(/.test(action)) continue; // the next table's own line shows where it went
    current.actions = current.actions ? `${current.actions},${action}` : action;
    const out = /^output:(\d+)$/.exec(action);
    if (out) outputs.push(Number(out[1]));
    if (action === 'IN_PORT' || action === 'in_port') outputs.push(-1);
  }
  return { steps, outputs, datapathActions };
}

/** What the host knows about each of its bridge's ports, by OpenFlow number. */
export type PortInfo =
  | {
      kind: 'tunnel';
      name: string;
      peer: string;
      forwarding: boolean;
      bfdState: string;
      bfdDiagnostic: string;
      /** encryption: the peer's tunnel IP inside WireGuard */
      wireguard?: string;
    }
  | { kind: 'container'; name: string; container: string; network: string }
  | { kind: 'gateway'; name: string; network: string };

/** Pure: the verdict of one host's trace. */
export function verdict(
  req: Pick<TraceRequest, 'from' | 'dstMac' | 'dstIp' | 'greKey' | 'peer'>,
  t: ParsedTrace,
  ports: Map<number, PortInfo>,
  host: string,
): Pick<TraceHop, 'verdict' | 'detail' | 'peer' | 'tunnel'> {
  const last = t.steps.at(-1);
  const none = { peer: '', tunnel: '' };
  if (!last) return { verdict: 'dropped', detail: 'dropped: the bridge has no flow for it', ...none };
  const outs = t.outputs.map((n) => ports.get(n)).filter((p): p is PortInfo => p !== undefined);
  if (outs.length === 0) {
    if (last.actions !== 'drop' && last.actions !== '')
      return { verdict: 'dropped', detail: `dropped: no port takes it (${last.actions})`, ...none };
    if (last.table === TABLE.portSecurity)
      return {
        verdict: 'dropped',
        detail: 'dropped at port security: the source MAC or IP is not the port’s own (spoofed source)',
        ...none,
      };
    if (last.table === TABLE.classify)
      return {
        verdict: 'dropped',
        detail:
          req.from === 'tunnel'
            ? `dropped at classify: GRE key ${req.greKey} from ${req.peer} is no network this host knows`
            : 'dropped at classify: the packet came in on a port that is no container or gateway of ours',
        ...none,
      };
    return {
      verdict: 'dropped',
      detail:
        req.from === 'tunnel'
          ? `dropped at forward: no container with MAC ${req.dstMac} in this network on ${host}`
          : `dropped at forward: nowhere to send MAC ${req.dstMac}`,
      ...none,
    };
  }
  const local = outs.find((p) => p.kind === 'container');
  if (local && local.kind === 'container')
    return { verdict: 'delivered', detail: `delivered to ${local.container} on ${host} (port ${local.name})`, ...none };
  const gw = outs.find((p) => p.kind === 'gateway');
  if (gw) return { verdict: 'gateway', detail: `to the gateway ${gw.name} on ${host}: routed by the host`, ...none };
  const tunnels = outs.filter((p) => p.kind === 'tunnel');
  if (tunnels.length > 1)
    return {
      verdict: 'sent',
      detail: `flooded to ${tunnels.length} peers (${tunnels.map((x) => x.peer).join(', ')}): no peer reported MAC ${req.dstMac}`,
      ...none,
    };
  const tun = tunnels[0];
  if (tun && tun.kind === 'tunnel') {
    if (!tun.forwarding)
      return {
        verdict: 'dropped',
        detail: `dropped: tunnel ${tun.name} to ${tun.peer} is down (BFD ${tun.bfdState || 'down'}${tun.bfdDiagnostic ? `: ${tun.bfdDiagnostic}` : ''})`,
        peer: tun.peer,
        tunnel: tun.name,
      };
    return {
      verdict: 'sent',
      detail: `sent to peer ${tun.peer} over ${tun.name}${tun.wireguard ? ` inside WireGuard (to its tunnel IP ${tun.wireguard})` : ''}`,
      peer: tun.peer,
      tunnel: tun.name,
    };
  }
  return { verdict: 'dropped', detail: 'dropped: sent back where it came from', ...none };
}

/** Pure: the ofproto/trace flow for the packet (fields as ovs-ofctl reads them). */
export function traceFlow(
  req: Pick<TraceRequest, 'srcMac' | 'dstMac' | 'srcIp' | 'dstIp' | 'proto' | 'port'>,
  inPort: number,
  tunnel?: { key: number; src: string; dst: string },
): string {
  const v6 = req.srcIp.includes(':');
  const l4 =
    req.proto === 'tcp'
      ? `${v6 ? 'tcp6' : 'tcp'},tp_src=40000,tp_dst=${req.port || 80}`
      : req.proto === 'udp'
        ? `${v6 ? 'udp6' : 'udp'},udp_src=40000,udp_dst=${req.port || 53}`
        : v6
          ? 'icmp6,icmpv6_type=128,icmpv6_code=0'
          : 'icmp,icmp_type=8,icmp_code=0';
  const tun = tunnel
    ? [
        `tun_id=${tunnel.key}`,
        ...(tunnel.src.includes(':')
          ? [`tun_ipv6_src=${tunnel.src}`, `tun_ipv6_dst=${tunnel.dst}`]
          : [`tun_src=${tunnel.src}`, `tun_dst=${tunnel.dst}`]),
      ]
    : [];
  return [
    `in_port=${inPort}`,
    ...tun,
    `dl_src=${req.srcMac}`,
    `dl_dst=${req.dstMac}`,
    l4,
    v6 ? `ipv6_src=${req.srcIp}` : `nw_src=${req.srcIp}`,
    v6 ? `ipv6_dst=${req.dstIp}` : `nw_dst=${req.dstIp}`,
    'nw_ttl=64',
  ].join(',');
}

/** Pure: the masquerade rule of our nftables table that applies to a packet from cidr, read from `nft list table ip gremesh` (ip6 for an IPv6 prefix). */
export function natRule(ruleset: string, networkCidr: string): string | undefined {
  const family = networkCidr.includes(':') ? 'ip6' : 'ip';
  return ruleset
    .split('\n')
    .map((l) => l.trim())
    .find((l) => l.includes(`${family} saddr ${networkCidr}`) && l.endsWith('masquerade'));
}

/** Pure: an address's family as the NAT tables name it */
const familyOf = (ip: string) => {
  const v6 = parseIp6(ip) !== undefined;
  return { v6, family: v6 ? 'ip6' : 'ip' };
};

/** Pure: whether ip is outside network net (its IPv4 CIDR, or its IPv6 prefix for an IPv6 address) */
function outsideOf(net: { cidr: string; ipv6Cidr?: string }, ip: string): boolean {
  const v4 = parseIp(ip);
  if (v4 !== undefined) return !cidrContains(parseCidr(net.cidr)!, v4);
  const v6 = parseIp6(ip);
  return v6 !== undefined && !!net.ipv6Cidr && !cidr6Contains(parseCidr6(net.ipv6Cidr)!, v6);
}

/**
 * Pure: the names DNAT of our nftables table that takes a DNS query (UDP/TCP 53 to dstIp)
 * arriving on gateway port gwPort to the network's resolver, read from `nft list table ip gremesh`.
 */
export function dnsRule(ruleset: string, gwPort: string, dstIp: string): string | undefined {
  return ruleset
    .split('\n')
    .map((l) => l.trim())
    .find((l) => {
      const m = /ip daddr \{? ?([0-9., ]+?) ?\}? meta l4proto \{ tcp, udp \} th dport 53 dnat to /.exec(l);
      return l.startsWith(`iifname "${gwPort}" `) && !!m && m[1]!.split(/, ?/).includes(dstIp);
    });
}

export interface TracerDeps {
  run: Runner;
  bridge: string;
  host: string;
  underlayIp: string;
  /** ovs-vswitchd's run directory (its pidfile and control socket), when the database is a local socket */
  ovsRundir: string | undefined;
  observe: () => Promise<OvsState>;
  tunnels: () => TunnelHealth[];
  snapshot: () => Snapshot | undefined;
}

/** One host's part of a trace: the packet through ofproto/trace on this host's bridge. */
export class Tracer {
  constructor(private readonly d: TracerDeps) {}

  async trace(req: TraceRequest): Promise<TraceHop> {
    const d = this.d;
    const hop = (v: Pick<TraceHop, 'verdict' | 'detail'>): TraceHop => ({
      host: d.host,
      steps: [],
      peer: '',
      tunnel: '',
      datapathActions: '',
      ...v,
    });
    const o = await d.observe();
    const s = d.snapshot();
    const health = new Map(d.tunnels().map((t) => [t.port, t]));
    const ports = new Map<number, PortInfo>();
    for (const i of o.interfaces) {
      if (i.bridge !== d.bridge || i.ofport <= 0) continue;
      const peer = i.externalIds[PEER_KEY];
      const b = parseBinding(i.externalIds);
      if (peer) {
        const h = health.get(i.name);
        ports.set(i.ofport, {
          kind: 'tunnel',
          name: i.name,
          peer,
          forwarding: h?.forwarding ?? false,
          bfdState: h?.bfdState ?? '',
          bfdDiagnostic: h?.bfdDiagnostic ?? '',
          ...(s?.encryption && i.options.remote_ip ? { wireguard: i.options.remote_ip } : {}),
        });
      } else if (b && i.name.startsWith('gmgw'))
        ports.set(i.ofport, { kind: 'gateway', name: i.name, network: b.network });
      else if (b)
        ports.set(i.ofport, {
          kind: 'container',
          name: i.name,
          container: b.name || b.containerId.slice(0, 12),
          network: b.network,
        });
    }
    let inPort: number | undefined;
    let tunnel: { key: number; src: string; dst: string } | undefined;
    let packet = { ...req };
    if (req.from === 'container') {
      const i = o.interfaces.find(
        (x) => x.bridge === d.bridge && x.ofport > 0 && parseBinding(x.externalIds)?.containerId === req.containerId,
      );
      if (!i)
        return hop({
          verdict: 'dropped',
          detail: `dropped: the container has no port on ${d.host}'s bridge (not attached)`,
        });
      inPort = i.ofport;
      const b = parseBinding(i.externalIds)!;
      const net = s?.networks.find((n) => n.name === b.network);
      if (!req.dstMac && net && outsideOf(net, req.dstIp)) {
        // outside the network: the container sends to its gateway's MAC
        const gw = o.interfaces.find(
          (x) => x.bridge === d.bridge && x.name.startsWith('gmgw') && x.externalIds[NETWORK_KEY] === b.network,
        );
        if (!gw)
          return hop({ verdict: 'dropped', detail: `dropped: ${d.host} has no gateway for network ${b.network}` });
        packet = { ...packet, dstMac: gw.externalIds[MAC_KEY] ?? gw.macInUse };
      }
    } else {
      const t = o.interfaces.find((x) => x.bridge === d.bridge && x.externalIds[PEER_KEY] === req.peer && x.ofport > 0);
      if (!t) return hop({ verdict: 'dropped', detail: `dropped: ${d.host} has no tunnel from ${req.peer}` });
      inPort = t.ofport;
      const peer = s?.peers.find((p) => p.name === req.peer);
      tunnel = { key: req.greKey, src: peer?.underlayIp ?? t.options.remote_ip ?? '', dst: d.underlayIp };
    }
    const flow = traceFlow(packet, inPort, tunnel);
    const r = await d.run(['ovs-appctl', ...(await this.target()), 'ofproto/trace', d.bridge, flow], {
      timeoutMs: 10_000,
    });
    const parsed = parseTrace(r.stdout, d.bridge);
    const v = verdict(packet, parsed, ports, d.host);
    let detail = v.detail;
    const policy = withPolicy(v, parsed, this.networkOf(req, o, s, inPort));
    if (policy.verdict === 'dropped' && policy.detail !== v.detail)
      return { host: d.host, steps: parsed.steps, datapathActions: parsed.datapathActions, ...policy };
    detail = policy.detail;
    if (v.verdict === 'gateway') {
      const gw = parsed.outputs.map((n) => ports.get(n)).find((p) => p?.kind === 'gateway');
      const net = s?.networks.find((n) => n.name === gw?.network);
      const dst = parseIp(packet.dstIp);
      const { v6, family } = familyOf(packet.dstIp);
      if (net && outsideOf(net, packet.dstIp)) {
        const ruleset = (await d.run(['nft', 'list', 'table', family, NFT_TABLE], { okCodes: [1] })).stdout;
        const rule = natRule(ruleset, v6 ? net.ipv6Cidr! : net.cidr);
        const dns =
          (packet.proto === 'udp' || packet.proto === 'tcp') && packet.port === 53 && gw
            ? dnsRule(ruleset, gw.name, packet.dstIp)
            : undefined;
        if (dns)
          return {
            host: d.host,
            steps: parsed.steps,
            datapathActions: parsed.datapathActions,
            ...v,
            verdict: 'gateway',
            detail: `${detail}; DNS: to the names resolver on ${dns.split('dnat to ')[1]}:53 by \`${dns}\` (table ip ${NFT_TABLE}, chain prerouting): it answers the network's names and relays the rest to ${packet.dstIp}`,
          };
        const linkLocal =
          dst !== undefined &&
          cidrContains(parseCidr(LINK_LOCAL)!, dst) &&
          ruleset.includes(`ip daddr ${LINK_LOCAL} drop`);
        detail = linkLocal
          ? `dropped at the gateway: link-local ${packet.dstIp} is not forwarded (rule \`iifname "gmgw*" ip daddr ${LINK_LOCAL} drop\`; open with --gateway-allow link-local)`
          : rule
            ? `${detail}; NAT: masqueraded to ${d.host}'s ${v6 ? 'IPv6 ' : ''}address by \`${rule}\` (table ${family} ${NFT_TABLE}, chain postrouting), then out of the host's default route`
            : `${detail}; no masquerade rule for ${v6 ? net.ipv6Cidr : net.cidr} in table ${family} ${NFT_TABLE}: it leaves unmasqueraded`;
        if (linkLocal)
          return {
            ...hop({ verdict: 'dropped', detail }),
            steps: parsed.steps,
            datapathActions: parsed.datapathActions,
          };
      }
    }
    return { host: d.host, steps: parsed.steps, datapathActions: parsed.datapathActions, ...v, detail };
  }

  /** the network of the traced packet: by its GRE key from a tunnel, else by the container port's binding */
  private networkOf(req: TraceRequest, o: OvsState, s: Snapshot | undefined, inPort: number) {
    if (req.from === 'tunnel') return s?.networks.find((n) => n.greKey === req.greKey);
    const port = o.interfaces.find((x) => x.bridge === this.d.bridge && x.ofport === inPort);
    const network = parseBinding(port?.externalIds ?? {})?.network;
    return s?.networks.find((n) => n.name === network);
  }

  /** `-t CTL` for ovs-vswitchd's control socket: `ovs-vswitchd.ctl` (--unixctl) or OVS's default `ovs-vswitchd.PID.ctl` */
  private async target(): Promise<string[]> {
    const dir = this.d.ovsRundir;
    if (!dir) return [];
    const named = path.join(dir, 'ovs-vswitchd.ctl');
    if (fs.existsSync(named)) return ['-t', named];
    try {
      const pid = fs.readFileSync(path.join(dir, 'ovs-vswitchd.pid'), 'utf8').trim();
      return ['-t', path.join(dir, `ovs-vswitchd.${pid}.ctl`)];
    } catch {
      return [];
    }
  }
}
