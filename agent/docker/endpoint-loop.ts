// Docker's endpoints on gremesh networks (the network plugin's side of the container
// loop): their table (docker-endpoints.json), the loop that plugs and unplugs their ports,
// and the sweep of endpoints and addresses Docker forgot. This loop never calls Docker
// (see EndpointLoop); the sweep, which does, is run by the label loop on a full pass.
import type { Logger } from '../../common/log.js';
import { quoted } from '../../common/text.js';
import { endpointIfNames, groupOf, namesOf, type ContainerInfo, type EndpointPlan } from './attachment.js';
import { hostGateway6Of, hostGatewayOf } from '../bridge/desired.js';
import { bind, holders, release, type FileIpam, type IpamTable } from './ipam.js';
import type { LinkDriver } from '../net/link-driver.js';
import type { OvsInterface, Snapshot } from '../model.js';
import { endpointIds, parseBinding } from '../ovs/ids.js';
import type { OvsDriver } from '../ovs/driver.js';
import { Loop } from '../loop.js';
import { JsonTable } from '../state-file.js';
import { endpointPortsOf, portNumbers, unplugPort } from './bridge-ports.js';

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

/** an endpoint Docker does not list is dropped only once it is this old (ms): it may be starting */
export const ENDPOINT_GRACE_MS = 60_000;

/** Pure: whether the sweep asks Docker for its endpoints now (at most once per grace, only if one is old enough). */
export function sweepDue(eps: DockerEndpoint[], lastSweep: number, now: number, graceMs = ENDPOINT_GRACE_MS): boolean {
  return now - lastSweep >= graceMs && eps.some((e) => now - e.created > graceMs);
}

/** Pure: the endpoints to forget: Docker does not list them and they are past the grace. */
export function endpointsGoneFromDocker(
  eps: DockerEndpoint[],
  live: Set<string>,
  now: number,
  graceMs = ENDPOINT_GRACE_MS,
): string[] {
  return eps.filter((e) => !live.has(e.id) && now - e.created > graceMs).map((e) => e.id);
}

/**
 * Pure: the holders whose addresses go: reserved for Docker (`docker:TIME:N`) and never made
 * an endpoint, or held for an endpoint that is gone (`ep:ID`), each past the grace. An orphan
 * is timed from when it was first seen (`orphanSince`, returned updated: first sightings
 * added, holders no longer in the table after the release dropped).
 */
export function computeStaleHolders(
  t: IpamTable,
  hasEndpoint: (id: string) => boolean,
  orphanSince: ReadonlyMap<string, number>,
  now: number,
  graceMs = ENDPOINT_GRACE_MS,
): { stale: string[]; orphanSince: Map<string, number> } {
  const since = new Map(orphanSince);
  const orphanedFor = (holder: string): number => {
    if (!since.has(holder)) since.set(holder, now);
    return now - since.get(holder)!;
  };
  const stale: string[] = [];
  for (const ips of Object.values(t))
    for (const holder of Object.values(ips)) {
      const old = holder.startsWith('docker:')
        ? now - Number(holder.split(':')[1]) > graceMs
        : holder.startsWith('ep:') && !hasEndpoint(holder.slice(3)) && orphanedFor(holder) > graceMs;
      if (old) stale.push(holder);
    }
  let after = t;
  for (const h of stale) after = release(after, h);
  const left = holders(after);
  for (const h of [...since.keys()]) if (!left.has(h)) since.delete(h);
  return { stale, orphanSince: since };
}

export interface EndpointLoopOptions {
  ovs: OvsDriver;
  links: LinkDriver;
  ipam: FileIpam;
  bridge: string;
  /** OVS userspace datapath (netdev): veths need tx offload off */
  userspace: boolean;
  stateDir: string;
  snapshot: () => Snapshot | undefined;
  /** running containers as the label loop last saw them: which container each endpoint is in */
  containers: () => Iterable<ContainerInfo>;
  /** Docker's endpoints of the plugin's driver (only the sweep asks) */
  dockerEndpoints: () => Promise<Set<string>>;
  /** after ports changed: resolves once the flows of these new ports are installed */
  onChange: (plugged: Map<string, number>) => Promise<void>;
  log: Logger;
}

