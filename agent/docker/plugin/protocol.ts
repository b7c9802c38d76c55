// Pure: Docker's remote NetworkDriver and IpamDriver plugin API (moby's libnetwork
// docs/remote.md and docs/ipam.md) as gremesh answers it. A Docker network of driver
// `gremesh` is bound to one gremesh network: its subnet is that network's CIDR, its
// gateway this host's gateway, and every address comes from this host's slice.
import { parseCidr } from '../../../common/ipv4.js';
import { quoted } from '../../../common/text.js';
import { gatewayOf, hostGatewayOf } from '../../bridge/desired.js';
import type { NetworkSpec, Snapshot } from '../../model.js';

/** the plugin's name: its socket is DIR/gremesh.sock; `-d gremesh --ipam-driver gremesh` */
export const PLUGIN_NAME = 'gremesh';
/** `-o gremesh.network=NAME` (driver option) / `--ipam-opt gremesh.network=NAME` */
export const OPTION_NETWORK = 'gremesh.network';
export const OPTION_MTU = 'com.docker.network.driver.mtu';
/** the label the agent puts on the Docker networks it creates itself (--docker-networks auto) */
export const AUTO_LABEL = 'gremesh.auto';
const GATEWAY_KEY = 'com.docker.network.gateway';
const GENERIC = 'com.docker.network.generic';
export const ADDRESS_SPACE = 'gremesh';
const NO_STATE = 'the agent has no desired state yet (coordinator not reached)';

/** Names Docker refuses for a network of its own: gremesh network NAME is `gremesh-NAME` there. */
const DOCKER_RESERVED = new Set(['bridge', 'host', 'none', 'default', 'ingress']);

export function dockerNetworkName(gremeshNetwork: string): string {
  return DOCKER_RESERVED.has(gremeshNetwork) ? `gremesh-${gremeshNetwork}` : gremeshNetwork;
}

function knownNetworks(s: Snapshot): string {
  return s.networks.map((n) => `${n.name} ${n.cidr}`).join(', ') || 'none';
}

export function sameCidr(a: string, b: string): boolean {
  const x = parseCidr(a);
  const y = parseCidr(b);
  return !!x && !!y && x.base === y.base && x.prefix === y.prefix;
}

export interface PoolRequest {
  AddressSpace?: string;
  Pool?: string;
  SubPool?: string;
  Options?: Record<string, string> | null;
  V6?: boolean;
}
export interface PoolAnswer {
  PoolID: string;
  Pool: string;
  Data: Record<string, string>;
}

/**
 * IpamDriver.RequestPool: the gremesh network whose CIDR is `--subnet`, with this host's
 * gateway. `--subnet` is required: Docker tells a plugin neither the network's name nor
 * its `-o` options, and a pool it did not get from the user is checked against this
 * host's routes, where the network's own route (its gateway) always overlaps.
 */
export function choosePool(r: PoolRequest, s: Snapshot | undefined): PoolAnswer | { error: string } {
  if (!s) return { error: NO_STATE };
  if (r.V6) return { error: 'gremesh networks are IPv4 only (no --ipv6)' };
  if (r.SubPool) return { error: '--ip-range is not supported: each host hands out the addresses of its own slice' };
  const named = r.Options?.[OPTION_NETWORK];
  if (!r.Pool)
    return {
      error: `--subnet is required: the CIDR of the gremesh network this Docker network is (known: ${knownNetworks(s)})`,
    };
  if (!parseCidr(r.Pool))
    return { error: `--subnet ${quoted(r.Pool)} is not an IPv4 network (ADDRESS/PREFIX, no host bits set)` };
  const net = s.networks.find((n) => sameCidr(n.cidr, r.Pool!));
  if (!net) return { error: `no gremesh network has the subnet ${r.Pool} (known: ${knownNetworks(s)})` };
  if (named !== undefined && named !== net.name)
    return {
      error: `--ipam-opt gremesh.network=${quoted(named)}, but --subnet ${r.Pool} is gremesh network ${net.name}`,
    };
  const slice = s.slices.find((x) => x.network === net.name);
  if (!slice) return { error: `this host has no slice of gremesh network ${net.name} yet` };
  const gw = gatewayOf(slice.cidr, net.cidr);
  return { PoolID: `gremesh/${net.name}`, Pool: net.cidr, Data: { [GATEWAY_KEY]: `${gw.ip}/${gw.prefixLen}` } };
}

/** the gremesh network of a pool id we gave; undefined if it is not one of ours */
export function networkOfPool(poolId: string): string | undefined {
  return /^gremesh\/(.+)$/.exec(poolId)?.[1];
}

export interface IpamData {
  AddressSpace?: string;
  Pool?: string;
  Gateway?: string;
  AuxAddresses?: Record<string, string> | null;
}
export interface CreateNetworkRequest {
  NetworkID: string;
  Options?: Record<string, unknown> | null;
  IPv4Data?: IpamData[] | null;
  IPv6Data?: IpamData[] | null;
}
export interface NetworkBinding {
  network: string;
  /** com.docker.network.driver.mtu, when given */
  mtu?: number;
}

