// What Docker's network + IPAM plugin (agent/docker/plugin/*) asks of the container side:
// addresses of this host's slice held for Docker, and its endpoints planned, plugged (by the
// endpoint loop) and remembered, with the same address table and port bindings as a
// labelled container's.
import { planEndpoint, endpointIfNames, type EndpointRequest } from './attachment.js';
import { gatewayOf } from '../bridge/desired.js';
import { allocate, bind, isContainerHolder, release, type FileIpam } from './ipam.js';
import type { Snapshot } from '../model.js';
import { ENDPOINT_KEY } from '../ovs/ids.js';
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
