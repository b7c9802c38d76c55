// Pure: from the coordinator's snapshot and what OVS shows, the data plane this host
// should have (bridge, tunnels, gateways, MTUs), and the OpenFlow pipeline (typed flows).
import { cidrContains, formatIp, ipHex, isUnicastMac, macFromIp, parseCidr, parseIp } from '../../common/ipv4.js';
import { canonicalIp6, cidr6Contains, formatIp6, linkLocalOf, parseCidr6, parseIp6 } from '../../common/ipv6.js';
import { createHash } from 'node:crypto';
import type { LocalPort, OvsInterface, OvsState, Snapshot } from '../model.js';
import { act, flow, type Action, type Flow, type Match } from '../ovs/flows/flow.js';
import { PRIORITY, REG_FROM_TUNNEL, REG_NETWORK, TABLES, type TableName } from '../ovs/flows/pipeline.js';
import { IP_KEY, NETWORK_KEY, PEER_KEY, gatewayIds, isOwned, owned, parseBinding, tunnelIds } from '../ovs/ids.js';
import type { OvsOp } from '../ovs/ops.js';
import { GROUP_ID, groupId, networkPolicyFlows, policedNetworks } from './policy-flows.js';
import { REG_DST_GROUP } from '../ovs/flows/pipeline.js';

import { WIREGUARD_OVERHEAD } from '../../common/wireguard.js';

/** outer IPv4 20 + GRE with key 8 + inner Ethernet 14 */
export const GRE_OVERHEAD = 42;
/** an IPv6 outer header is 20 bytes longer than IPv4's (ip6gre: 62 in all) */
export const IPV6_OUTER_EXTRA = 20;

export interface TunnelSpec {
  port: string;
  remoteIp: string;
  peer: string;
  /** gre (IPv4 underlay) or ip6gre (IPv6 underlay) */
  type: 'gre' | 'ip6gre';
}

/** Pure: the underlay family of an address (undefined: neither) */
export function underlayFamily(ip: string): 4 | 6 | undefined {
  return parseIp(ip) !== undefined ? 4 : parseIp6(ip) !== undefined ? 6 : undefined;
}
export interface GatewaySpec {
  port: string;
  network: string;
  greKey: number;
  ip: string;
  prefixLen: number;
  mac: string;
  mtu: number;
  /** dual-stack: the IPv6 slice's first address, with the network's IPv6 prefix length */
  ip6?: string;
  prefixLen6?: number;
}
export interface DesiredPlane {
  bridge: string;
  datapath: 'system' | 'netdev';
  tunnels: TunnelSpec[];
  gateways: GatewaySpec[];
  /** container MTU per network */
  mtu: Record<string, number>;
  /** peers whose underlay is of the other family: no tunnel to them (GRE keeps its outer family) */
  crossFamily?: string[];
}

export interface AgentParams {
  bridge: string;
  datapath: 'system' | 'netdev';
  underlayMtu: number;
  /** encryption: true once this host's WireGuard carries the tunnels (until then none is built) */
  wireguardReady?: () => boolean;
  /** encryption: the WireGuard device's name */
  wireguardDevice?: string;
}

export function tunnelPortName(ip: string): string {
  const v4 = parseIp(ip);
  if (v4 !== undefined) return `gre-${ipHex(v4)}`;
  // IPv6: 11 hex digits of a hash of the address (a port name fits 15 characters)
  return `gr6-${createHash('sha256')
    .update(canonicalIp6(ip) ?? ip)
    .digest('hex')
    .slice(0, 11)}`;
}
export function gatewayPortName(greKey: number): string {
  return `gmgw${greKey}`;
}

/**
 * The MTU GRE packets between hosts have: the underlay's, less WireGuard's overhead when they
 * travel inside it, less the IPv6 outer header's extra 20 bytes on an IPv6 underlay.
 */
