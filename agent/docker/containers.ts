// The container side of the agent: a second reconcile loop. Desired: every running
// container labelled gremesh.network=NAME (or attached by `gremesh-agent attach`)
// has a veth into its namespace and a port on the bridge. Observed: the bridge's
// ports that carry a container_id. Docker events only mark it dirty.
import type { Logger } from '../../common/log.js';
import {
  endpointIfNames,
  planAttachment,
  planEndpoint,
  requestFromLabels,
  type AttachRequest,
  type AttachSpec,
  type ContainerInfo,
  type EndpointPlan,
  type EndpointRequest,
} from './attachment.js';
import { gatewayOf, hostGatewayOf } from '../bridge/desired.js';
import type { ContainerRuntime } from './runtime.js';
import { allocate, bind, holders, isContainerHolder, release, type FileIpam } from './ipam.js';
import type { LinkDriver } from '../net/link-driver.js';
import type { OvsInterface, Snapshot } from '../model.js';
import { CONTAINER_ID_KEY, ENDPOINT_KEY, containerIds, endpointIds, isOwned, parseBinding } from '../ovs/ids.js';
import type { OvsDriver } from '../ovs/driver.js';
import { Loop } from '../loop.js';
import { printable } from '../../common/text.js';
import { JsonFile, JsonTable } from '../state-file.js';

/**
 * One of Docker's endpoints on a gremesh network (the network plugin): planned as a
 * labelled container is, plugged when Docker creates it, kept while Docker has it.
 */
export interface DockerEndpoint extends EndpointPlan {
  id: string;
  /** the Docker network's id */
  dockerNetwork: string;
  hostIf: string;
  /** the container side until Docker moves it in (then Docker names it eth<N>) */
  peerIf: string;
  /** epoch ms */
  created: number;
  /** Docker has taken the peer (Join): its veth lives and dies with the container */
  joined: boolean;
}

/** NetworkDriver.CreateEndpoint, as the plugin passes it on: the endpoint and its Docker network */
export type AddEndpoint = EndpointRequest & { id: string; dockerNetwork: string };

