// Docker's remote NetworkDriver + IpamDriver, answered by the agent: the decisions are in
// protocol.ts (pure), the plumbing is the container reconciler's (the same address table,
// port binding, flows and errors as a labelled container's).
import type { Logger } from '../../../common/log.js';
import type { AddEndpoint, DockerEndpoint } from '../containers.js';
import type { Snapshot } from '../../model.js';
import { JsonTable } from '../../state-file.js';
import { hostGateway6Of, hostGatewayOf } from '../../bridge/desired.js';
import { canonicalIp6 } from '../../../common/ipv6.js';
import {
  ADDRESS_SPACE,
  bindNetwork,
  choosePool,
  isPool6,
  networkOfPool,
  type CreateNetworkRequest,
  type NetworkBinding,
  type PoolRequest,
} from './protocol.js';

/** What the plugin needs of the container side (ContainerReconciler). */
export interface PluginBackend {
  reserveAddress(network: string, want: string | undefined): { ip: string; prefixLen: number } | { error: string };
  reserveAddress6(
    network: string,
    want: string | undefined,
  ): Promise<{ ip6: string; prefixLen6: number } | { error: string }>;
  releaseAddress(network: string, ip: string): void;
  /** the one gremesh network in which ip is reserved for Docker (not yet an endpoint's), if exactly one */
  reservedIn(ip: string): string | undefined;
  addEndpoint(r: AddEndpoint): Promise<DockerEndpoint>;
  joinEndpoint(id: string): DockerEndpoint | undefined;
  removeEndpoint(id: string): Promise<void>;
  endpoint(id: string): DockerEndpoint | undefined;
}

export type PluginHandler = (body: Record<string, unknown>) => Promise<unknown>;

export class PluginError extends Error {}

const GATEWAY_REQUEST = 'com.docker.network.gateway';
/** how long the IPv4 pool Docker asked for names the network of an IPv6 pool asked without --subnet (ms) */
const POOL_HINT_MS = 10_000;

export class DockerPlugin {
  /** Docker network id -> the gremesh network it is (docker-networks.json: Docker never says it again) */
  private readonly bindings: JsonTable<NetworkBinding>;
  /** the gremesh network of the last IPv4 pool handed out: Docker asks for the IPv6 one right after */
  private lastPool4: { network: string; at: number } | undefined;

  constructor(
    private readonly o: {
      backend: PluginBackend;
      snapshot: () => Snapshot | undefined;
      stateDir: string;
      log: Logger;
    },
  ) {
    this.bindings = new JsonTable(`${o.stateDir}/docker-networks.json`);
  }

  private get networks(): Record<string, NetworkBinding> {
    return this.bindings.value;
  }
  private save(next: Record<string, NetworkBinding>): void {
    this.bindings.save(next);
  }

  /** the gremesh network of a Docker network, by its id */
  binding(dockerNetwork: string): NetworkBinding | undefined {
    return this.networks[dockerNetwork];
  }

  private fail(message: string): never {
    throw new PluginError(message);
  }

  /** every path Docker calls, by URL path */
  handlers(): Record<string, PluginHandler> {
    const ok = async () => ({});
    return {
      '/Plugin.Activate': async () => ({ Implements: ['NetworkDriver', 'IpamDriver'] }),
      // ---- NetworkDriver
      '/NetworkDriver.GetCapabilities': async () => ({ Scope: 'local', ConnectivityScope: 'global' }),
      '/NetworkDriver.CreateNetwork': async (b) => this.createNetwork(b as unknown as CreateNetworkRequest),
      '/NetworkDriver.DeleteNetwork': async (b) => {
        const next = { ...this.networks };
        delete next[String(b.NetworkID)];
        this.save(next);
        return {};
      },
      '/NetworkDriver.CreateEndpoint': async (b) => this.createEndpoint(b),
      '/NetworkDriver.EndpointOperInfo': async (b) => {
        const ep = this.o.backend.endpoint(String(b.EndpointID));
        return {
          Value: ep
            ? {
                ip: ep.ip,
                ...(ep.ip6 ? { ip6: ep.ip6 } : {}),
                mac: ep.mac,
                mtu: ep.mtu,
                port: ep.hostIf,
                network: ep.network,
              }
            : {},
        };
      },
      '/NetworkDriver.DeleteEndpoint': async (b) => {
        await this.o.backend.removeEndpoint(String(b.EndpointID));
        return {};
      },
      '/NetworkDriver.Join': async (b) => {
        const ep = this.o.backend.joinEndpoint(String(b.EndpointID));
        if (!ep) this.fail(`unknown endpoint ${String(b.EndpointID).slice(0, 12)} (not created through gremesh)`);
        return {
          InterfaceName: { SrcName: ep.peerIf, DstPrefix: 'eth' },
          Gateway: ep.gateway,
          ...(ep.gateway6 ? { GatewayIPv6: ep.gateway6 } : {}),
          DisableGatewayService: true,
        };
      },
      '/NetworkDriver.Leave': ok,
      '/NetworkDriver.DiscoverNew': ok,
      '/NetworkDriver.DiscoverDelete': ok,
      '/NetworkDriver.ProgramExternalConnectivity': ok,
      '/NetworkDriver.RevokeExternalConnectivity': ok,
      '/NetworkDriver.AllocateNetwork': async () => ({ Options: {} }),
      '/NetworkDriver.FreeNetwork': ok,
      // ---- IpamDriver
      '/IpamDriver.GetCapabilities': async () => ({ RequiresMACAddress: false, RequiresRequestReplay: false }),
      '/IpamDriver.GetDefaultAddressSpaces': async () => ({
        LocalDefaultAddressSpace: ADDRESS_SPACE,
        GlobalDefaultAddressSpace: ADDRESS_SPACE,
      }),
      '/IpamDriver.RequestPool': async (b) => {
        const hint =
          this.lastPool4 && Date.now() - this.lastPool4.at < POOL_HINT_MS ? this.lastPool4.network : undefined;
        const p = choosePool(b as PoolRequest, this.o.snapshot(), hint);
        if ('error' in p) this.fail(p.error);
        if (!isPool6(p.PoolID)) this.lastPool4 = { network: networkOfPool(p.PoolID)!, at: Date.now() };
        return p;
      },
      '/IpamDriver.ReleasePool': ok,
      '/IpamDriver.RequestAddress': async (b) => this.requestAddress(b),
      '/IpamDriver.ReleaseAddress': async (b) => {
        const pool = String(b.PoolID ?? '');
        const network = networkOfPool(pool);
        const ip = String(b.Address ?? '').split('/')[0]!;
        if (network) this.o.backend.releaseAddress(network, isPool6(pool) ? (canonicalIp6(ip) ?? ip) : ip);
        return {};
      },
    };
  }

