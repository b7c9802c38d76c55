// The container side of the agent: a second reconcile loop. Desired: every running
// container labelled gremesh.network=NAME (or attached by `gremesh-agent attach`)
// has a veth into its namespace and a port on the bridge. Observed: the bridge's
// ports that carry a container_id. Docker events only mark it dirty.
import type { Logger } from '../common/log.js';
import {
  planAttachment,
  requestFromLabels,
  type AttachRequest,
  type AttachSpec,
  type ContainerInfo,
} from './attachment.js';
import type { ContainerRuntime } from './container-runtime.js';
import { bind, holders, release, type FileIpam } from './ipam.js';
import type { LinkDriver } from './link-driver.js';
import type { OvsInterface, Snapshot } from './model.js';
import { CONTAINER_ID_KEY, containerIds, isOwned, parseBinding } from './ovs-ids.js';
import type { OvsDriver } from './ovs-driver.js';
import { Loop } from './loop.js';
import { printable } from '../common/text.js';
import { readJson, writeFileAtomic } from './state-file.js';

export interface AttachError {
  container: string;
  reason: string;
}

export interface ContainerReconcilerOptions {
  /** the Docker event stream (re)connected */
  onDockerConnected?: () => void;
  runtime: ContainerRuntime;
  links: LinkDriver;
  ovs: OvsDriver;
  ipam: FileIpam;
  bridge: string;
  underlayMtu: number;
  /** OVS userspace datapath (netdev): container veths need tx offload off and a host-side ingress drop */
  userspace: boolean;
  stateDir: string;
  snapshot: () => Snapshot | undefined;
  /**
   * after ports changed: the network reconciler recomputes flows; resolves once the flows
   * of these new ports (name -> OpenFlow number) are installed
   */
  onChange: (plugged: Map<string, number>) => Promise<void>;
  /** metrics: an attach done (ms from Docker's start event) / a container left unattached (once per reason) */
  onAttached?: (ms: number, network: string) => void;
  onAttachError?: (reason: string) => void;
  log: Logger;
}

/** epoch ms at each step of one attach */
interface AttachTimes {
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

/** containers attached by hand (`gremesh-agent attach`), by container id */
type ManualTable = Record<string, AttachRequest>;

export class ContainerReconciler {
  private stopEvents: () => void = () => {};
  private timer: NodeJS.Timeout | undefined;
  errors: AttachError[] = [];
  private loggedErrors = new Map<string, string>();
  /** running containers as last seen; events update single entries, a full list only on resync */
  private known = new Map<string, ContainerInfo>();
  /** the next pass lists every container (start, resync, dockerd reconnected) */
  private fullRefresh = true;
  /** containers that started since the last pass: inspect just these */
  private started = new Set<string>();
  /** containers removed since the last pass: their addresses go */
  private destroyed = new Set<string>();
  /** when Docker reported each container's start (epoch ms): the first phase of an attach */
  private startSeenAt = new Map<string, number>();

  private readonly loop: Loop;
  private ipamRebuilt = false;

  constructor(private readonly o: ContainerReconcilerOptions) {
    this.loop = new Loop({ name: 'container', log: o.log, pass: () => this.pass(), backoffMaxMs: 10_000 });
  }

  private get manualFile(): string {
    return `${this.o.stateDir}/attachments.json`;
  }
  manual(): ManualTable {
    return readJson<ManualTable>(this.manualFile) ?? {};
  }
  private saveManual(m: ManualTable): void {
    writeFileAtomic(this.manualFile, JSON.stringify(m, null, 1));
  }

  start(resyncMs: number): void {
    this.stopEvents = this.o.runtime.watch((kind, id) => {
      if (kind === 'reconnect') {
        // (re)connected to dockerd: it may have just started and rewritten its firewall chains
        this.o.onDockerConnected?.();
        this.fullRefresh = true;
      } else if (kind === 'start' && id) {
        this.started.add(id);
        this.startSeenAt.set(id, Date.now());
        if (this.startSeenAt.size > 1000) this.startSeenAt.delete(this.startSeenAt.keys().next().value!);
      } else if ((kind === 'die' || kind === 'destroy') && id) {
        this.known.delete(id);
        this.started.delete(id);
        if (kind === 'destroy') this.destroyed.add(id);
      } else this.fullRefresh = true;
      this.markDirty();
    });
    this.timer = setInterval(() => {
      this.fullRefresh = true;
      this.markDirty();
    }, resyncMs);
    this.markDirty();
  }