/** an endpoint Docker does not list is dropped only once it is this old (ms): it may be starting */
const ENDPOINT_GRACE_MS = 60_000;
const NO_STATE = 'the agent has no desired state yet (coordinator not reached)';

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
  /** the network plugin's name (its socket's): Docker networks of this driver are ours (default gremesh) */
  pluginName?: string;
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
  private labelErrors: AttachError[] = [];
  /** containers left unattached and endpoints left unplugged, with the reason (bounded, printable) */
  get errors(): AttachError[] {
    const eps = [...this.endpointErrors].map(([id, reason]) => ({ container: `endpoint ${id.slice(0, 12)}`, reason }));
    return [...this.labelErrors, ...eps]
      .slice(0, 1000)
      .map((e) => ({ container: printable(e.container, 64), reason: printable(e.reason, 256) }));
  }
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
  /**
   * Docker's endpoints have their own loop, which never calls Docker: dockerd waits for the
   * plugin's answers holding the container's lock, so a pass that inspects containers
   * (the container loop) could wait for dockerd while dockerd waits for it.
   */
  private readonly endpointLoop: Loop;
  private ipamRebuilt = false;
  /** Docker's endpoints by id (docker-endpoints.json) */
  private readonly endpoints: JsonTable<DockerEndpoint>;
  /** containers attached by hand (attachments.json), read from disk at each use */
  private readonly manualFile: JsonFile<ManualTable>;
  /** why an endpoint could not be plugged, by endpoint id */
  private endpointErrors = new Map<string, string>();
  /** addresses held by an endpoint that is gone (Docker has not released them yet): since when */
  private orphanSince = new Map<string, number>();
  private reservations = 0;
  /**
   * containers this process raised (id/pid): their port's link state in the OVSDB replica may
   * lag by a moment, and "down" there must not make the next pass plug them again
   */
  private raised = new Set<string>();
  private endpointsAdopted = false;
  /** when Docker's endpoints were last listed (the sweep asks at most once a minute) */
  private lastSweep = 0;

  constructor(private readonly o: ContainerReconcilerOptions) {
    this.loop = new Loop({ name: 'container', log: o.log, pass: () => this.pass(), backoffMaxMs: 10_000 });
    this.endpointLoop = new Loop({
      name: 'endpoint',
      log: o.log,
      pass: () => this.endpointPass(),
      backoffMaxMs: 10_000,
    });
    this.endpoints = new JsonTable(`${o.stateDir}/docker-endpoints.json`);
    this.manualFile = new JsonFile<ManualTable>(`${o.stateDir}/attachments.json`, () => ({}));
  }

  private get eps(): Record<string, DockerEndpoint> {
    return this.endpoints.value;
  }
  private saveEndpoints(next: Record<string, DockerEndpoint>): void {
    this.endpoints.save(next);
  }

  manual(): ManualTable {
    return this.manualFile.read();
  }
  private saveManual(m: ManualTable): void {
    this.manualFile.save(m);
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
      } else if ((kind === 'connect' || kind === 'disconnect') && id) {
        this.started.add(id); // a running container joined or left a network: inspect it again
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
    this.endpointLoop.markDirty('start');
  }

  stop(): void {
    this.stopEvents();
    if (this.timer) clearInterval(this.timer);
    this.loop.stop();
    this.endpointLoop.stop();
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
      if (
        i.bridge === this.o.bridge &&
        i.externalIds[CONTAINER_ID_KEY] &&
        !i.externalIds[ENDPOINT_KEY] &&
        isOwned(i.externalIds)
      )
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
    await this.refreshKnown(full, startedNow);
    const inspectedAt = Date.now();
    const running = [...this.known.values()];
    const observed = await this.o.ovs.observe();
    const ports = this.ports(observed.interfaces);
    if (this.o.ipam.corrupt && !this.ipamRebuilt) this.rebuildIpam(observed.interfaces);
    const manual = this.manual();
    const errors: AttachError[] = [];
    const macHolders = this.macHolders(observed.interfaces);
    const wanted = new Set<string>();
    let changed = false;
    const plugged: { c: ContainerInfo; a: AttachSpec; t: AttachTimes }[] = [];
    // errors are logged once per container; forget the ones that are gone
    const live = new Set(running.map((c) => c.id));
    for (const id of this.loggedErrors.keys()) if (!live.has(id)) this.loggedErrors.delete(id);
    for (const k of this.raised) if (!live.has(k.split('/')[0]!)) this.raised.delete(k);
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
        (port.linkState === 'up' || this.raised.has(`${c.id}/${c.pid}`)) &&
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
    if (full) await this.sweepEndpoints();
    // ports of containers no longer running (or no longer wanted): port and veth go
    for (const [id, port] of ports) {
      if (wanted.has(id)) continue;
      await this.unplug(port.name);
      this.o.log.info({ container: id.slice(0, 12), port: port.name }, 'container detached');
      changed = true;
    }
    await this.releaseGone(full, destroyedNow);
    // the flows for new ports first, then the containers' interfaces come up: no
    // container ever sees a link that silently drops its first packets
    if (changed) {
      await this.o.onChange(await this.portNumbers(plugged.map(({ a }) => a.hostIf)));
    }
    const flowsAt = Date.now();
    for (const { c, a, t } of plugged) {
      try {
        await this.o.links.activateContainer(c.pid, a.iface, a.gateway);
        this.raised.add(`${c.id}/${c.pid}`);
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
    this.labelErrors = errors;
    // the endpoints' ports carry their container's name once Docker has said which it is
    this.endpointLoop.markDirty('containers seen');
  }

  /** Docker in O(what changed): inspect what started, or list everything on a resync. */
  private async refreshKnown(full: boolean, startedNow: string[]): Promise<void> {
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
  }

  /**
   * Addresses of containers that no longer exist are released: those Docker said it
   * removed, and on a full pass whatever no longer exists.
   */
  private async releaseGone(full: boolean, destroyedNow: string[]): Promise<void> {
    const held = holders(this.o.ipam.table);
    if (held.size && (full || destroyedNow.length)) {
      const exist = full ? await this.o.runtime.existing() : undefined;
      const gone = (id: string) => (exist ? !exist.has(id) : destroyedNow.includes(id));
      let t = this.o.ipam.table;
      for (const id of held) if (isContainerHolder(id) && gone(id)) t = release(t, id);
      if (t !== this.o.ipam.table) this.o.ipam.save(t);
      const m = this.manual();
      const forgotten = Object.keys(m).filter(gone);
      if (forgotten.length) {
        for (const id of forgotten) delete m[id];
        this.saveManual(m);
      }
    }
  }

  /** The address file was unreadable: the addresses in use are the ones on the bridge's ports. */
  private rebuildIpam(all: OvsInterface[]): void {
    let t = this.o.ipam.table;
    for (const i of all) {
      const b = i.bridge === this.o.bridge ? parseBinding(i.externalIds) : undefined;
      const ep = i.externalIds[ENDPOINT_KEY];
      if (b && ep) t = bind(t, b.network, b.ip, `ep:${ep}`);
      else if (b?.containerId) t = bind(t, b.network, b.ip, b.containerId);
    }
    // Docker's endpoints not plugged yet hold their addresses too
    for (const e of Object.values(this.eps)) t = bind(t, e.network, e.ip, `ep:${e.id}`);
    this.o.ipam.save(t);
    this.ipamRebuilt = true;
    this.o.log.error(
      { ...this.o.ipam.corrupt, addresses: holders(t).size },
      `the address table was corrupt (${this.o.ipam.corrupt!.reason}); moved to ${this.o.ipam.corrupt!.movedTo} and rebuilt from the ${holders(t).size} container ports on the bridge`,
    );
  }

  private async attach(c: ContainerInfo, a: AttachSpec, old: OvsInterface | undefined, t: AttachTimes): Promise<void> {
    // the address is bound before anything is plugged, in the same turn as it was planned
    // (Docker's IPAM allocates from the same table in between): never handed out twice
    this.o.ipam.save(bind(this.o.ipam.table, a.network, a.ip, c.id));
    if (old) await this.unplug(old.name);
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

  /** these new ports' OpenFlow numbers (-1: none yet), as onChange wants them */
  private async portNumbers(ports: string[]): Promise<Map<string, number>> {
    const numbers = new Map(
      (await this.o.ovs.observe()).interfaces.filter((i) => i.bridge === this.o.bridge).map((i) => [i.name, i.ofport]),
    );
    return new Map(ports.map((p) => [p, numbers.get(p) ?? -1]));
  }

  /** who holds each MAC on the bridge, by network ("network/mac" -> container ids) */
  private macHolders(all: OvsInterface[]): Map<string, string[]> {
    const m = new Map<string, string[]>();
    for (const i of all) {
      const b = i.bridge === this.o.bridge ? parseBinding(i.externalIds) : undefined;
      if (b) m.set(`${b.network}/${b.mac}`, [...(m.get(`${b.network}/${b.mac}`) ?? []), b.containerId]);
    }
    return m;
  }

  /**
   * Docker's endpoints, in the same pass as the labelled containers: a new one gets its veth
   * pair and port (Docker moves the peer in after Join); a port whose veth vanished after Join
   * (the container's namespace took it) is forgotten; ports of forgotten endpoints go. On a
   * full pass, endpoints Docker no longer lists and addresses Docker never released are dropped.
   */
  private async endpointPass(): Promise<void> {
    if (!this.o.snapshot()) return;
    const all = (await this.o.ovs.observe()).interfaces;
    const out = { ports: [] as string[], changed: false };
    const portOf = new Map<string, OvsInterface>();
    for (const i of all)
      if (i.bridge === this.o.bridge && i.externalIds[ENDPOINT_KEY] && isOwned(i.externalIds))
        portOf.set(i.externalIds[ENDPOINT_KEY], i);
    if (!this.endpointsAdopted) this.adoptEndpointPorts(portOf);
    const containerOf = new Map<string, ContainerInfo>();
    for (const c of this.known.values()) for (const e of c.endpoints ?? []) containerOf.set(e, c);
    for (const ep of Object.values(this.eps)) {
      const port = portOf.get(ep.id);
      const ids = endpointIds(ep, containerOf.get(ep.id));
      try {
        if (port && port.ofport > 0 && !port.error) {
          // which container it is, once Docker says (status, trace and metrics name it)
          if (Object.entries(ids).some(([k, v]) => port.externalIds[k] !== v))
            await this.o.ovs.apply([{ op: 'set-interface', name: port.name, iface: { externalIds: ids } }]);
          this.endpointErrors.delete(ep.id);
          continue;
        }
        if (ep.joined && !(await this.o.links.linkExists(ep.hostIf))) {
          this.forgetEndpoint(ep.id, 'its veth is gone with the container');
          continue;
        }
        if (!ep.joined)
          await this.o.links.makeVeth(ep.hostIf, ep.peerIf, { mac: ep.mac, mtu: ep.mtu, userspace: this.o.userspace });
        await this.o.ovs.apply([
          { op: 'add-port', bridge: this.o.bridge, port: ep.hostIf, iface: { externalIds: ids } },
        ]);
        this.endpointErrors.delete(ep.id);
        out.ports.push(ep.hostIf);
        out.changed = true;
        this.o.log.info(
          { endpoint: ep.id.slice(0, 12), ip: ep.ip, mac: ep.mac, mtu: ep.mtu, port: ep.hostIf },
          'docker endpoint plugged',
        );
      } catch (err) {
        const reason = `plugging failed: ${(err as Error).message}`;
        // a pair made for a port that could not be added would outlive the endpoint
        if (!ep.joined && !port) await this.o.links.deleteLink(ep.hostIf).catch(() => {});
        this.endpointErrors.set(ep.id, reason);
        this.o.log.warn({ endpoint: ep.id.slice(0, 12), reason }, `docker endpoint ${ep.id.slice(0, 12)}: ${reason}`);
      }
    }
    for (const [id, port] of portOf) {
      if (this.eps[id]) continue;
      try {
        await this.unplug(port.name);
        this.o.log.info({ endpoint: id.slice(0, 12), port: port.name }, 'docker endpoint unplugged');
        out.changed = true;
      } catch (err) {
        // retried next pass; it must not fail the endpoints being plugged now
        this.o.log.warn({ endpoint: id.slice(0, 12), err: (err as Error).message }, 'docker endpoint port not removed');
      }
    }
    // flows for the new ports before Docker is told the endpoint exists
    if (out.changed) {
      await this.o.onChange(await this.portNumbers(out.ports));
    }
  }

  /**
   * The first pass after a start: an endpoint port on the bridge that the table does not know
   * (its file was lost or unreadable) is taken back from the port's binding rather than
   * unplugged under a running container; the sweep then drops it if Docker has no such endpoint.
   */
  private adoptEndpointPorts(portOf: Map<string, OvsInterface>): void {
    this.endpointsAdopted = true;
    const snap = this.o.snapshot();
    const next = { ...this.eps };
    let t = this.o.ipam.table;
    for (const [id, port] of portOf) {
      const b = parseBinding(port.externalIds);
      const gw = snap && b ? hostGatewayOf(snap, b.network) : undefined;
      if (next[id] || !b || !gw) continue;
      next[id] = {
        id,
        dockerNetwork: '',
        network: b.network,
        ip: b.ip,
        prefixLen: gw.prefixLen,
        mac: b.mac,
        mtu: port.mtu,
        gateway: gw.ip,
        ...endpointIfNames(id),
        created: Date.now(),
        joined: true,
      };
      t = bind(t, b.network, b.ip, `ep:${id}`);
      this.o.log.warn({ endpoint: id.slice(0, 12), ip: b.ip }, 'docker endpoint taken back from its port');
    }
    if (Object.keys(next).length !== Object.keys(this.eps).length) {
      this.o.ipam.save(t);
      this.saveEndpoints(next);
    }
  }

  private forgetEndpoint(id: string, why: string): void {
    const next = { ...this.eps };
    delete next[id];
    this.saveEndpoints(next);
    this.endpointErrors.delete(id);
    this.o.log.info({ endpoint: id.slice(0, 12), why }, 'docker endpoint forgotten');
  }

  /**
   * Endpoints Docker no longer has (it removed them while the agent was down) are dropped, and
   * addresses it never released: held for an endpoint never made (`docker:`) or for one that
   * is gone (`ep:`), each after a grace in which Docker may still be busy with them.
   */
  private async sweepEndpoints(): Promise<void> {
    const now = Date.now();
    if (
      now - this.lastSweep >= ENDPOINT_GRACE_MS &&
      Object.values(this.eps).some((e) => now - e.created > ENDPOINT_GRACE_MS)
    ) {
      this.lastSweep = now;
      let live: Set<string>;
      try {
        live = await this.o.runtime.endpointsOfDriver(this.o.pluginName ?? 'gremesh');
      } catch {
        return; // Docker unreachable: keep everything
      }
      for (const e of Object.values(this.eps))
        if (!live.has(e.id) && now - e.created > ENDPOINT_GRACE_MS) {
          this.forgetEndpoint(e.id, 'Docker no longer has it');
          this.endpointLoop.markDirty('endpoint forgotten');
        }
    }
    let t = this.o.ipam.table;
    for (const ips of Object.values(t))
      for (const holder of Object.values(ips)) {
        const stale = holder.startsWith('docker:')
          ? now - Number(holder.split(':')[1]) > ENDPOINT_GRACE_MS
          : holder.startsWith('ep:') && !this.eps[holder.slice(3)] && this.orphanedFor(holder, now) > ENDPOINT_GRACE_MS;
        if (stale) t = release(t, holder);
      }
    for (const h of this.orphanSince.keys()) if (!holders(t).has(h)) this.orphanSince.delete(h);
    if (t !== this.o.ipam.table) this.o.ipam.save(t);
  }

  private orphanedFor(holder: string, now: number): number {
    if (!this.orphanSince.has(holder)) this.orphanSince.set(holder, now);
    return now - this.orphanSince.get(holder)!;
  }

  // ------------------------------------------------------------ for the network plugin

  /** IPAM: an address of this host's slice, held for Docker (`docker:TIME:N`) until its endpoint exists */
  reserveAddress(network: string, want: string | undefined): { ip: string; prefixLen: number } | { error: string } {
    const snap = this.o.snapshot();
    if (!snap) return { error: NO_STATE };
    if (this.o.ipam.corrupt && !this.ipamRebuilt)
      return { error: 'the address table is being rebuilt after it was found corrupt; try again in a moment' };
    const net = snap.networks.find((n) => n.name === network);
    const slice = snap.slices.find((x) => x.network === network);
    if (!net || !slice) return { error: `this host has no slice of gremesh network ${network}` };
    const holder = `docker:${Date.now()}:${++this.reservations}`;
    const a = allocate(this.o.ipam.table, network, slice.cidr, holder, want, '--ip');
    if ('error' in a) return a;
    this.o.ipam.save(bind(this.o.ipam.table, network, a.ip, holder));
    return { ip: a.ip, prefixLen: gatewayOf(slice.cidr, net.cidr).prefixLen };
  }

  /**
   * IPAM: Docker is done with an address. Only Docker's own holders are released, and not
   * while their endpoint exists (a late release must not take an address from a live one).
   */
  releaseAddress(network: string, ip: string): void {
    const holder = this.o.ipam.table[network]?.[ip];
    if (!holder || isContainerHolder(holder)) return;
    if (holder.startsWith('ep:') && this.eps[holder.slice(3)]) return;
    this.o.ipam.save(release(this.o.ipam.table, holder));
  }

  reservedIn(ip: string): string | undefined {
    const nets = Object.entries(this.o.ipam.table)
      .filter(([, ips]) => ips[ip]?.startsWith('docker:'))
      .map(([n]) => n);
    return nets.length === 1 ? nets[0] : undefined;
  }

  endpoint(id: string): DockerEndpoint | undefined {
    return this.eps[id];
  }

  /**
   * NetworkDriver.CreateEndpoint: plan as a labelled container (the address our IPAM gave),
   * plug it (veth pair, port, flows installed) and remember it; throws the reason it cannot.
   * Asked again for the same endpoint, answers the same.
   */
  async addEndpoint(r: AddEndpoint): Promise<DockerEndpoint> {
    const plugged = async () =>
      (await this.o.ovs.observe()).interfaces.some(
        (i) => i.bridge === this.o.bridge && i.externalIds[ENDPOINT_KEY] === r.id && i.ofport > 0 && !i.error,
      );
    // everything that awaits comes first: the checks and the writes below happen in one turn
    const macs = this.macHolders((await this.o.ovs.observe()).interfaces);
    const known = this.eps[r.id];
    if (known) {
      // asked again (Docker retried after a lost answer): answer once it is plugged
      if (!(await plugged())) await this.endpointLoop.markDirtyAndWait('docker endpoint asked again');
      const why = this.endpointErrors.get(r.id);
      if (why) throw new Error(why);
      return known;
    }
    const snap = this.o.snapshot();
    if (!snap) throw new Error(NO_STATE);
    const holder = this.o.ipam.table[r.network]?.[r.ip];
    if (!holder || !(holder.startsWith('docker:') || holder === `ep:${r.id}`))
      throw new Error(
        `address ${r.ip} was not handed out by gremesh on this host: create the Docker network with --ipam-driver gremesh`,
      );
    const plan = planEndpoint(r, snap, this.o.underlayMtu, (n, m) => (macs.get(`${n}/${m}`) ?? []).length > 0);
    if ('error' in plan) throw new Error(plan.error);
    const ep: DockerEndpoint = {
      ...plan,
      id: r.id,
      dockerNetwork: r.dockerNetwork,
      ...endpointIfNames(r.id),
      created: Date.now(),
      joined: false,
    };
    this.o.ipam.save(bind(this.o.ipam.table, r.network, r.ip, `ep:${r.id}`));
    this.orphanSince.delete(`ep:${r.id}`);
    this.saveEndpoints({ ...this.eps, [r.id]: ep });
    await this.endpointLoop.markDirtyAndWait('docker endpoint');
    // this endpoint's own outcome: its port is there, or why not
    if (!(await plugged())) {
      const why = this.endpointErrors.get(r.id) ?? this.endpointLoop.lastError?.message ?? 'its port was not added';
      this.forgetEndpoint(r.id, why); // Docker rolls back: its ReleaseAddress frees the address
      this.endpointLoop.markDirty('docker endpoint failed');
      throw new Error(why);
    }
    return ep;
  }

  /** NetworkDriver.Join: Docker takes the peer now (its veth lives with the container from here). */
  joinEndpoint(id: string): DockerEndpoint | undefined {
    const ep = this.eps[id];
    if (ep && !ep.joined) this.saveEndpoints({ ...this.eps, [id]: { ...ep, joined: true } });
    return this.eps[id];
  }

  /** NetworkDriver.DeleteEndpoint: port and veth go; the address waits for Docker's ReleaseAddress. */
  async removeEndpoint(id: string): Promise<void> {
    if (!this.eps[id]) return;
    this.forgetEndpoint(id, 'Docker deleted it');
    await this.endpointLoop.markDirtyAndWait('docker endpoint deleted');
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
