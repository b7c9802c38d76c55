// The label loop: every running container labelled gremesh.network=NAME (or attached by
// `gremesh-agent attach`) has a veth into its namespace and a port on the bridge. Observed:
// the bridge's ports that carry a container_id. Docker events only mark it dirty; Docker
// is asked in O(what changed), and listed whole only on a resync.
import type { Logger } from '../../common/log.js';
import { quoted } from '../../common/text.js';
import {
  namesOf,
  groupOf,
  planAttachment,
  requestFromLabels,
  type AttachRequest,
  type AttachSpec,
  type ContainerInfo,
} from './attachment.js';
import type { ContainerRuntime } from './runtime.js';
import { bind, holders, release, type FileIpam } from './ipam.js';
import type { LinkDriver } from '../net/link-driver.js';
import type { OvsInterface, Snapshot } from '../model.js';
import { ENDPOINT_KEY, containerIds, parseBinding } from '../ovs/ids.js';
import type { OvsDriver } from '../ovs/driver.js';
import { Loop } from '../loop.js';
import type { JsonFile } from '../state-file.js';
import { computeMacHolders, containerPortsOf, portNumbers, unplugPort } from './bridge-ports.js';
import type { DockerEndpoint } from './endpoint-loop.js';
import { attachPhases, computeGone, isAttachedAsPlanned, type AttachTimes } from './label-decisions.js';

export interface AttachError {
  container: string;
  reason: string;
}

/** containers attached by hand (`gremesh-agent attach`), by container id */
export type ManualTable = Record<string, AttachRequest>;

export interface LabelLoopOptions {
  runtime: ContainerRuntime;
  links: LinkDriver;
  ovs: OvsDriver;
  ipam: FileIpam;
  bridge: string;
  underlayMtu: number;
  /** OVS userspace datapath (netdev): container veths need tx offload off and a host-side ingress drop */
  userspace: boolean;
  snapshot: () => Snapshot | undefined;
  /** containers attached by hand (attachments.json), read from disk at each use */
  manual: JsonFile<ManualTable>;
  /** Docker's endpoints: their addresses are held too when the address table is rebuilt */
  endpoints: () => DockerEndpoint[];
  /** on a full pass, after the attaches (the endpoint sweep, which asks Docker) */
  onResync: () => Promise<void>;
  /** after every pass (the endpoints' ports carry their container's name once Docker said) */
  afterPass: () => void;
  onChange: (plugged: Map<string, number>) => Promise<void>;
  onDockerConnected?: () => void;
  onAttached?: (ms: number, network: string) => void;
  onAttachError?: (reason: string) => void;
  log: Logger;
}

export class LabelLoop {
  private stopEvents: () => void = () => {};
  private timer: NodeJS.Timeout | undefined;
  /** containers left unattached, with the reason, as of the last pass */
  errors: AttachError[] = [];
  private loggedErrors = new Map<string, string>();
  /** running containers as last seen; events update single entries, a full list only on resync */
  private knownMap = new Map<string, ContainerInfo>();
  /** the next pass lists every container (start, resync, dockerd reconnected) */
  private fullRefresh = true;
  /** containers that started since the last pass: inspect just these */
  private started = new Set<string>();
  /** containers removed since the last pass: their addresses go */
  private destroyed = new Set<string>();
  /** when Docker reported each container's start (epoch ms): the first phase of an attach */
  private startSeenAt = new Map<string, number>();
  readonly loop: Loop;
  /** the corrupt address table was rebuilt from the bridge's ports */
  ipamRebuilt = false;
  /**
   * containers this process raised (id/pid): their port's link state in the OVSDB replica may
   * lag by a moment, and "down" there must not make the next pass plug them again
   */
  private raised = new Set<string>();

  constructor(private readonly o: LabelLoopOptions) {
    this.loop = new Loop({ name: 'container', log: o.log, pass: () => this.pass(), backoffMaxMs: 10_000 });
  }

  /** running containers as last seen */
  known(): Iterable<ContainerInfo> {
    return this.knownMap.values();
  }