export function tunnelMtu(s: Pick<Snapshot, 'encryption'> & { underlayIp?: string }, underlayMtu: number): number {
  const six = s.underlayIp !== undefined && underlayFamily(s.underlayIp) === 6 ? IPV6_OUTER_EXTRA : 0;
  return (s.encryption ? underlayMtu - WIREGUARD_OVERHEAD : underlayMtu) - six;
}

export function containerMtu(networkMtu: number, underlayMtu: number): number {
  return networkMtu > 0 ? networkMtu : underlayMtu - GRE_OVERHEAD;
}

/** The gateway of a slice: its first address, with the network's prefix length. */
export function gatewayOf(sliceCidr: string, networkCidr: string): { ip: string; prefixLen: number } {
  const s = parseCidr(sliceCidr)!;
  return { ip: formatIp(s.base + 1), prefixLen: parseCidr(networkCidr)!.prefix };
}

/** The IPv6 gateway of a slice: its first address, with the network's IPv6 prefix length. */
export function gateway6Of(slice6: string, network6: string): { ip6: string; prefixLen6: number } {
  return { ip6: formatIp6(parseCidr6(slice6)!.base + 1n), prefixLen6: parseCidr6(network6)!.prefix };
}

/** this host's IPv6 gateway on a network (undefined: IPv4 only, or no slice yet) */
export function hostGateway6Of(s: Snapshot, network: string): { ip6: string; prefixLen6: number } | undefined {
  const net = s.networks.find((n) => n.name === network);
  const slice = s.slices.find((x) => x.network === network);
  return net?.ipv6Cidr && slice?.ipv6Cidr ? gateway6Of(slice.ipv6Cidr, net.ipv6Cidr) : undefined;
}

/** this host's gateway on a network (undefined: no such network or no slice of it yet) */
export function hostGatewayOf(s: Snapshot, network: string): { ip: string; prefixLen: number } | undefined {
  const net = s.networks.find((n) => n.name === network);
  const slice = s.slices.find((x) => x.network === network);
  return net && slice ? gatewayOf(slice.cidr, net.cidr) : undefined;
}

export function computeDesired(s: Snapshot, p: AgentParams): DesiredPlane {
  // GRE cannot change the outer family: an IPv4-underlay host and an IPv6-underlay one get no tunnel
  const family = underlayFamily(s.underlayIp);
  const type = family === 6 ? ('ip6gre' as const) : ('gre' as const);
  const others = s.peers.filter((x) => x.name !== s.host && x.underlayIp !== s.underlayIp);
  const crossFamily = others.filter((x) => underlayFamily(x.underlayIp) !== family).map((x) => x.name);
  const tunnels = others
    .filter((x) => family !== undefined && underlayFamily(x.underlayIp) === family)
    .flatMap((x) => {
      if (!s.encryption) return [{ port: tunnelPortName(x.underlayIp), remoteIp: x.underlayIp, peer: x.name, type }];
      // encrypted: GRE between tunnel IPs only, and only once this host's WireGuard carries
      // them (fail closed: no tunnel rather than one in cleartext) and the peer has a key
      if (!p.wireguardReady?.() || !x.wireguard) return [];
      return [
        { port: tunnelPortName(x.underlayIp), remoteIp: x.wireguard.tunnelIp, peer: x.name, type: 'gre' as const },
      ];
    })
    .sort((a, b) => a.port.localeCompare(b.port));
  const mtu: Record<string, number> = {};
  const gateways: GatewaySpec[] = [];
  for (const n of [...s.networks].sort((a, b) => a.greKey - b.greKey)) {
    mtu[n.name] = containerMtu(n.mtu, tunnelMtu(s, p.underlayMtu));
    const slice = s.slices.find((x) => x.network === n.name);
    if (!slice) continue;
    const gw = gatewayOf(slice.cidr, n.cidr);
    gateways.push({
      port: gatewayPortName(n.greKey),
      network: n.name,
      greKey: n.greKey,
      ip: gw.ip,
      prefixLen: gw.prefixLen,
      mac: macFromIp(parseIp(gw.ip)!),
      mtu: mtu[n.name]!,
      ...(n.ipv6Cidr && slice.ipv6Cidr ? gateway6Of(slice.ipv6Cidr, n.ipv6Cidr) : {}),
    });
  }
  return { bridge: p.bridge, datapath: p.datapath, tunnels, gateways, mtu, crossFamily };
}

