// Pure: Docker's remote NetworkDriver and IpamDriver plugin API (moby's libnetwork
// docs/remote.md and docs/ipam.md) as gremesh answers it. A Docker network of driver
// `gremesh` is bound to one gremesh network: its subnet is that network's CIDR, its
// gateway this host's gateway, and every address comes from this host's slice. A
// dual-stack gremesh network can be one with --ipv6: its IPv6 pool is the network's IPv6
// prefix (or this host's IPv6 slice), its IPv6 gateway this host's.
import { parseCidr } from '../../../common/ipv4.js';
import { canonicalIp6, formatCidr6, parseCidr6 } from '../../../common/ipv6.js';
import { quoted } from '../../../common/text.js';
import { gateway6Of, gatewayOf, hostGatewayOf } from '../../bridge/desired.js';
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

export function sameCidr6(a: string | undefined, b: string | undefined): boolean {
  const x = a === undefined ? undefined : parseCidr6(a);
  const y = b === undefined ? undefined : parseCidr6(b);
  return !!x && !!y && x.base === y.base && x.prefix === y.prefix;
}

function knownNetworks6(s: Snapshot): string {
  const six = s.networks.filter((n) => n.ipv6Cidr);
  return six.map((n) => `${n.name} ${n.ipv6Cidr}`).join(', ') || 'no gremesh network has an IPv6 prefix';
}

