// The bridge's container ports, as both container loops (labelled containers, Docker's
// endpoints) and the network plugin see them: pure lookups over the OVSDB replica's
// interfaces, and the two side effects they share (unplug a port, read OpenFlow numbers).
import type { LinkDriver } from '../net/link-driver.js';
import type { OvsInterface } from '../model.js';
import { CONTAINER_ID_KEY, ENDPOINT_KEY, isOwned, parseBinding } from '../ovs/ids.js';
import type { OvsDriver } from '../ovs/driver.js';

/** Pure: the ports of labelled / by-hand containers on `bridge`, by container id (not Docker's endpoints). */
export function containerPortsOf(bridge: string, all: OvsInterface[]): Map<string, OvsInterface> {
  const m = new Map<string, OvsInterface>();
  for (const i of all)
    if (
      i.bridge === bridge &&
      i.externalIds[CONTAINER_ID_KEY] &&
      !i.externalIds[ENDPOINT_KEY] &&
      isOwned(i.externalIds)
    )
      m.set(i.externalIds.container_id, i);
  return m;
}

/** Pure: the ports of Docker's endpoints on `bridge`, by endpoint id. */
export function endpointPortsOf(bridge: string, all: OvsInterface[]): Map<string, OvsInterface> {
  const m = new Map<string, OvsInterface>();
  for (const i of all)
    if (i.bridge === bridge && i.externalIds[ENDPOINT_KEY] && isOwned(i.externalIds))
      m.set(i.externalIds[ENDPOINT_KEY], i);
  return m;
}

/** Pure: who holds each MAC on `bridge`, by network ("network/mac" -> container ids). */
export function computeMacHolders(bridge: string, all: OvsInterface[]): Map<string, string[]> {
  const m = new Map<string, string[]>();
  for (const i of all) {
    const b = i.bridge === bridge ? parseBinding(i.externalIds) : undefined;
    if (b) m.set(`${b.network}/${b.mac}`, [...(m.get(`${b.network}/${b.mac}`) ?? []), b.containerId]);
  }
  return m;
}

/** A container port goes: the OVS port first, then its veth. */
export async function unplugPort(ovs: OvsDriver, links: LinkDriver, bridge: string, port: string): Promise<void> {
  await ovs.apply([{ op: 'delete-port', bridge, port }]);
  await links.deleteLink(port);
}

/** these new ports' OpenFlow numbers (-1: none yet), as onChange wants them */
export async function portNumbers(ovs: OvsDriver, bridge: string, ports: string[]): Promise<Map<string, number>> {
  const numbers = new Map(
    (await ovs.observe()).interfaces.filter((i) => i.bridge === bridge).map((i) => [i.name, i.ofport]),
  );
  return new Map(ports.map((p) => [p, numbers.get(p) ?? -1]));
}
