// Pure: the nftables ruleset that makes each network's gateway a way out: traffic
// from a network's CIDR to anywhere outside it is masqueraded out of the host; from
// outside only replies come back in; networks never forward into each other.
import type { GatewaySpec } from './desired.js';

export const NFT_TABLE = 'gremesh';

export function computeNftRuleset(gateways: (GatewaySpec & { networkCidr: string })[]): string {
  const post: string[] = [];
  const fwd: string[] = [];
  if (gateways.length) {
    fwd.push('iifname "gmgw*" oifname "gmgw*" drop');
    // a container's GRE, masqueraded to this host's underlay address, would reach a peer as
    // genuine tunnel traffic from us: never forward it
    fwd.push('iifname "gmgw*" meta l4proto gre drop');
  }
  for (const g of gateways) {
    post.push(`ip saddr ${g.networkCidr} ip daddr != ${g.networkCidr} oifname != "gmgw*" masquerade`);
    fwd.push(`iifname "${g.port}" ip saddr ${g.networkCidr} accept`);
    fwd.push(`oifname "${g.port}" ct state established,related accept`);
    fwd.push(`oifname "${g.port}" drop`);
  }
  // "add" then "delete" then the table: one atomic nft transaction whether or not it existed
  return [
    `table ip ${NFT_TABLE}`,
    `delete table ip ${NFT_TABLE}`,
    `table ip ${NFT_TABLE} {`,
    '  chain postrouting {',
    '    type nat hook postrouting priority srcnat; policy accept;',
    ...post.map((r) => `    ${r}`),
    '  }',
    '  chain forward {',
    '    type filter hook forward priority filter; policy accept;',
    ...fwd.map((r) => `    ${r}`),
    '  }',
    '}',
    '',
  ].join('\n');
}
