// This host's underlay: the tunnel address (given, or the source the kernel picks to
// reach the coordinator), its device, address and gateway routes, remembered across
// restarts in STATE_DIR/underlay.json (the userspace datapath moves the address onto
// an OVS port, where a restart of ovs-vswitchd loses it).
import { readJson, writeFileAtomic } from '../state-file.js';
import type { UnderlayKeeper } from '../bridge/reconciler.js';
import type { LinkDriver } from './link-driver.js';

export type Underlay = UnderlayKeeper & { mtu: number };

/** The tunnel address: the one given, else the local source toward the first coordinator. */
export async function findUnderlayIp(links: LinkDriver, coordinator: string, given?: string): Promise<string> {
  if (given) return given;
  const ip = (await links.sourceFor(coordinator.split(',')[0]!.replace(/:\d+$/, ''))) ?? '';
  if (!ip) throw new Error(`cannot find a local address that reaches ${coordinator}; pass --underlay-ip`);
  return ip;
}

/**
 * The underlay device as the kernel has it now, with the remembered routes when it has
 * none (they sit on a vanished OVS port), else as remembered; written back when known.
 */
export async function keepUnderlay(links: LinkDriver, stateDir: string, ip: string): Promise<Underlay | undefined> {
  const ufile = `${stateDir}/underlay.json`;
  const found = await links.underlayOf(ip);
  let underlay: Underlay | undefined = found
    ? { dev: found.dev, cidr: found.cidr, routes: found.routes, mtu: found.mtu }
    : readJson(ufile);
  if (found && found.routes.length === 0)
    underlay = { ...found, routes: readJson<UnderlayKeeper>(ufile)?.routes ?? [] };
  if (underlay) writeFileAtomic(ufile, JSON.stringify(underlay));
  return underlay;
}