/** Container ports: any interface on the bridge whose external_ids name a network, IP and MAC. */
export function localPorts(o: OvsState, bridge: string, d: DesiredPlane): LocalPort[] {
  const gws = new Map(d.gateways.map((g) => [g.port, g]));
  const out: LocalPort[] = [];
  for (const i of o.interfaces) {
    if (i.bridge !== bridge || i.ofport <= 0) continue;
    const gw = gws.get(i.name);
    if (gw) {
      out.push({
        port: i.name,
        network: gw.network,
        ip: gw.ip,
        mac: gw.mac,
        gateway: true,
        containerId: '',
        ...(gw.ip6 ? { ip6: gw.ip6 } : {}),
      });
      continue;
    }
    const b = parseBinding(i.externalIds);
    if (!b) continue;
    out.push({
      port: i.name,
      network: b.network,
      ip: b.ip,
      mac: b.mac,
      gateway: false,
      containerId: b.containerId,
      containerName: b.name,
      names: b.names,
      ...(b.group ? { group: b.group } : {}),
      ...(b.ip6 ? { ip6: b.ip6 } : {}),
    });
  }
  return out.sort((a, b) => a.port.localeCompare(b.port));
}

/** The pipeline's tables (agent/ovs/flows/pipeline.ts), by their old names */
export { TABLE_NAMES, TABLES as TABLE } from '../ovs/flows/pipeline.js';

/** Pure: the actions that turn an ARP request for ip into the reply from mac, sent back where it came from. */
export function arpReply(mac: string, ip: string): Action[] {
  const macValue = BigInt(`0x${mac.replace(/:/g, '')}`);
  return [
    act.move('NXM_OF_ETH_SRC', 'NXM_OF_ETH_DST'),
    act.load('NXM_OF_ETH_SRC', macValue),
    act.load('NXM_OF_ARP_OP', 2),
    act.move('NXM_NX_ARP_SHA', 'NXM_NX_ARP_THA'),
    act.move('NXM_OF_ARP_SPA', 'NXM_OF_ARP_TPA'),
    act.load('NXM_NX_ARP_SHA', macValue),
    act.load('NXM_OF_ARP_SPA', BigInt(`0x${ipHex(parseIp(ip)!)}`)),
    act.inPort(),
  ];
}

/** ND option: none (nd_sll/nd_tll of a message without a link-layer address option) */
const NO_MAC = '00:00:00:00:00:00';
/** NA flags: solicited + override, and router for the gateway (RFC 4861 4.4) */
const NA_SOLICITED_OVERRIDE = 0x60000000;
const NA_ROUTER = 0x80000000;
const ICMP6 = 58;
export const ICMP6_TYPE = { rs: 133, ra: 134, ns: 135, na: 136, redirect: 137 } as const;
/** IPv6 multicast MACs (33:33:...): where neighbour solicitations go */
const IPV6_MULTICAST = { dlDst: '33:33:00:00:00:00', dlDstMask: 'ff:ff:00:00:00:00' };

/**
 * Pure: the first half of the ND responder (the counterpart of arpReply): a neighbour
 * solicitation for ip6 becomes the advertisement from mac, addressed to the asker; the
 * ndReply table then writes the target link-layer address (OVS takes nd_tll only on a
 * packet that already is an advertisement) and sends it back where it came from.
 */
