// What Docker's network + IPAM plugin (agent/docker/plugin/*) asks of the container side:
// addresses of this host's slice held for Docker, and its endpoints planned, plugged (by the
// endpoint loop) and remembered, with the same address table and port bindings as a
// labelled container's.
import { dockerIpv6, ownReservation, planEndpoint, endpointIfNames, type EndpointRequest } from './attachment.js';
import { gateway6Of, gatewayOf } from '../bridge/desired.js';
import { allocate, bind, isContainerHolder, release, type FileIpam } from './ipam.js';
import type { Snapshot } from '../model.js';
import { ENDPOINT_KEY, parseBinding } from '../ovs/ids.js';
import type { OvsDriver } from '../ovs/driver.js';
import { computeMacHolders } from './bridge-ports.js';
import type { DockerEndpoint, EndpointLoop } from './endpoint-loop.js';

/** NetworkDriver.CreateEndpoint, as the plugin passes it on: the endpoint and its Docker network */
export type AddEndpoint = EndpointRequest & { id: string; dockerNetwork: string };

export const NO_STATE = 'the agent has no desired state yet (coordinator not reached)';

/** Pure: the one gremesh network in which ip is reserved for Docker (not yet an endpoint's), if exactly one. */
export function reservedNetworkOf(t: Record<string, Record<string, string>>, ip: string): string | undefined {
  const nets = Object.entries(t)
    .filter(([, ips]) => ips[ip]?.startsWith('docker:'))
    .map(([n]) => n);
  return nets.length === 1 ? nets[0] : undefined;
}

export interface PluginBackendOptions {
  ovs: OvsDriver;
  ipam: FileIpam;
  bridge: string;
  underlayMtu: number;
  snapshot: () => Snapshot | undefined;
  /** the endpoints' table and loop */
  endpoints: EndpointLoop;
  /** false while a corrupt address table waits to be rebuilt (by the label loop) */
  ipamReady: () => boolean;
}

export class PluginBackend {
  private reservations = 0;
  constructor(private readonly o: PluginBackendOptions) {}

  private get eps(): Record<string, DockerEndpoint> {
    return this.o.endpoints.eps;
  }

