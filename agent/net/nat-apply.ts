// The gateways' NAT: forwarding on, the nftables ruleset loaded whole, and Docker's
// DOCKER-USER rules kept while this host owns a gateway.
import type { Runner } from '../../common/exec.js';
import type { Logger } from '../../common/log.js';
import type { LinkDriver } from './link-driver.js';

export function natApplier(
  links: LinkDriver,
  run: Runner,
  dockerFirewall: { ensure(active: boolean): Promise<boolean> },
  log: Logger,
): (ruleset: string, active: boolean) => Promise<void> {
  return async (ruleset, active) => {
    await links.sysctl('net.ipv4.ip_forward', '1');
    // NAT66 for a dual-stack network (agent/net/nat.ts ipv6Table)
    if (ruleset.includes(`table ip6 gremesh {`)) await links.sysctl('net.ipv6.conf.all.forwarding', '1');
    await run(['nft', '-f', '-'], { input: ruleset });
    if (await dockerFirewall.ensure(active)) log.debug({ active }, 'DOCKER-USER rules in place');
  };
}