export class EndpointLoop {
  /**
   * Docker's endpoints have their own loop, which never calls Docker: dockerd waits for the
   * plugin's answers holding the container's lock, so a pass that inspects containers
   * (the container loop) could wait for dockerd while dockerd waits for it.
   */
  readonly loop: Loop;
  /** Docker's endpoints by id (docker-endpoints.json) */
  private readonly table: JsonTable<DockerEndpoint>;
  /** why an endpoint could not be plugged, by endpoint id */
  readonly errors = new Map<string, string>();
  /** endpoints plugged whose container has names that are no valid DNS name: container, note */
  nameNotes: { container: string; reason: string }[] = [];
  /** addresses held by an endpoint that is gone (Docker has not released them yet): since when */
  private orphanSince = new Map<string, number>();
  private adopted = false;
  /** when Docker's endpoints were last listed (the sweep asks at most once a minute) */
  private lastSweep = 0;

  constructor(private readonly o: EndpointLoopOptions) {
    this.loop = new Loop({ name: 'endpoint', log: o.log, pass: () => this.pass(), backoffMaxMs: 10_000 });
    this.table = new JsonTable(`${o.stateDir}/docker-endpoints.json`);
  }

  /** the endpoints by id */
  get eps(): Record<string, DockerEndpoint> {
    return this.table.value;
  }
  save(next: Record<string, DockerEndpoint>): void {
    this.table.save(next);
  }

  /** an endpoint's address is bound again: it is no orphan */
  notOrphan(holder: string): void {
    this.orphanSince.delete(holder);
  }

  forget(id: string, why: string): void {
    const next = { ...this.eps };
    delete next[id];
    this.save(next);
    this.errors.delete(id);
    this.o.log.info({ endpoint: id.slice(0, 12), why }, 'docker endpoint forgotten');
  }

  /**
   * Docker's endpoints, in the same pass as the labelled containers: a new one gets its veth
   * pair and port (Docker moves the peer in after Join); a port whose veth vanished after Join
   * (the container's namespace took it) is forgotten; ports of forgotten endpoints go. On a
   * full pass, endpoints Docker no longer lists and addresses Docker never released are dropped.
   */
  private async pass(): Promise<void> {
    if (!this.o.snapshot()) return;
    const { ovs, links, bridge } = this.o;
    const all = (await ovs.observe()).interfaces;
    const out = { ports: [] as string[], changed: false };
    const portOf = endpointPortsOf(bridge, all);
    if (!this.adopted) this.adoptPorts(portOf);
    const containerOf = new Map<string, ContainerInfo>();
    for (const c of this.o.containers()) for (const e of c.endpoints ?? []) containerOf.set(e, c);
    const notes: { container: string; reason: string }[] = [];
    for (const ep of Object.values(this.eps)) {
      const port = portOf.get(ep.id);
      const c = containerOf.get(ep.id);
      const named = c && namesOf(c, ep.id);
      if (c && named?.invalid.length)
        notes.push({
          container: c.name,
          reason: `attached, but not named ${named.invalid.map(quoted).join(', ')}: not a valid DNS name`,
        });
      const grouped = c && groupOf(c);
      if (c && grouped?.problem) notes.push({ container: c.name, reason: grouped.problem });
      const ids = endpointIds(ep, c && { ...c, names: named!.names, group: grouped!.group });
      try {
        if (port && port.ofport > 0 && !port.error) {
          // which container it is, once Docker says (status, trace and metrics name it)
          if (Object.entries(ids).some(([k, v]) => port.externalIds[k] !== v))
            await ovs.apply([{ op: 'set-interface', name: port.name, iface: { externalIds: ids } }]);
          this.errors.delete(ep.id);
          continue;
        }
        if (ep.joined && !(await links.linkExists(ep.hostIf))) {
          this.forget(ep.id, 'its veth is gone with the container');
          continue;
        }
        if (!ep.joined)
          await links.makeVeth(ep.hostIf, ep.peerIf, { mac: ep.mac, mtu: ep.mtu, userspace: this.o.userspace });
        await ovs.apply([{ op: 'add-port', bridge, port: ep.hostIf, iface: { externalIds: ids } }]);
        this.errors.delete(ep.id);
        out.ports.push(ep.hostIf);
        out.changed = true;
        this.o.log.info(
          { endpoint: ep.id.slice(0, 12), ip: ep.ip, ip6: ep.ip6, mac: ep.mac, mtu: ep.mtu, port: ep.hostIf },
          'docker endpoint plugged',
        );
      } catch (err) {
        const reason = `plugging failed: ${(err as Error).message}`;
        // a pair made for a port that could not be added would outlive the endpoint
        if (!ep.joined && !port) await links.deleteLink(ep.hostIf).catch(() => {});
        this.errors.set(ep.id, reason);
        this.o.log.warn({ endpoint: ep.id.slice(0, 12), reason }, `docker endpoint ${ep.id.slice(0, 12)}: ${reason}`);
      }
    }
    this.nameNotes = notes;
    for (const [id, port] of portOf) {
      if (this.eps[id]) continue;
      try {
        await unplugPort(ovs, links, bridge, port.name);
        this.o.log.info({ endpoint: id.slice(0, 12), port: port.name }, 'docker endpoint unplugged');
        out.changed = true;
      } catch (err) {
        // retried next pass; it must not fail the endpoints being plugged now
        this.o.log.warn({ endpoint: id.slice(0, 12), err: (err as Error).message }, 'docker endpoint port not removed');
      }
    }
    // flows for the new ports before Docker is told the endpoint exists
    if (out.changed) {
      await this.o.onChange(await portNumbers(ovs, bridge, out.ports));
    }
  }

