// Pure: the nftables ruleset that makes each network's gateway a way out: traffic
// from a network's CIDR to anywhere outside it is masqueraded out of the host; from
// outside only replies come back in; networks never forward into each other. The
// gateway is no way into the host itself: from a gateway port the host accepts ARP
// (not IP, so not filtered here), ICMP and replies, and whatever the operator opened
// with --gateway-allow; link-local addresses (169.254.0.0/16: cloud metadata services)
// are not forwarded unless opened too.
import type { GatewaySpec } from '../bridge/desired.js';
import { commaList } from '../../common/text.js';

export const NFT_TABLE = 'gremesh';
/** the tables that keep the host stack away from container veths (userspace datapath) */
export const NFT_PORTS_TABLE = 'gremesh_ports';
/** container veths on the host side (`gm` + 11 hex digits); gateways are `gmgw*` */
const CONTAINER_VETH = 'iifname "gm*" iifname != "gmgw*"';
export const LINK_LOCAL = '169.254.0.0/16';

/** What --gateway-allow opens: a TCP/UDP port on the host's gateway addresses, or forwarding to link-local. */
export type GatewayAllow = { proto: 'tcp' | 'udp'; port: number } | { linkLocal: true };

/** Parses `tcp/53,udp/53,link-local`; returns an error message for bad input. */
export function parseGatewayAllow(v: string): GatewayAllow[] | string {
  const out: GatewayAllow[] = [];
  for (const item of commaList(v)) {
    if (item === 'link-local') {
      out.push({ linkLocal: true });
      continue;
    }
    const m = /^(tcp|udp)\/(\d{1,5})$/.exec(item);
    if (!m || Number(m[2]) < 1 || Number(m[2]) > 65535)
      return `--gateway-allow takes tcp/PORT, udp/PORT or link-local, comma-separated; got "${item}"`;
    out.push({ proto: m[1] as 'tcp' | 'udp', port: Number(m[2]) });
  }
  return out;
}

/**
 * Pure: the IPv6 half (NAT66): the same way out for a dual-stack network's IPv6 prefix,
 * masqueraded to the host's own IPv6 address (the outside needs no route to any slice);
 * from a gateway port the host takes ICMPv6 (neighbour discovery, echo), replies and what
 * --gateway-allow opens. No dual-stack gateway: the table goes.
 */
export function ipv6Table(
  gateways: (GatewaySpec & { networkCidr6?: string })[],
  ports: { proto: 'tcp' | 'udp'; port: number }[],
): string[] {
  const six = gateways.filter((g) => g.ip6 && g.networkCidr6);
  if (!six.length) return [`table ip6 ${NFT_TABLE}`, `delete table ip6 ${NFT_TABLE}`];
  const post = six.map(
    (g) => `ip6 saddr ${g.networkCidr6} ip6 daddr != ${g.networkCidr6} oifname != "gmgw*" masquerade`,
  );
  const fwd = [
    'iifname "gmgw*" oifname "gmgw*" drop',
    'iifname "gmgw*" meta l4proto gre drop',
    ...six.flatMap((g) => [
      `iifname "${g.port}" ip6 saddr ${g.networkCidr6} accept`,
      `oifname "${g.port}" ct state established,related accept`,
      `oifname "${g.port}" drop`,
    ]),
    'iifname "gmgw*" drop',
  ];
  const input = [
    'iifname "gmgw*" ct state established,related accept',
    'iifname "gmgw*" meta l4proto ipv6-icmp accept',
    ...ports.map((p) => `iifname "gmgw*" ${p.proto} dport ${p.port} accept`),
    'iifname "gmgw*" drop',
  ];
  return gatewayTable('ip6', { pre: [], post, fwd, input });
}

/**
 * Pure: our gateways' table of one family, replaced whole ("add", "delete", then the table:
 * one atomic nft transaction whether or not it existed): prerouting (only with rules),
 * postrouting, forward and input chains.
 */
function gatewayTable(
  family: 'ip' | 'ip6',
  c: { pre: string[]; post: string[]; fwd: string[]; input: string[] },
): string[] {
  const chain = (name: string, hook: string, rules: string[]) => [
    `  chain ${name} {`,
    `    ${hook}; policy accept;`,
    ...rules.map((r) => `    ${r}`),
    '  }',
  ];
  return [
    `table ${family} ${NFT_TABLE}`,
    `delete table ${family} ${NFT_TABLE}`,
    `table ${family} ${NFT_TABLE} {`,
    ...(c.pre.length ? chain('prerouting', 'type nat hook prerouting priority dstnat', c.pre) : []),
    ...chain('postrouting', 'type nat hook postrouting priority srcnat', c.post),
    ...chain('forward', 'type filter hook forward priority filter', c.fwd),
    ...chain('input', 'type filter hook input priority filter', c.input),
    '}',
  ];
}

