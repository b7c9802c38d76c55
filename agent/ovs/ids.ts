// Pure: every external_id the agent writes on OVS rows, and how it is read back. The
// contract (DESIGN.md): ANY port whose Interface carries gremesh-network, gremesh-ip and
// gremesh-mac is a container port and gets the container flows, whoever plugged it; the
// agent only ever deletes ports it owns (gremesh-owner=agent).
import { canonicalIp6 } from '../../common/ipv6.js';
import { acceptedNames } from '../../common/dns-names.js';
import { normalizeGroup } from '../../common/policy.js';
import { parseIp } from '../../common/ipv4.js';

export const OWNER_KEY = 'gremesh-owner';
export const OWNER = 'agent';
export const PEER_KEY = 'gremesh-peer';
export const NETWORK_KEY = 'gremesh-network';
export const IP_KEY = 'gremesh-ip';
/** dual-stack: the port's IPv6 address */
export const IP6_KEY = 'gremesh-ip6';
export const MAC_KEY = 'gremesh-mac';
export const CONTAINER_ID_KEY = 'container_id';
export const PID_KEY = 'gremesh-pid';
export const CONTAINER_NAME_KEY = 'gremesh-container';
/** the container's DNS names in its network, comma-separated (absent: none) */
export const NAMES_KEY = 'gremesh-names';
/** the container's policy group (gremesh.group; absent: none) */
export const GROUP_KEY = 'gremesh-group';
/** a port plugged for one of Docker's endpoints (the network plugin): its endpoint id */
export const ENDPOINT_KEY = 'gremesh-endpoint';

export const owned = (): Record<string, string> => ({ [OWNER_KEY]: OWNER });

export function isOwned(ids: Record<string, string>): boolean {
  return ids[OWNER_KEY] === OWNER;
}

export function tunnelIds(peer: string): Record<string, string> {
  return { ...owned(), [PEER_KEY]: peer };
}

export function gatewayIds(network: string, ip: string, mac: string): Record<string, string> {
  return { ...owned(), [NETWORK_KEY]: network, [IP_KEY]: ip, [MAC_KEY]: mac };
}

export interface ContainerBinding {
  containerId: string;
  network: string;
  ip: string;
  mac: string;
  /** dual-stack: its IPv6 address */
  ip6?: string;
}

export function containerIds(
  b: ContainerBinding & { pid: number; name: string; names?: string[]; group?: string },
): Record<string, string> {
  return {
    ...owned(),
    [CONTAINER_ID_KEY]: b.containerId,
    [NETWORK_KEY]: b.network,
    [IP_KEY]: b.ip,
    ...(b.ip6 ? { [IP6_KEY]: b.ip6 } : {}),
    [MAC_KEY]: b.mac,
    [PID_KEY]: String(b.pid),
    [CONTAINER_NAME_KEY]: b.name,
    ...(b.names?.length ? { [NAMES_KEY]: b.names.join(',') } : {}),
    ...(b.group ? { [GROUP_KEY]: b.group } : {}),
  };
}

/**
 * A Docker endpoint's port (the plugin path): the same binding as a container's, plus the
 * endpoint id; the container's id, name and PID once Docker has said which container it is.
 */
export function endpointIds(
  e: { id: string; network: string; ip: string; mac: string; ip6?: string },
  c: { id: string; name: string; pid: number; names?: string[]; group?: string } | undefined,
): Record<string, string> {
  return {
    ...containerIds({
      containerId: c?.id ?? '',
      network: e.network,
      ip: e.ip,
      ip6: e.ip6,
      mac: e.mac,
      pid: c?.pid ?? 0,
      name: c?.name ?? '',
      names: c?.names,
      group: c?.group,
    }),
    [ENDPOINT_KEY]: e.id,
  };
}

/** The binding of a container port (plugged by us or by anything else), or undefined if it is none or malformed. */
export function parseBinding(
  ids: Record<string, string>,
): (ContainerBinding & { name: string; names: string[]; group?: string }) | undefined {
  const network = ids[NETWORK_KEY];
  const ip = ids[IP_KEY];
  const mac = ids[MAC_KEY];
  if (!network || !ip || !mac) return undefined;
  if (parseIp(ip) === undefined || !/^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/.test(mac)) return undefined;
  const ip6 = ids[IP6_KEY] ? canonicalIp6(ids[IP6_KEY]) : undefined;
  return {
    network,
    ip,
    mac,
    ...(ip6 ? { ip6 } : {}),
    containerId: ids[CONTAINER_ID_KEY] ?? '',
    name: ids[CONTAINER_NAME_KEY] ?? '',
    names: acceptedNames((ids[NAMES_KEY] ?? '').split(',').filter(Boolean)),
    ...(normalizeGroup(ids[GROUP_KEY]) ? { group: normalizeGroup(ids[GROUP_KEY]) } : {}),
  };
}