export function ndReply(mac: string, ip6: string, router: boolean): Action[] {
  return [
    act.move('NXM_OF_ETH_SRC', 'NXM_OF_ETH_DST'),
    act.load('NXM_OF_ETH_SRC', BigInt(`0x${mac.replace(/:/g, '')}`)),
    act.move('NXM_NX_IPV6_SRC', 'NXM_NX_IPV6_DST'),
    act.setField('ipv6_src', parseIp6(ip6)!),
    act.setField('icmpv6_type', ICMP6_TYPE.na),
    act.setField('nd_reserved', (NA_SOLICITED_OVERRIDE | (router ? NA_ROUTER : 0)) >>> 0),
    // the solicitation's source link-layer option becomes the target link-layer option
    act.setField('nd_options_type', 2),
    act.resubmit('ndReply'),
  ];
}

/** Pure: the ND responder's two flows for one known address (network key k) */
export function ndResponderFlows(k: number, ip6: string, mac: string, router: boolean): Flow[] {
  const nd = { reg6: k, ethType: 'ip6' as const, ipProto: ICMP6, ndTarget: ip6 };
  return [
    flow(
      'forward',
      PRIORITY.arpResponder,
      { ...nd, reg7: 0, ...IPV6_MULTICAST, icmp6Type: ICMP6_TYPE.ns },
      ndReply(mac, ip6, router),
    ),
    flow('ndReply', PRIORITY.port, { ...nd, icmp6Type: ICMP6_TYPE.na }, [
      act.setField('ipv6_nd_tll', BigInt(`0x${mac.replace(/:/g, '')}`)),
      act.inPort(),
    ]),
  ];
}

/**
 * Pure: port security for a dual-stack container: IPv6 only from its own address and its
 * link-local (EUI-64 of its MAC); no router advertisements or redirects; neighbour
 * solicitations and advertisements only from those, an advertisement only for them, and
 * a link-layer option (if any) only with its own MAC. DAD from :: is dropped (no other
 * port may hold its addresses: nothing to detect).
 */
export function ipv6PortSecurity(port: string, mac: string, ip6: string): Flow[] {
  const out: Flow[] = [];
  const from = { inPort: port, dlSrc: mac };
  const icmp6 = { ...from, ethType: 'ip6' as const, ipProto: ICMP6 };
  const own = [ip6, linkLocalOf(mac)];
  const fwd = [act.resubmit('forward')];
  for (const t of [ICMP6_TYPE.ra, ICMP6_TYPE.ns, ICMP6_TYPE.na, ICMP6_TYPE.redirect])
    out.push(flow('portSecurity', PRIORITY.port + 1, { inPort: port, ethType: 'ip6', ipProto: ICMP6, icmp6Type: t }));
  for (const src of own) {
    out.push(flow('portSecurity', PRIORITY.port, { ...from, ethType: 'ip6', ipv6Src: src }, fwd));
    for (const sll of [mac, NO_MAC])
      out.push(
        flow('portSecurity', PRIORITY.port + 2, { ...icmp6, ipv6Src: src, icmp6Type: ICMP6_TYPE.ns, ndSll: sll }, fwd),
      );
    for (const target of own)
      for (const tll of [mac, NO_MAC])
        out.push(
          flow(
            'portSecurity',
            PRIORITY.port + 2,
            { ...icmp6, ipv6Src: src, icmp6Type: ICMP6_TYPE.na, ndTarget: target, ndTll: tll },
            fwd,
          ),
        );
  }
  return out;
}

/** the group-address bit of a destination MAC: broadcast and multicast */
const GROUP = { dlDst: '01:00:00:00:00:00', dlDstMask: '01:00:00:00:00:00' };

/**
 * The OpenFlow pipeline (ports by name; resolvePorts gives their numbers). Loop-free by
 * construction: reg7=1 marks a frame that came from a tunnel, and such frames only
 * ever go to local ports.
 *   classify: local port -> reg6=network key, to portSecurity; tunnel+key -> reg6, reg7=1, to forward
 *   portSecurity: a container sends only from its own MAC and IP (ARP too)
 *   forward: ARP for a known address answered by the bridge (from a local port);
 *            local MAC -> its port; remote endpoint MAC -> its peer's tunnel;
 *            broadcast/multicast from local -> local ports + every tunnel once;
 *            from a tunnel -> local ports only; unknown unicast from local -> tunnels
 */