  stop(): void {
    this.stopEvents();
    if (this.timer) clearInterval(this.timer);
    this.loop.stop();
  }

  markDirty(): void {
    this.loop.markDirty('containers');
  }

  /** resolves after the pass running now or, when idle, the next one */
  nextPass(): Promise<void> {
    return this.loop.nextPass();
  }

  private ports(all: OvsInterface[]): Map<string, OvsInterface> {
    const m = new Map<string, OvsInterface>();
    for (const i of all)
      if (i.bridge === this.o.bridge && i.externalIds[CONTAINER_ID_KEY] && isOwned(i.externalIds))
        m.set(i.externalIds.container_id, i);
    return m;
  }

  async pass(): Promise<void> {
    const snap = this.o.snapshot();
    if (!snap) return; // no slices known yet: nothing can be attached
    // Docker in O(what changed): a start inspects that container, a die/destroy drops it;
    // every container is listed only on a resync, at start and when dockerd comes back
    const full = this.fullRefresh;
    const startedNow = [...this.started];
    const destroyedNow = [...this.destroyed];
    this.fullRefresh = false;
    this.started.clear();
    this.destroyed.clear();
    try {
      if (full) this.known = new Map((await this.o.runtime.running()).map((c) => [c.id, c]));
      else
        for (const id of startedNow) {
          const c = await this.o.runtime.find(id);
          if (c?.running && c.pid > 0) this.known.set(c.id, c);
          else this.known.delete(id);
        }
    } catch (e) {
      this.fullRefresh = true; // whatever was missed: list everything next time
      throw e;
    }
    const inspectedAt = Date.now();
    const running = [...this.known.values()];
    const observed = await this.o.ovs.observe();
    const ports = this.ports(observed.interfaces);
    if (this.o.ipam.corrupt && !this.ipamRebuilt) this.rebuildIpam(observed.interfaces);
    const manual = this.manual();
    const errors: AttachError[] = [];
    // who holds each MAC on the bridge, by network: a gremesh.mac must be free (its own port aside)
    const macHolders = new Map<string, string[]>();
    for (const i of observed.interfaces) {
      const b = i.bridge === this.o.bridge ? parseBinding(i.externalIds) : undefined;
      if (b)
        macHolders.set(`${b.network}/${b.mac}`, [...(macHolders.get(`${b.network}/${b.mac}`) ?? []), b.containerId]);
    }
    const wanted = new Set<string>();
    let changed = false;
    const plugged: { c: ContainerInfo; a: AttachSpec; t: AttachTimes }[] = [];
    // errors are logged once per container; forget the ones that are gone
    const live = new Set(running.map((c) => c.id));
    for (const id of this.loggedErrors.keys()) if (!live.has(id)) this.loggedErrors.delete(id);
    for (const c of running) {
      const req = manual[c.id] ?? requestFromLabels(c.labels);
      if (!req) continue;
      const plan = planAttachment(c, req, snap, this.o.ipam.table, this.o.underlayMtu, (network, mac) => {
        return (macHolders.get(`${network}/${mac}`) ?? []).some((id) => id !== c.id);
      });
      if ('error' in plan) {
        errors.push({ container: c.name, reason: plan.error });
        if (this.loggedErrors.get(c.id) !== plan.error) {
          this.o.log.warn(
            { container: c.name, reason: plan.error },
            `container ${c.name} left unattached: ${plan.error}`,
          );
          this.o.onAttachError?.(plan.error);
        }
        this.loggedErrors.set(c.id, plan.error);
        continue;
      }
      this.loggedErrors.delete(c.id);
      wanted.add(c.id);
      const port = ports.get(c.id);
      const e = port?.externalIds;
      // attached = port present, addressed as planned, for this run of the container, and up
      // (an agent killed between plugging and raising the interface left it down: redo it)
      const same =
        port &&
        port.ofport > 0 &&
        !port.error &&
        port.linkState === 'up' &&
        e?.['gremesh-ip'] === plan.ip &&
        e?.['gremesh-mac'] === plan.mac &&
        e?.['gremesh-network'] === plan.network &&
        e?.['gremesh-pid'] === String(c.pid);
      if (same) continue;
      try {
        const t: AttachTimes = { event: this.startSeenAt.get(c.id) ?? inspectedAt, inspected: inspectedAt };
        this.startSeenAt.delete(c.id);
        await this.attach(c, plan, port, t);
        plugged.push({ c, a: plan, t });
        changed = true;
      } catch (err) {
        const reason = `attach failed: ${(err as Error).message}`;
        errors.push({ container: c.name, reason });
        this.o.log.warn({ container: c.name, reason }, `container ${c.name}: ${reason}`);
        this.o.onAttachError?.(reason);
      }
    }
    // ports of containers no longer running (or no longer wanted): port and veth go
    for (const [id, port] of ports) {
      if (wanted.has(id)) continue;
      await this.unplug(port.name);
      this.o.log.info({ container: id.slice(0, 12), port: port.name }, 'container detached');
      changed = true;
    }
    // addresses of containers that no longer exist are released: those Docker said it
    // removed, and on a full pass whatever no longer exists
    const held = holders(this.o.ipam.table);
    if (held.size && (full || destroyedNow.length)) {
      const exist = full ? await this.o.runtime.existing() : undefined;
      const gone = (id: string) => (exist ? !exist.has(id) : destroyedNow.includes(id));
      let t = this.o.ipam.table;
      for (const id of held) if (gone(id)) t = release(t, id);
      if (t !== this.o.ipam.table) this.o.ipam.save(t);
      const m = this.manual();
      const forgotten = Object.keys(m).filter(gone);
      if (forgotten.length) {
        for (const id of forgotten) delete m[id];
        this.saveManual(m);
      }
    }
    // the flows for new ports first, then the containers' interfaces come up: no
    // container ever sees a link that silently drops its first packets
    if (changed) {
      const numbers = new Map(
        (await this.o.ovs.observe()).interfaces
          .filter((i) => i.bridge === this.o.bridge)
          .map((i) => [i.name, i.ofport]),
      );
      await this.o.onChange(new Map(plugged.map(({ a }) => [a.hostIf, numbers.get(a.hostIf) ?? -1])));
    }
    const flowsAt = Date.now();
    for (const { c, a, t } of plugged) {
      try {
        await this.o.links.activateContainer(c.pid, a.iface, a.gateway);
        t.flows = flowsAt;
        t.up = Date.now();
        this.o.log.info(
          { container: c.name, ip: a.ip, mac: a.mac, mtu: a.mtu, port: a.hostIf, phasesMs: attachPhases(t) },
          'container attached',
        );
        this.o.onAttached?.(t.up - t.event, a.network);
      } catch (err) {
        const reason = `attach failed: ${(err as Error).message}`;
        errors.push({ container: c.name, reason });
        this.o.log.warn({ container: c.name, reason }, `container ${c.name}: ${reason}`);
        await this.unplug(a.hostIf);
      }
    }
    // reported to the coordinator and shown by coordctl: bounded, whatever a label held
    this.errors = errors
      .slice(0, 1000)
      .map((e) => ({ container: printable(e.container, 64), reason: printable(e.reason, 256) }));
  }