  /**
   * The first pass after a start: an endpoint port on the bridge that the table does not know
   * (its file was lost or unreadable) is taken back from the port's binding rather than
   * unplugged under a running container; the sweep then drops it if Docker has no such endpoint.
   */
  private adoptPorts(portOf: Map<string, OvsInterface>): void {
    this.adopted = true;
    const snap = this.o.snapshot();
    const next = { ...this.eps };
    let t = this.o.ipam.table;
    for (const [id, port] of portOf) {
      const b = parseBinding(port.externalIds);
      const gw = snap && b ? hostGatewayOf(snap, b.network) : undefined;
      if (next[id] || !b || !gw) continue;
      const gw6 = b.ip6 && snap ? hostGateway6Of(snap, b.network) : undefined;
      next[id] = {
        id,
        dockerNetwork: '',
        network: b.network,
        ip: b.ip,
        prefixLen: gw.prefixLen,
        mac: b.mac,
        mtu: port.mtu,
        gateway: gw.ip,
        ...(gw6 ? { ip6: b.ip6, prefixLen6: gw6.prefixLen6, gateway6: gw6.ip6 } : {}),
        ...endpointIfNames(id),
        created: Date.now(),
        joined: true,
      };
      t = bind(t, b.network, b.ip, `ep:${id}`);
      if (gw6) t = bind(t, b.network, b.ip6!, `ep:${id}`);
      this.o.log.warn({ endpoint: id.slice(0, 12), ip: b.ip }, 'docker endpoint taken back from its port');
    }
    if (Object.keys(next).length !== Object.keys(this.eps).length) {
      this.o.ipam.save(t);
      this.save(next);
    }
  }

  /**
   * Endpoints Docker no longer has (it removed them while the agent was down) are dropped, and
   * addresses it never released: held for an endpoint never made (`docker:`) or for one that
   * is gone (`ep:`), each after a grace in which Docker may still be busy with them.
   */
  async sweep(): Promise<void> {
    const now = Date.now();
    if (sweepDue(Object.values(this.eps), this.lastSweep, now)) {
      this.lastSweep = now;
      let live: Set<string>;
      try {
        live = await this.o.dockerEndpoints();
      } catch {
        return; // Docker unreachable: keep everything
      }
      for (const id of endpointsGoneFromDocker(Object.values(this.eps), live, now)) {
        this.forget(id, 'Docker no longer has it');
        this.loop.markDirty('endpoint forgotten');
      }
    }
    const before = this.o.ipam.table;
    const { stale, orphanSince } = computeStaleHolders(before, (id) => !!this.eps[id], this.orphanSince, now);
    this.orphanSince = orphanSince;
    let t = before;
    for (const h of stale) t = release(t, h);
    if (t !== before) this.o.ipam.save(t);
  }
}