  /** IPAM: an address of this host's slice, held for Docker (`docker:TIME:N`) until its endpoint exists */
  reserveAddress(network: string, want: string | undefined): { ip: string; prefixLen: number } | { error: string } {
    const snap = this.o.snapshot();
    if (!snap) return { error: NO_STATE };
    if (!this.o.ipamReady())
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
   * IPAM, a Docker network made with --ipv6: an address of this host's IPv6 slice (dockerIpv6:
   * the one the endpoint's IPv4 address maps to when that is certain), held with the IPv4
   * reservation it pairs with, or for Docker on its own, until its endpoint exists. Refused,
   * the endpoint's IPv4 reservation goes too when it is certain which that is: Docker
   * (libnetwork's assignAddress) never releases the IPv4 address of an endpoint whose IPv6
   * one failed, and the sweep would hold it for a minute.
   */
  async reserveAddress6(
    network: string,
    want: string | undefined,
  ): Promise<{ ip6: string; prefixLen6: number } | { error: string }> {
    // the one await first: the choice and the write below happen in one turn
    const { interfaces } = await this.o.ovs.observe();
    const snap = this.o.snapshot();
    if (!snap) return { error: NO_STATE };
    if (!this.o.ipamReady())
      return { error: 'the address table is being rebuilt after it was found corrupt; try again in a moment' };
    const net = snap.networks.find((n) => n.name === network);
    const slice = snap.slices.find((x) => x.network === network);
    const refuse = (error: string) => {
      const own = ownReservation(this.o.ipam.table, network);
      if (own) this.o.ipam.save(release(this.o.ipam.table, own.holder));
      return { error };
    };
    if (!net || !slice) return refuse(`this host has no slice of gremesh network ${network}`);
    if (!net.ipv6Cidr || !slice.ipv6Cidr) return refuse(`gremesh network ${network} has no IPv6 prefix`);
    const onBridge = new Set<string>();
    for (const i of interfaces) {
      const b = i.bridge === this.o.bridge ? parseBinding(i.externalIds) : undefined;
      if (b?.ip6 && b.network === network) onBridge.add(b.ip6);
    }
    const s6 = { cidr: slice.cidr, ipv6Cidr: slice.ipv6Cidr };
    const a = dockerIpv6(this.o.ipam.table, network, s6, want, (ip6) => onBridge.has(ip6));
    if ('error' in a) return refuse(a.error);
    const holder = a.pairWith ?? `docker:${Date.now()}:${++this.reservations}`;
    this.o.ipam.save(bind(this.o.ipam.table, network, a.ip6, holder));
    return { ip6: a.ip6, prefixLen6: gateway6Of(slice.ipv6Cidr, net.ipv6Cidr).prefixLen6 };
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
    return reservedNetworkOf(this.o.ipam.table, ip);
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
    const { ovs, bridge, endpoints } = this.o;
    const plugged = async () =>
      (await ovs.observe()).interfaces.some(
        (i) => i.bridge === bridge && i.externalIds[ENDPOINT_KEY] === r.id && i.ofport > 0 && !i.error,
      );
    // everything that awaits comes first: the checks and the writes below happen in one turn
    const macs = computeMacHolders(bridge, (await ovs.observe()).interfaces);
    const known = this.eps[r.id];
    if (known) {
      // asked again (Docker retried after a lost answer): answer once it is plugged
      if (!(await plugged())) await endpoints.loop.markDirtyAndWait('docker endpoint asked again');
      const why = endpoints.errors.get(r.id);
      if (why) throw new Error(why);
      return known;
    }
    const snap = this.o.snapshot();
    if (!snap) throw new Error(NO_STATE);
    const plan = planEndpoint(r, snap, this.o.underlayMtu, (n, m) => (macs.get(`${n}/${m}`) ?? []).length > 0);
    for (const ip of [r.ip, ...('error' in plan || !plan.ip6 ? [] : [plan.ip6])]) {
      const holder = this.o.ipam.table[r.network]?.[ip];
      if (!holder || !(holder.startsWith('docker:') || holder === `ep:${r.id}`))
        throw new Error(
          `address ${ip} was not handed out by gremesh on this host: create the Docker network with --ipam-driver gremesh`,
        );
    }
    if ('error' in plan) throw new Error(plan.error);
    const ep: DockerEndpoint = {
      ...plan,
      id: r.id,
      dockerNetwork: r.dockerNetwork,
      ...endpointIfNames(r.id),
      created: Date.now(),
      joined: false,
    };
    let t = bind(this.o.ipam.table, r.network, r.ip, `ep:${r.id}`);
    if (plan.ip6) t = bind(t, r.network, plan.ip6, `ep:${r.id}`);
    this.o.ipam.save(t);
    endpoints.notOrphan(`ep:${r.id}`);
    endpoints.save({ ...this.eps, [r.id]: ep });
    await endpoints.loop.markDirtyAndWait('docker endpoint');
    // this endpoint's own outcome: its port is there, or why not
    if (!(await plugged())) {
      const why = endpoints.errors.get(r.id) ?? endpoints.loop.lastError?.message ?? 'its port was not added';
      endpoints.forget(r.id, why); // Docker rolls back: its ReleaseAddress frees the address
      endpoints.loop.markDirty('docker endpoint failed');
      throw new Error(why);
    }
    return ep;
  }

  /** NetworkDriver.Join: Docker takes the peer now (its veth lives with the container from here). */
  joinEndpoint(id: string): DockerEndpoint | undefined {
    const ep = this.eps[id];
    if (ep && !ep.joined) this.o.endpoints.save({ ...this.eps, [id]: { ...ep, joined: true } });
    return this.eps[id];
  }

  /** NetworkDriver.DeleteEndpoint: port and veth go; the address waits for Docker's ReleaseAddress. */
  async removeEndpoint(id: string): Promise<void> {
    if (!this.eps[id]) return;
    this.o.endpoints.forget(id, 'Docker deleted it');
    await this.o.endpoints.loop.markDirtyAndWait('docker endpoint deleted');
  }
}