/**
 * With the userspace datapath (`userspacePorts`), OVS reads a container's veth through a
 * packet socket, so the host's own stack sees the container's frames too: it would answer
 * the container's ARP for the gateway's address with the veth's MAC and route its
 * packets. Two static rules drop them after the packet socket has had its copy (taps run
 * before netfilter): ARP at input, IPv4/IPv6 at prerouting (before conntrack), for every
 * container veth by name, so an attach adds no rule. (The kernel datapath takes the
 * frames before the host stack: nothing to drop there.)
 */
export function computeNftRuleset(
  gateways: (GatewaySpec & { networkCidr: string; networkCidr6?: string })[],
  allow: GatewayAllow[] = [],
  userspacePorts = false,
  dns?: { upstreams: { ip: string }[] },
  /** encryption on the kernel datapath: GRE is taken only from this WireGuard device (not straight off the underlay) */
  greOnlyFrom?: string,
): string {
  const pre: string[] = [];
  const post: string[] = [];
  const fwd: string[] = [];
  const input: string[] = [];
  const linkLocal = allow.some((a) => 'linkLocal' in a);
  const ports = allow.filter((a): a is { proto: 'tcp' | 'udp'; port: number } => 'proto' in a);
  if (gateways.length) {
    fwd.push('iifname "gmgw*" oifname "gmgw*" drop');
    // a container's GRE, masqueraded to this host's underlay address, would reach a peer as
    // genuine tunnel traffic from us: never forward it
    fwd.push('iifname "gmgw*" meta l4proto gre drop');
    if (!linkLocal) fwd.push(`iifname "gmgw*" ip daddr ${LINK_LOCAL} drop`);
    // names (agent/dns): what a network's containers ask the host's upstream servers goes to
    // the resolver on their gateway, which answers only them (not the underlay, not other networks)
    if (dns)
      for (const g of gateways) {
        const ns53 = `meta l4proto { tcp, udp } th dport 53`;
        const servers = [...new Set(dns.upstreams.map((u) => u.ip))].join(', ');
        if (servers)
          pre.push(`iifname "${g.port}" ip saddr ${g.networkCidr} ip daddr { ${servers} } ${ns53} dnat to ${g.ip}`);
        input.push(`ip daddr ${g.ip} ${ns53} iifname != "${g.port}" drop`);
        input.push(`iifname "${g.port}" ip saddr ${g.networkCidr} ip daddr ${g.ip} ${ns53} accept`);
      }
    input.push('iifname "gmgw*" ct state established,related accept');
    input.push('iifname "gmgw*" ip protocol icmp accept');
    for (const p of ports) input.push(`iifname "gmgw*" ${p.proto} dport ${p.port} accept`);
    input.push('iifname "gmgw*" drop');
  }
  if (greOnlyFrom) input.push(`meta l4proto gre iifname != "${greOnlyFrom}" drop`);
  for (const g of gateways) {
    post.push(`ip saddr ${g.networkCidr} ip daddr != ${g.networkCidr} oifname != "gmgw*" masquerade`);
    fwd.push(`iifname "${g.port}" ip saddr ${g.networkCidr} accept`);
    fwd.push(`oifname "${g.port}" ct state established,related accept`);
    fwd.push(`oifname "${g.port}" drop`);
  }
  return [
    ...ipv6Table(gateways, ports),
    ...gatewayTable('ip', { pre, post, fwd, input }),
    // agents before this kept one netdev chain per container veth in this table
    `table netdev ${NFT_PORTS_TABLE}`,
    `delete table netdev ${NFT_PORTS_TABLE}`,
    ...(userspacePorts
      ? [
          `table inet ${NFT_PORTS_TABLE}`,
          `delete table inet ${NFT_PORTS_TABLE}`,
          `table inet ${NFT_PORTS_TABLE} {`,
          '  chain prerouting {',
          '    type filter hook prerouting priority raw; policy accept;',
          `    ${CONTAINER_VETH} drop`,
          '  }',
          '}',
          `table arp ${NFT_PORTS_TABLE}`,
          `delete table arp ${NFT_PORTS_TABLE}`,
          `table arp ${NFT_PORTS_TABLE} {`,
          '  chain input {',
          '    type filter hook input priority filter; policy accept;',
          `    ${CONTAINER_VETH} drop`,
          '  }',
          '}',
        ]
      : []),
    '',
  ].join('\n');
}
