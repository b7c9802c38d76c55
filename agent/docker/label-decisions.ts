// The label loop's decisions, pure: whether a container is attached as planned, what goes
// with containers that are gone, and how long each phase of an attach took.
import type { AttachSpec } from './attachment.js';
import { isContainerHolder } from './ipam.js';
import type { OvsInterface } from '../model.js';

/** epoch ms at each step of one attach */
export interface AttachTimes {
  event: number;
  inspected: number;
  veth?: number;
  port?: number;
  flows?: number;
  up?: number;
}

/**
 * Pure: how long each phase of an attach took (ms): Docker's start event -> inspected,
 * -> veth in the container, -> OVS port with its OpenFlow number, -> flows installed
 * (the bridge pass), -> interface up with its route.
 */
export function attachPhases(t: AttachTimes): Record<'inspect' | 'veth' | 'port' | 'flows' | 'up', number> {
  const veth = t.veth ?? t.inspected;
  const port = t.port ?? veth;
  const flows = t.flows ?? port;
  return {
    inspect: t.inspected - t.event,
    veth: veth - t.inspected,
    port: port - veth,
    flows: flows - port,
    up: (t.up ?? flows) - flows,
  };
}

/**
 * Pure: a container is attached as planned = its port is there, addressed as planned, for
 * this run of the container, and up (an agent killed between plugging and raising the
 * interface left it down: redo it); `raised`: this process raised it (the replica may lag).
 */
export function isAttachedAsPlanned(
  port: OvsInterface | undefined,
  plan: Pick<AttachSpec, 'ip' | 'mac' | 'network' | 'ip6'>,
  pid: number,
  raised: boolean,
): boolean {
  const e = port?.externalIds;
  return !!(
    port &&
    port.ofport > 0 &&
    !port.error &&
    (port.linkState === 'up' || raised) &&
    e?.['gremesh-ip'] === plan.ip &&
    e?.['gremesh-ip6'] === plan.ip6 &&
    e?.['gremesh-mac'] === plan.mac &&
    e?.['gremesh-network'] === plan.network &&
    e?.['gremesh-pid'] === String(pid)
  );
}

/**
 * Pure: what goes with containers that no longer exist: the container holders to release
 * and the by-hand entries to forget, `gone` saying which ids are gone.
 */
export function computeGone(
  held: Iterable<string>,
  manualIds: string[],
  gone: (id: string) => boolean,
): { release: string[]; forget: string[] } {
  return { release: [...held].filter((id) => isContainerHolder(id) && gone(id)), forget: manualIds.filter(gone) };
}