/** this host's IPv6 slice of a network, if it has one */
function slice6Of(s: Snapshot, network: string): string | undefined {
  return s.slices.find((x) => x.network === network)?.ipv6Cidr;
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
export function choosePool(
  r: PoolRequest,
  s: Snapshot | undefined,
  /** the gremesh network of the IPv4 pool Docker asked for just before (it asks for the IPv6 pool next) */
  v4Network?: string,
): PoolAnswer | { error: string } {
  if (!s) return { error: NO_STATE };
  if (r.V6) return choosePool6(r, s, v4Network);
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

/**
 * RequestPool with V6 (`--ipv6`): the gremesh network whose IPv6 prefix (or this host's IPv6
 * slice of it) is the IPv6 `--subnet`, with this host's IPv6 gateway. Without one, the network
 * named by `--ipam-opt gremesh.network`, else the one of the IPv4 pool Docker asked for just
 * before (CreateNetwork checks that both pools are the same network's); `--ip6` needs the
 * subnet given (Docker's rule).
 */
function choosePool6(r: PoolRequest, s: Snapshot, v4Network: string | undefined): PoolAnswer | { error: string } {
  if (r.SubPool) return { error: '--ip-range is not supported: each host hands out the addresses of its own slice' };
  const named = r.Options?.[OPTION_NETWORK];
  let net: NetworkSpec | undefined;
  if (r.Pool) {
    if (!parseCidr6(r.Pool))
      return { error: `--subnet ${quoted(r.Pool)} is not an IPv6 network (ADDRESS/PREFIX, no host bits set)` };
    net = s.networks.find((n) => sameCidr6(n.ipv6Cidr, r.Pool) || sameCidr6(slice6Of(s, n.name), r.Pool));
    if (!net)
      return {
        error: `no gremesh network has the IPv6 prefix ${r.Pool}, nor is it this host's IPv6 slice of one (known: ${knownNetworks6(s)})`,
      };
    if (named !== undefined && named !== net.name)
      return {
        error: `--ipam-opt gremesh.network=${quoted(named)}, but --subnet ${r.Pool} is gremesh network ${net.name}`,
      };
  } else {
    const name = named ?? v4Network;
    net = s.networks.find((n) => n.name === name);
    if (!net)
      return {
        error: `--ipv6 needs the IPv6 --subnet too: the IPv6 prefix of the gremesh network (known: ${knownNetworks6(s)})`,
      };
  }
  if (!net.ipv6Cidr)
    return { error: `gremesh network ${net.name} has no IPv6 prefix: create the Docker network without --ipv6` };
  const slice6 = slice6Of(s, net.name);
  if (!slice6) return { error: `this host has no IPv6 slice of gremesh network ${net.name} yet` };
  const gw = gateway6Of(slice6, net.ipv6Cidr);
  return {
    PoolID: `${POOL6_PREFIX}${net.name}`,
    Pool: formatCidr6(parseCidr6(r.Pool ?? net.ipv6Cidr)!),
    Data: { [GATEWAY_KEY]: `${gw.ip6}/${gw.prefixLen6}` },
  };
}

const POOL6_PREFIX = 'gremesh6/';

/** whether a pool id we gave is an IPv6 pool */
export function isPool6(poolId: string): boolean {
  return poolId.startsWith(POOL6_PREFIX);
}

/** the gremesh network of a pool id we gave (IPv4 or IPv6); undefined if it is not one of ours */
export function networkOfPool(poolId: string): string | undefined {
  return /^gremesh6?\/(.+)$/.exec(poolId)?.[1];
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
  const v6Error = checkIpv6Data(r.IPv6Data ?? [], net, s);
  if (v6Error) return { error: v6Error };
  const mtuOpt = generic[OPTION_MTU];
  if (mtuOpt === undefined) return { network: net.name };
  const mtu = Number(mtuOpt);
  if (!/^\d+$/.test(String(mtuOpt)) || mtu < 576 || mtu > 65535)
    return { error: `-o ${OPTION_MTU}=${quoted(String(mtuOpt))} must be a whole number 576..65535` };
  return { network: net.name, mtu };
}

/** CreateNetwork with --ipv6: the IPv6 pool is the same gremesh network's, from our IPAM, with this host's IPv6 gateway. */
function checkIpv6Data(v6: IpamData[], net: NetworkSpec, s: Snapshot): string | undefined {
  if (!v6.length) return undefined;
  if (v6.length !== 1) return 'a gremesh Docker network has at most one IPv6 subnet';
  const pool = v6[0]!.Pool ?? '';
  if (!net.ipv6Cidr) return `gremesh network ${net.name} has no IPv6 prefix: create the Docker network without --ipv6`;
  const slice6 = slice6Of(s, net.name);
  if (!slice6) return `this host has no IPv6 slice of gremesh network ${net.name} yet`;
  if (v6[0]!.AddressSpace !== ADDRESS_SPACE)
    return `IPv6 subnet ${pool} comes from IPAM driver address space ${quoted(v6[0]!.AddressSpace ?? '')}: create the network with --ipam-driver gremesh`;
  if (!sameCidr6(pool, net.ipv6Cidr) && !sameCidr6(pool, slice6))
    return `IPv6 subnet ${pool} is not gremesh network ${net.name}'s IPv6 prefix ${net.ipv6Cidr} (nor this host's IPv6 slice ${slice6})`;
  const gw = gateway6Of(slice6, net.ipv6Cidr);
  const given = v6[0]!.Gateway?.split('/')[0];
  if (given && canonicalIp6(given) !== gw.ip6)
    return `IPv6 gateway ${given} is not this host's (${gw.ip6}): create the network with --ipam-driver gremesh and no IPv6 --gateway`;
  if (v6[0]!.AuxAddresses && Object.keys(v6[0]!.AuxAddresses).length)
    return '--aux-address is not supported: each host hands out the addresses of its own slice';
  return undefined;
}

/** a Docker network the agent makes: its name, gremesh network, subnet and (dual-stack) IPv6 subnet */
export interface DockerNetworkToMake {
  name: string;
  network: string;
  cidr: string;
  cidr6?: string;
}

export interface DockerNetworkInfo {
  id: string;
  name: string;
  driver: string;
  labels: Record<string, string>;
  options: Record<string, string>;
  subnet: string | undefined;
  /** whether it was made with --ipv6 (undefined: not known) */
  ipv6?: boolean;
  /** containers attached now, when known (Docker's network list does not say: 0 there) */
  containers: number;
}

/**
 * `--docker-networks auto`: the Docker networks this host should have, one per gremesh
 * network (`dockerNetworkName`), and the ones the agent made that should go (their gremesh
 * network is gone; Docker refuses while containers use them). A Docker network of that name
 * made by someone else is never touched: it is reported. A dual-stack gremesh network's is
 * made with --ipv6 and both subnets; one found IPv4 only is reported (Docker cannot add IPv6
 * to a network: it has to be removed and made again).
 */
export function planDockerNetworks(
  gremesh: NetworkSpec[],
  docker: DockerNetworkInfo[],
): { create: DockerNetworkToMake[]; remove: DockerNetworkInfo[]; conflicts: string[] } {
  const create: DockerNetworkToMake[] = [];
  const conflicts: string[] = [];
  const byName = new Map(docker.map((d) => [d.name, d]));
  for (const n of gremesh) {
    const name = dockerNetworkName(n.name);
    const d = byName.get(name);
    if (!d) create.push({ name, network: n.name, cidr: n.cidr, ...(n.ipv6Cidr ? { cidr6: n.ipv6Cidr } : {}) });
    else if (d.driver !== PLUGIN_NAME)
      conflicts.push(
        `Docker network ${name} exists with driver ${d.driver}: gremesh network ${n.name} is not made there`,
      );
    else if (d.subnet && !sameCidr(d.subnet, n.cidr))
      conflicts.push(`Docker network ${name} has subnet ${d.subnet}, gremesh network ${n.name} is ${n.cidr}`);
    else if (n.ipv6Cidr && d.ipv6 === false)
      conflicts.push(
        `Docker network ${name} is IPv4 only, gremesh network ${n.name} also has the IPv6 prefix ${n.ipv6Cidr}: remove it (docker network rm ${name}) to have it made again with IPv6`,
      );
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