  /** The address file was unreadable: the addresses in use are the ones on the bridge's ports. */
  private rebuildIpam(all: OvsInterface[]): void {
    let t = this.o.ipam.table;
    for (const i of all) {
      const b = i.bridge === this.o.bridge ? parseBinding(i.externalIds) : undefined;
      if (b?.containerId) t = bind(t, b.network, b.ip, b.containerId);
    }
    this.o.ipam.save(t);
    this.ipamRebuilt = true;
    this.o.log.error(
      { ...this.o.ipam.corrupt, addresses: holders(t).size },
      `the address table was corrupt (${this.o.ipam.corrupt!.reason}); moved to ${this.o.ipam.corrupt!.movedTo} and rebuilt from the ${holders(t).size} container ports on the bridge`,
    );
  }

  private async attach(c: ContainerInfo, a: AttachSpec, old: OvsInterface | undefined, t: AttachTimes): Promise<void> {
    if (old) await this.unplug(old.name);
    // the address is bound before anything is plugged: never handed out twice
    this.o.ipam.save(bind(this.o.ipam.table, a.network, a.ip, c.id));
    await this.o.links.plugContainer(c.pid, a.hostIf, {
      iface: a.iface,
      mac: a.mac,
      mtu: a.mtu,
      cidr: `${a.ip}/${a.prefixLen}`,
      gateway: a.gateway,
      userspace: this.o.userspace,
    });
    t.veth = Date.now();
    try {
      await this.o.ovs.apply([
        {
          op: 'add-port',
          bridge: this.o.bridge,
          port: a.hostIf,
          iface: {
            externalIds: containerIds({
              containerId: c.id,
              network: a.network,
              ip: a.ip,
              mac: a.mac,
              pid: c.pid,
              name: c.name,
            }),
          },
        },
      ]);
    } catch (e) {
      await this.o.links.deleteLink(a.hostIf);
      throw e;
    }
    t.port = Date.now();
  }