  markDirty(): void {
    this.loop.markDirty('containers');
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
        this.knownMap.delete(id);
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

  /** resolves after the pass running now or, when idle, the next one */
  nextPass(): Promise<void> {
    return this.loop.nextPass();
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
    const running = [...this.knownMap.values()];
    const observed = await this.o.ovs.observe();
    const ports = containerPortsOf(this.o.bridge, observed.interfaces);
    if (this.o.ipam.corrupt && !this.ipamRebuilt) this.rebuildIpam(observed.interfaces);
    const manual = this.o.manual.read();
    const errors: AttachError[] = [];
    const macHolders = computeMacHolders(this.o.bridge, observed.interfaces);
    const ip6Holders = new Map<string, string>();
    for (const i of observed.interfaces) {
      const b = i.bridge === this.o.bridge ? parseBinding(i.externalIds) : undefined;
      if (b?.ip6) ip6Holders.set(`${b.network}/${b.ip6}`, b.containerId);
    }
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
      const plan = planAttachment(
        c,
        req,
        snap,
        this.o.ipam.table,
        this.o.underlayMtu,
        (network, mac) => (macHolders.get(`${network}/${mac}`) ?? []).some((id) => id !== c.id),
        (network, ip6) => {
          const holder = ip6Holders.get(`${network}/${ip6}`);
          return holder !== undefined && holder !== c.id;
        },
      );
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
      const { invalid } = namesOf(c);
      if (invalid.length)
        errors.push({
          container: c.name,
          reason: `attached, but not named ${invalid.map(quoted).join(', ')}: not a valid DNS name`,
        });
      const { problem } = groupOf(c);
      if (problem) errors.push({ container: c.name, reason: problem });
      const port = ports.get(c.id);
      if (isAttachedAsPlanned(port, plan, c.pid, this.raised.has(`${c.id}/${c.pid}`))) continue;
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
    if (full) await this.o.onResync();
    // ports of containers no longer running (or no longer wanted): port and veth go
    for (const [id, port] of ports) {
      if (wanted.has(id)) continue;
      await unplugPort(this.o.ovs, this.o.links, this.o.bridge, port.name);
      this.o.log.info({ container: id.slice(0, 12), port: port.name }, 'container detached');
      changed = true;
    }
    await this.releaseGone(full, destroyedNow);
    // the flows for new ports first, then the containers' interfaces come up: no
    // container ever sees a link that silently drops its first packets
    if (changed) {
      await this.o.onChange(
        await portNumbers(
          this.o.ovs,
          this.o.bridge,
          plugged.map(({ a }) => a.hostIf),
        ),
      );
    }
    const flowsAt = Date.now();
    for (const { c, a, t } of plugged) {
      try {
        await this.o.links.activateContainer(c.pid, a.iface, a.gateway, a.gateway6);
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
        await unplugPort(this.o.ovs, this.o.links, this.o.bridge, a.hostIf);
      }
    }
    this.errors = errors;
    // the endpoints' ports carry their container's name once Docker has said which it is
    this.o.afterPass();
  }

  /** Docker in O(what changed): inspect what started, or list everything on a resync. */
  private async refreshKnown(full: boolean, startedNow: string[]): Promise<void> {
    try {
      if (full) this.knownMap = new Map((await this.o.runtime.running()).map((c) => [c.id, c]));
      else
        for (const id of startedNow) {
          const c = await this.o.runtime.find(id);
          if (c?.running && c.pid > 0) this.knownMap.set(c.id, c);
          else this.knownMap.delete(id);
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
      const m = this.o.manual.read();
      const drop = computeGone(held, Object.keys(m), gone);
      let t = this.o.ipam.table;
      for (const id of drop.release) t = release(t, id);
      if (t !== this.o.ipam.table) this.o.ipam.save(t);
      if (drop.forget.length) {
        for (const id of drop.forget) delete m[id];
        this.o.manual.save(m);
      }
    }
  }

  /** The address file was unreadable: the addresses in use are the ones on the bridge's ports. */
  private rebuildIpam(all: OvsInterface[]): void {
    let t = this.o.ipam.table;
    for (const i of all) {
      const b = i.bridge === this.o.bridge ? parseBinding(i.externalIds) : undefined;
      const ep = i.externalIds[ENDPOINT_KEY];
      if (b && ep) {
        t = bind(t, b.network, b.ip, `ep:${ep}`);
        if (b.ip6) t = bind(t, b.network, b.ip6, `ep:${ep}`);
      } else if (b?.containerId) t = bind(t, b.network, b.ip, b.containerId);
    }
    // Docker's endpoints not plugged yet hold their addresses too
    for (const e of this.o.endpoints()) {
      t = bind(t, e.network, e.ip, `ep:${e.id}`);
      if (e.ip6) t = bind(t, e.network, e.ip6, `ep:${e.id}`);
    }
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
    if (old) await unplugPort(this.o.ovs, this.o.links, this.o.bridge, old.name);
    await this.o.links.plugContainer(c.pid, a.hostIf, {
      iface: a.iface,
      mac: a.mac,
      mtu: a.mtu,
      cidr: `${a.ip}/${a.prefixLen}`,
      ...(a.ip6 ? { cidr6: `${a.ip6}/${a.prefixLen6}` } : {}),
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
              ip6: a.ip6,
              mac: a.mac,
              pid: c.pid,
              name: c.name,
              names: namesOf(c).names,
              group: groupOf(c).group,
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
}
