// Forwarding through a Docker host's own firewall. A dockerd with its defaults
// (iptables on) sets the `filter FORWARD` policy to DROP and sends forwarded traffic
// through its chains; an accept in gremesh's own nftables table cannot override that
// drop (every base chain on a hook must accept). Docker leaves one chain to the
// operator, DOCKER-USER, which it jumps to first and never rewrites: gremesh puts two
// rules at its top (from a gateway port out, and replies back in), marked with the
// comment "gremesh", and takes them out when it no longer owns a gateway. Security
// stays in gremesh's own table (no forwarding between networks, no GRE, no link-local),
// which still sees every packet. No Docker chain (no dockerd, or --iptables=false):
// nothing to do, and nothing is made.
import { ExecError, type Runner } from '../../common/exec.js';

export const DOCKER_USER = 'DOCKER-USER';
export const RULE_COMMENT = 'gremesh';

/** Pure: our rules in DOCKER-USER as `iptables -S` prints them (without `-A DOCKER-USER`). */
export function computeDockerUserRules(active: boolean): string[] {
  if (!active) return [];
  return [
    `-i gmgw+ ! -o gmgw+ -m comment --comment ${RULE_COMMENT} -j ACCEPT`,
    `-o gmgw+ -m conntrack --ctstate RELATED,ESTABLISHED -m comment --comment ${RULE_COMMENT} -j ACCEPT`,
  ];
}

export interface DockerUserDiff {
  /** rules to insert at the top, in this order */
  add: string[];
  /** our rules to delete (stale, duplicated or out of order) */
  del: string[];
}

/**
 * Pure: from `iptables -S DOCKER-USER` output, what to change so our rules are the
 * chain's first ones, once each, in order. Rules of others are never touched.
 */
export function diffDockerUser(listing: string, want: string[]): DockerUserDiff {
  const rules = listing
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l.startsWith(`-A ${DOCKER_USER} `))
    .map((l) => l.slice(`-A ${DOCKER_USER} `.length));
  const ours = rules.filter((r) => r.includes(`--comment ${RULE_COMMENT} `) || r.endsWith(`--comment ${RULE_COMMENT}`));
  const inPlace = want.length > 0 && want.every((w, i) => rules[i] === w) && ours.length === want.length;
  if (inPlace || (want.length === 0 && ours.length === 0)) return { add: [], del: [] };
  return { add: [...want].reverse(), del: ours };
}

/** What the agent needs of Docker's firewall: make our DOCKER-USER rules present (or absent). */
export interface DockerFirewall {
  /** returns false when this host has no DOCKER-USER chain (no Docker firewall to pass) */
  ensure(active: boolean): Promise<boolean>;
}

/** Pure: the userspace datapath's GRE between OVS and WireGuard (agent/wireguard/transport.ts), forwarded both ways. */
export function wireguardForwardRules(device: string, veth = 'gremesh-wgk'): string[] {
  return [
    `-i ${veth} -o ${device} -m comment --comment ${RULE_COMMENT} -j ACCEPT`,
    `-i ${device} -o ${veth} -m comment --comment ${RULE_COMMENT} -j ACCEPT`,
  ];
}

export class IptablesDockerFirewall implements DockerFirewall {
  constructor(
    private readonly run: Runner,
    /** more rules of ours, kept after the gateway's (encryption's forwarding) */
    private readonly extra: () => string[] = () => [],
  ) {}

  async ensure(active: boolean): Promise<boolean> {
    let list;
    try {
      list = await this.run(['iptables', '-w', '5', '-S', DOCKER_USER], { okCodes: [1, 2] });
    } catch (e) {
      if (e instanceof ExecError && e.exitCode === undefined && !e.timedOut) return false; // no iptables at all
      throw e;
    }
    if (list.exitCode !== 0) return false; // no such chain: Docker does not filter here
    const d = diffDockerUser(list.stdout, [...computeDockerUserRules(active), ...this.extra()]);
    for (const r of d.del) await this.run(['iptables', '-w', '5', '-D', DOCKER_USER, ...splitRule(r)]);
    for (const r of d.add) await this.run(['iptables', '-w', '5', '-I', DOCKER_USER, '1', ...splitRule(r)]);
    return true;
  }
}

/** `iptables -S` prints rules with single-word arguments (our comment has no spaces). */
function splitRule(r: string): string[] {
  return r.split(' ').filter(Boolean);
}