export function computeFlows(s: Snapshot, d: DesiredPlane, locals: LocalPort[], presentTunnels: Set<string>): Flow[] {
  const keyOf = new Map(s.networks.map((n) => [n.name, n.greKey]));
  const tunnels = d.tunnels.filter((t) => presentTunnels.has(t.port));
  const tunnelOf = new Map(d.tunnels.map((t) => [t.peer, t.port]));
  const f: Flow[] = [];
  const add = (table: TableName, prio: number, match: Match, actions: Action[]) =>
    f.push(flow(table, prio, match, actions));
  // policed networks (agent/bridge/policy-flows.ts): frames for local ports go through policy
  const policed = policedNetworks(s, locals);
  const keyed = new Map([...policed.values()].map((p) => [p.key, p]));

  // ARP responder (l2pop, as Neutron's br-tun): a request from a local port for an address
  // the bridge knows is answered by the bridge itself, from the owner's MAC: no broadcast to
  // every port and tunnel, no round trip to the peer before the first packet
  const answered = new Set<string>();
  const arpResponder = (k: number, ip: string, mac: string) => {
    if (answered.has(`${k}/${ip}`)) return;
    answered.add(`${k}/${ip}`);
    add(
      'forward',
      PRIORITY.arpResponder,
      { reg7: 0, reg6: k, ethType: 'arp', arpOp: 1, arpTpa: ip },
      arpReply(mac, ip),
    );
  };
  // its IPv6 counterpart: a multicast neighbour solicitation for a known IPv6 address is
  // answered here (two tables: see ndReply), never flooded to every host
  const ndAnswered = new Set<string>();
  const ndResponder = (k: number, ip6: string | undefined, mac: string, router: boolean) => {
    if (!ip6 || ndAnswered.has(`${k}/${ip6}`)) return;
    ndAnswered.add(`${k}/${ip6}`);
    f.push(...ndResponderFlows(k, ip6, mac, router));
  };
  for (const lp of locals) {
    const k = keyOf.get(lp.network);
    if (k === undefined) continue;
    arpResponder(k, lp.ip, lp.mac);
    ndResponder(k, lp.ip6, lp.mac, lp.gateway);
    add('classify', PRIORITY.port, { inPort: lp.port }, [act.load(REG_NETWORK, k), act.resubmit('portSecurity')]);
    const from = { inPort: lp.port, dlSrc: lp.mac };
    if (lp.gateway) {
      add('portSecurity', PRIORITY.port, from, [act.resubmit('forward')]);
    } else {
      add('portSecurity', PRIORITY.port, { ...from, ethType: 'ip', nwSrc: lp.ip }, [act.resubmit('forward')]);
      add('portSecurity', PRIORITY.port, { ...from, ethType: 'arp', arpSpa: lp.ip, arpSha: lp.mac }, [
        act.resubmit('forward'),
      ]);
      if (lp.ip6) f.push(...ipv6PortSecurity(lp.port, lp.mac, lp.ip6));
    }
    const policy = keyed.get(k);
    if (!policy) {
      add('forward', PRIORITY.port, { reg6: k, dlDst: lp.mac }, [act.output(lp.port)]);
      continue;
    }
    const dst = lp.gateway ? GROUP_ID.gateway : groupId(policy, lp.group);
    add('forward', PRIORITY.port, { reg6: k, dlDst: lp.mac }, [act.load(REG_DST_GROUP, dst), act.resubmit('policy')]);
    add('deliver', PRIORITY.port, { reg6: k, dlDst: lp.mac }, [act.output(lp.port)]);
  }
  for (const p of policed.values()) {
    const endpoints = [
      ...locals.filter((l) => l.network === p.network && !l.gateway),
      ...s.peers.flatMap((x) => x.endpoints.filter((e) => e.network === p.network)),
    ];
    f.push(...networkPolicyFlows(p, endpoints));
  }
  for (const t of tunnels) {
    for (const n of s.networks)
      add('classify', PRIORITY.port, { inPort: t.port, tunId: n.greKey }, [
        act.load(REG_NETWORK, n.greKey),
        act.load(REG_FROM_TUNNEL, 1),
        act.resubmit('forward'),
      ]);
  }
  const present = new Set(tunnels.map((t) => t.port));
  // a MAC claimed by two peers (or by a peer and a local port) goes nowhere by unicast: no
  // host can steal another's traffic by reporting its MAC; group addresses are never unicast
  const claims = new Map<string, number>();
  const claim = (network: string, mac: string) =>
    claims.set(`${network}/${mac}`, (claims.get(`${network}/${mac}`) ?? 0) + 1);
  for (const p of s.peers) for (const e of p.endpoints) claim(e.network, e.mac);
  for (const l of locals) claim(l.network, l.mac);
  for (const p of s.peers) {
    const port = tunnelOf.get(p.name);
    if (!port || !present.has(port)) continue;
    for (const e of p.endpoints) {
      const k = keyOf.get(e.network);
      if (k === undefined || !isUnicastMac(e.mac)) continue;
      if ((claims.get(`${e.network}/${e.mac}`) ?? 0) > 1) continue;
      add('forward', PRIORITY.remoteMac, { reg7: 0, reg6: k, dlDst: e.mac }, [act.setTunnel(k), act.output(port)]);
      // policed: the connection committed here too, so its replies come back established
      if (keyed.has(k))
        add('forward', PRIORITY.remoteMac + 1, { reg7: 0, reg6: k, ethType: 'ip', dlDst: e.mac }, [
          act.ct({ commit: true, zone: k }),
          act.setTunnel(k),
          act.output(port),
        ]);
      if (parseIp(e.ip) !== undefined) arpResponder(k, e.ip, e.mac);
      if (e.ip6 && parseIp6(e.ip6) !== undefined) ndResponder(k, e.ip6, e.mac, false);
    }
  }
  for (const n of [...s.networks].sort((a, b) => a.greKey - b.greKey)) {
    const k = n.greKey;
    const localOut = locals.filter((l) => l.network === n.name).map((l) => act.output(l.port));
    const tunOut = tunnels.length ? [act.setTunnel(k), ...tunnels.map((t) => act.output(t.port))] : [];
    const fromLocal = [...localOut, ...tunOut];
    if (fromLocal.length) add('forward', PRIORITY.flood, { reg7: 0, reg6: k, ...GROUP }, fromLocal);
    if (localOut.length) add('forward', PRIORITY.flood, { reg7: 1, reg6: k, ...GROUP }, localOut);
    if (tunOut.length) add('forward', PRIORITY.unknownUnicast, { reg7: 0, reg6: k }, tunOut);
    const policy = keyed.get(k);
    if (!policy) continue;
    // policed: IP sent by unknown unicast is committed too (its replies come back established);
    // IP broadcast and multicast never reach a container of an isolated network (ARP still floods)
    if (tunOut.length)
      add('forward', PRIORITY.unknownUnicast + 1, { reg7: 0, reg6: k, ethType: 'ip' }, [
        act.ct({ commit: true, zone: k }),
        ...tunOut,
      ]);
    if (policy.isolation === 'groups') add('forward', PRIORITY.flood + 1, { reg6: k, ethType: 'ip', ...GROUP }, []);
  }
  // the policy tables exist (their misses drop) only while a network is policed
  const policyTables: TableName[] = ['policy', 'policyRules', 'deliver'];
  const dualStack = s.networks.some((n) => n.ipv6Cidr);
  for (const t of Object.keys(TABLES) as TableName[]) {
    if (t === 'ndReply' ? !dualStack : !policed.size && policyTables.includes(t)) continue;
    add(t, PRIORITY.miss, {}, []);
  }
  return f;
}