/**
 * NetworkDriver.CreateNetwork: which gremesh network a Docker network is (its subnet, from
 * our IPAM), checked against `-o gremesh.network`, with the MTU option. A pool that is no
 * gremesh network's, or a gateway that is not this host's, means another IPAM driver made
 * it: refused, since two hosts' IPAMs would hand out the same addresses.
 */
export function bindNetwork(r: CreateNetworkRequest, s: Snapshot | undefined): NetworkBinding | { error: string } {
  if (!s) return { error: NO_STATE };
  const generic = (r.Options?.[GENERIC] ?? {}) as Record<string, unknown>;
  if (r.IPv6Data?.length) return { error: 'gremesh networks are IPv4 only (no --ipv6)' };
  for (const k of Object.keys(generic))
    if (k.startsWith('gremesh.') && k !== OPTION_NETWORK)
      return {
        error: `unknown option -o ${quoted(k)} (gremesh knows -o ${OPTION_NETWORK}=NAME and -o ${OPTION_MTU}=N)`,
      };
  const named = generic[OPTION_NETWORK] === undefined ? undefined : String(generic[OPTION_NETWORK]);
  if (named !== undefined && !s.networks.some((n) => n.name === named))
    return { error: `no gremesh network ${quoted(named)} (known: ${knownNetworks(s)})` };
  const v4 = r.IPv4Data ?? [];
  if (v4.length !== 1) return { error: 'a gremesh Docker network has exactly one subnet: --subnet CIDR' };
  const pool = v4[0]!.Pool ?? '';
  const net = s.networks.find((n) => sameCidr(n.cidr, pool));
  if (!net)
    return {
      error: `subnet ${pool} is no gremesh network's: create the network with --ipam-driver gremesh --subnet CIDR (known: ${knownNetworks(s)})`,
    };
  if (named !== undefined && named !== net.name)
    return { error: `-o gremesh.network=${quoted(named)}, but subnet ${pool} is gremesh network ${net.name}` };
  if (v4[0]!.AddressSpace !== ADDRESS_SPACE)
    return {
      error: `subnet ${pool} comes from IPAM driver address space ${quoted(v4[0]!.AddressSpace ?? '')}: create the network with --ipam-driver gremesh (two hosts' Docker IPAMs would hand out the same addresses)`,
    };
  const gw = hostGatewayOf(s, net.name);
  if (!gw) return { error: `this host has no slice of gremesh network ${net.name} yet` };
  const given = v4[0]!.Gateway?.split('/')[0];
  if (given && given !== gw.ip)
    return {
      error: `gateway ${given} is not this host's (${gw.ip}): create the network with --ipam-driver gremesh and no --gateway`,
    };
  if (v4[0]!.AuxAddresses && Object.keys(v4[0]!.AuxAddresses).length)
    return { error: '--aux-address is not supported: each host hands out the addresses of its own slice' };
  const mtuOpt = generic[OPTION_MTU];
  if (mtuOpt === undefined) return { network: net.name };
  const mtu = Number(mtuOpt);
  if (!/^\d+$/.test(String(mtuOpt)) || mtu < 576 || mtu > 65535)
    return { error: `-o ${OPTION_MTU}=${quoted(String(mtuOpt))} must be a whole number 576..65535` };
  return { network: net.name, mtu };
}

export interface DockerNetworkInfo {
  id: string;
  name: string;
  driver: string;
  labels: Record<string, string>;
  options: Record<string, string>;
  subnet: string | undefined;
  /** containers attached now, when known (Docker's network list does not say: 0 there) */
  containers: number;
}

/**
 * `--docker-networks auto`: the Docker networks this host should have, one per gremesh
 * network (`dockerNetworkName`), and the ones the agent made that should go (their gremesh
 * network is gone; Docker refuses while containers use them). A Docker network of that name
 * made by someone else is never touched: it is reported.
 */
export function planDockerNetworks(
  gremesh: NetworkSpec[],
  docker: DockerNetworkInfo[],
): { create: { name: string; network: string; cidr: string }[]; remove: DockerNetworkInfo[]; conflicts: string[] } {
  const create: { name: string; network: string; cidr: string }[] = [];
  const conflicts: string[] = [];
  const byName = new Map(docker.map((d) => [d.name, d]));
  for (const n of gremesh) {
    const name = dockerNetworkName(n.name);
    const d = byName.get(name);
    if (!d) create.push({ name, network: n.name, cidr: n.cidr });
    else if (d.driver !== PLUGIN_NAME)
      conflicts.push(
        `Docker network ${name} exists with driver ${d.driver}: gremesh network ${n.name} is not made there`,
      );
    else if (d.subnet && !sameCidr(d.subnet, n.cidr))
      conflicts.push(`Docker network ${name} has subnet ${d.subnet}, gremesh network ${n.name} is ${n.cidr}`);
  }
  const wanted = new Set(gremesh.map((n) => n.name));
  const remove = docker.filter(
    (d) =>
      d.driver === PLUGIN_NAME &&
      d.labels[AUTO_LABEL] === 'true' &&
      !wanted.has(d.options[OPTION_NETWORK] ?? '') &&
      d.containers === 0,
  );
  return { create, remove, conflicts };
}