  private async unplug(port: string): Promise<void> {
    await this.o.ovs.apply([{ op: 'delete-port', bridge: this.o.bridge, port }]);
    await this.o.links.deleteLink(port);
  }

  /** `gremesh-agent attach`: remember the request, then reconcile. */
  async attachByHand(ref: string, req: AttachRequest): Promise<{ ip: string; mac: string; port: string }> {
    const c = await this.o.runtime.find(ref);
    if (!c) throw new Error(`no container "${ref}"`);
    if (!c.running) throw new Error(`container ${c.name} is not running`);
    const snap = this.o.snapshot();
    if (!snap) throw new Error('the agent has no desired state yet (coordinator not reached)');
    const plan = planAttachment(c, req, snap, this.o.ipam.table, this.o.underlayMtu);
    if ('error' in plan) throw new Error(plan.error);
    const m = this.manual();
    m[c.id] = req;
    this.saveManual(m);
    await this.loop.markDirtyAndWait('attach by hand');
    if (this.loop.lastError) throw new Error(`the attach pass failed: ${this.loop.lastError.message}`);
    const err = this.errors.find((e) => e.container === c.name);
    if (err) throw new Error(err.reason);
    return { ip: plan.ip, mac: plan.mac, port: plan.hostIf };
  }

  /** `gremesh-agent detach`: forget the request (labelled containers stay attached). */
  async detachByHand(ref: string): Promise<void> {
    const c = await this.o.runtime.find(ref);
    const m = this.manual();
    const id = c?.id ?? Object.keys(m).find((k) => k.startsWith(ref));
    if (!id || !m[id]) {
      if (c && requestFromLabels(c.labels))
        throw new Error(
          `container ${c.name} is attached by its gremesh.network label; remove the container to detach it`,
        );
      throw new Error(`container "${ref}" was not attached with gremesh-agent attach`);
    }
    delete m[id];
    this.saveManual(m);
    this.o.ipam.save(release(this.o.ipam.table, id));
    await this.loop.markDirtyAndWait('detach by hand');
    if (this.loop.lastError) throw new Error(`the detach pass failed: ${this.loop.lastError.message}`);
  }

  /** addresses per container, for status */
  addresses(): Record<string, string> {
    const out: Record<string, string> = {};
    for (const [net, ips] of Object.entries(this.o.ipam.table))
      for (const [ip, id] of Object.entries(ips)) out[id] = `${net}:${ip}`;
    return out;
  }
}