// ------------------------------------------------------------------ OVS diff

export const BRIDGE_PROTOCOLS = ['OpenFlow10', 'OpenFlow13', 'OpenFlow14'];

/**
 * Pure: the typed OVS operations (one transaction) that take what OVS shows to the
 * desired plane. Removes only what carries our owner mark; never touches container
 * ports made by others.
 */
export function diffOvs(d: DesiredPlane, o: OvsState): OvsOp[] {
  const ops: OvsOp[] = [];
  const br = o.bridges.find((b) => b.name === d.bridge);
  if (
    !br ||
    br.datapathType !== d.datapath ||
    br.failMode !== 'secure' ||
    br.protocols.join(',') !== BRIDGE_PROTOCOLS.join(',') ||
    !isOwned(br.externalIds)
  ) {
    ops.push({
      op: 'ensure-bridge',
      bridge: d.bridge,
      datapath: d.datapath,
      failMode: 'secure',
      protocols: BRIDGE_PROTOCOLS,
      externalIds: owned(),
    });
  }
  const onBridge = new Map<string, OvsInterface>();
  for (const i of o.interfaces) if (i.bridge === d.bridge) onBridge.set(i.name, i);

  for (const t of d.tunnels) {
    const cur = onBridge.get(t.port);
    const iface = {
      type: t.type,
      options: { remote_ip: t.remoteIp, key: 'flow' },
      bfd: { enable: 'true' },
      externalIds: tunnelIds(t.peer),
    };
    if (!cur) {
      ops.push({ op: 'add-port', bridge: d.bridge, port: t.port, iface, portExternalIds: owned() });
    } else if (
      cur.type !== t.type ||
      cur.options.remote_ip !== t.remoteIp ||
      cur.options.key !== 'flow' ||
      cur.externalIds[PEER_KEY] !== t.peer ||
      !isOwned(cur.externalIds)
    ) {
      ops.push({ op: 'set-interface', name: t.port, iface });
    }
  }
  for (const g of d.gateways) {
    const cur = onBridge.get(g.port);
    const iface = { type: 'internal', mac: g.mac, mtuRequest: g.mtu, externalIds: gatewayIds(g.network, g.ip, g.mac) };
    if (!cur) {
      ops.push({ op: 'add-port', bridge: d.bridge, port: g.port, iface, portExternalIds: owned() });
    } else if (
      cur.type !== 'internal' ||
      cur.externalIds[IP_KEY] !== g.ip ||
      cur.externalIds[NETWORK_KEY] !== g.network ||
      cur.mtu !== g.mtu ||
      cur.macInUse !== g.mac
    ) {
      ops.push({ op: 'set-interface', name: g.port, iface });
    }
  }
  const wanted = new Set([...d.tunnels.map((t) => t.port), ...d.gateways.map((g) => g.port)]);
  for (const i of onBridge.values()) {
    const ours =
      isOwned(i.externalIds) && (i.name.startsWith('gre-') || i.name.startsWith('gr6-') || i.name.startsWith('gmgw'));
    if (ours && !wanted.has(i.name)) ops.push({ op: 'delete-port', bridge: d.bridge, port: i.name });
  }
  return ops;
}

/**
 * Endpoints worth telling peers about: those inside this host's slice of their network
 * (an IPv6 address outside the IPv6 slice is left out, the endpoint is not).
 */
export function reportableEndpoints(
  locals: LocalPort[],
  slices: { network: string; cidr: string; ipv6Cidr?: string }[],
): LocalPort[] {
  return locals.flatMap((l) => {
    const s = slices.find((x) => x.network === l.network);
    const ip = parseIp(l.ip);
    if (s === undefined || ip === undefined || !cidrContains(parseCidr(s.cidr)!, ip)) return [];
    if (!l.ip6) return [l];
    const six = s.ipv6Cidr ? parseCidr6(s.ipv6Cidr) : undefined;
    const ip6 = parseIp6(l.ip6);
    if (six && ip6 !== undefined && cidr6Contains(six, ip6)) return [l];
    const { ip6: _dropped, ...rest } = l;
    return [rest];
  });
}