  private createNetwork(r: CreateNetworkRequest): object {
    const b = bindNetwork(r, this.o.snapshot());
    if ('error' in b) this.fail(b.error);
    this.save({ ...this.networks, [r.NetworkID]: b });
    this.o.log.info({ dockerNetwork: r.NetworkID.slice(0, 12), ...b }, 'docker network bound');
    return {};
  }

  private async requestAddress(b: Record<string, unknown>): Promise<object> {
    const pool = String(b.PoolID ?? '');
    const network = networkOfPool(pool);
    if (!network) this.fail(`pool ${String(b.PoolID)} is not gremesh's`);
    const want = b.Address ? String(b.Address).split('/')[0] : undefined;
    const opts = (b.Options ?? {}) as Record<string, string>;
    if (isPool6(pool)) return this.requestAddress6(network, want, opts.RequestAddressType === GATEWAY_REQUEST);
    if (opts.RequestAddressType === GATEWAY_REQUEST) {
      const s = this.o.snapshot();
      const gw = s && hostGatewayOf(s, network);
      if (!gw) this.fail(`this host has no slice of gremesh network ${network}`);
      if (want && want !== gw.ip) this.fail(`--gateway ${want}: gremesh sets each host's gateway (here ${gw.ip})`);
      return { Address: `${gw.ip}/${gw.prefixLen}`, Data: {} };
    }
    const a = this.o.backend.reserveAddress(network, want);
    if ('error' in a) this.fail(a.error);
    return { Address: `${a.ip}/${a.prefixLen}`, Data: {} };
  }

  private async requestAddress6(network: string, want: string | undefined, gateway: boolean): Promise<object> {
    if (gateway) {
      const s = this.o.snapshot();
      const gw = s && hostGateway6Of(s, network);
      if (!gw) this.fail(`this host has no IPv6 slice of gremesh network ${network}`);
      if (want && canonicalIp6(want) !== gw.ip6)
        this.fail(`IPv6 --gateway ${want}: gremesh sets each host's gateway (here ${gw.ip6})`);
      return { Address: `${gw.ip6}/${gw.prefixLen6}`, Data: {} };
    }
    const a = await this.o.backend.reserveAddress6(network, want);
    if ('error' in a) this.fail(a.error);
    return { Address: `${a.ip6}/${a.prefixLen6}`, Data: {} };
  }

  private async createEndpoint(b: Record<string, unknown>): Promise<object> {
    const dockerNetwork = String(b.NetworkID ?? '');
    const id = String(b.EndpointID ?? '');
    const iface = (b.Interface ?? {}) as { Address?: string; AddressIPv6?: string; MacAddress?: string };
    const ip = iface.Address?.split('/')[0];
    const ip6 = iface.AddressIPv6 ? iface.AddressIPv6.split('/')[0] : undefined;
    if (!ip) this.fail('no IPv4 address given: create the network with --ipam-driver gremesh');
    let bound = this.networks[dockerNetwork];
    if (!bound) {
      // its binding was lost with the state dir: the address our IPAM just reserved says which network
      const network = this.o.backend.reservedIn(ip);
      if (!network)
        this.fail(
          `Docker network ${dockerNetwork.slice(0, 12)} is not known to this agent: remove and create it again`,
        );
      bound = { network };
      this.save({ ...this.networks, [dockerNetwork]: bound });
      this.o.log.warn(
        { dockerNetwork: dockerNetwork.slice(0, 12), network },
        'docker network bound again from its address',
      );
    }
    const ep = await this.o.backend.addEndpoint({
      id,
      dockerNetwork,
      network: bound.network,
      ip,
      ...(ip6 ? { ip6 } : {}),
      mac: iface.MacAddress || undefined,
      mtu: bound.mtu,
    });
    // Docker sets the MAC we answer on the interface; one it was given must not come back
    return { Interface: iface.MacAddress ? {} : { MacAddress: ep.mac } };
  }
}
