// Networks: create (a GRE key never used before, a slice for every admitted host), delete
// (refused while containers are attached), the default network on first start; and the
// slice allocation a join or a new network makes inside its transaction.
import { checkTunnelIps } from '../common/wireguard.js';
import { pickGreKey, pickSlice, sliceCount } from './allocator.js';
import { exhausted, exists, invalid, notFound, precondition } from './errors.js';
import type { DefaultNetwork, NetworkRec, NetworkView } from './model.js';
import type { CoordState } from './state.js';
import type { Tx } from './store.js';
import { parseIsolation, policyIpv4Only } from './policy.js';
import {
  DEFAULT_IPV6_HOST_PREFIX_LEN,
  checkIpv6Spec,
  checkName,
  checkNetworkSpec,
  checkOverlayVsUnderlay,
  trunc,
} from './validate.js';

/** Pure: a network as the coordinator answers with it (isolation and rules always present) */
export function networkView({ createdMs: _c, ...n }: NetworkRec): NetworkView {
  return {
    ...n,
    isolation: n.isolation ?? 'none',
    rules: n.rules ?? [],
    ipv6Cidr: n.ipv6Cidr ?? '',
    ipv6HostPrefixLen: n.ipv6HostPrefixLen ?? 0,
  };
}

/** store meta: the highest GRE key ever handed out (keys are never reused) */
const GRE_KEY_HIGH = 'greKeyHigh';

/** In a transaction: host's slice of network n (its earlier one if free), or EXHAUSTED. */
export function allocateSlice(t: Tx, n: NetworkRec, host: string): void {
  const slices = t.slices(n.name);
  const idx = pickSlice(n, slices, host);
  if (idx === undefined) {
    throw exhausted(`network ${n.name} (${n.cidr}) is full: all ${sliceCount(n)} /${n.hostPrefixLen} slices are taken`);
  }
  const cur = slices.find((s) => s.idx === idx);
  if (cur?.host === host) return;
  t.putSlice({ network: n.name, idx, host, lastHost: host, releasedMs: null });
}

export class Networks {
  constructor(private readonly s: CoordState) {}

  /** Creates the default network on first start (never again: it may be deleted later). */
  async init(def?: DefaultNetwork): Promise<void> {
    const s = this.s;
    const first = await s.store.tx((t) => t.meta('initialized') === undefined);
    if (!first) return;
    // a start that died between the two commits left the network without the mark: no second create
    if (def && !s.nets.some((n) => n.name === def.name))
      await this.createNetwork(def.name, def.cidr, def.hostPrefixLen, def.mtu);
    await s.store.tx((t) => t.setMeta('initialized', String(s.now())));
  }

  async createNetwork(
    name: string,
    cidr: string,
    hostPrefixLen: number,
    mtu: number,
    isolationName = '',
    ipv6?: { cidr: string; hostPrefixLen: number },
  ): Promise<NetworkView> {
    const s = this.s;
    const isolation = parseIsolation(isolationName);
    const v6 = ipv6?.cidr
      ? { cidr: ipv6.cidr, hostPrefixLen: ipv6.hostPrefixLen || DEFAULT_IPV6_HOST_PREFIX_LEN }
      : undefined;
    if (!ipv6?.cidr && ipv6?.hostPrefixLen) throw invalid('--ipv6-host-prefix-len needs --ipv6-cidr');
    const bad =
      checkName('network', name) ??
      checkNetworkSpec(cidr, hostPrefixLen, mtu, []) ??
      (v6 ? checkIpv6Spec(v6.cidr, v6.hostPrefixLen, { cidr, hostPrefixLen }, []) : undefined) ??
      (typeof isolation === 'string' ? undefined : isolation.problem);
    if (bad) throw invalid(bad);
    if (v6 && isolation === 'groups') policyIpv4Only({ name, ipv6Cidr: v6.cidr });
    const net = await s.change('network create', (t) => {
      if (t.network(name)) throw exists(`network ${name} already exists`);
      const overlap =
        checkNetworkSpec(cidr, hostPrefixLen, mtu, t.networks()) ??
        checkOverlayVsUnderlay(
          [{ name, cidr }],
          [
            ...t.hosts().map((h) => ({ what: `host ${h.name}'s underlay IP`, ip: h.underlayIp })),
            ...s.ownAddresses.map((ip) => ({ what: "the coordinator's address", ip })),
          ],
        );
      const overlap6 = v6
        ? checkIpv6Spec(v6.cidr, v6.hostPrefixLen, { cidr, hostPrefixLen }, t.networks(), [
            ...t.hosts().map((h) => ({ what: `host ${h.name}'s underlay IP`, ip: h.underlayIp })),
            ...s.ownAddresses.map((ip) => ({ what: "the coordinator's address", ip })),
          ])
        : undefined;
      const tunnels = s.encryption === 'wireguard' ? checkTunnelIps([], s.tunnelCidr, [{ name, cidr }]) : undefined;
      const problem = overlap ?? overlap6 ?? tunnels;
      if (problem) throw invalid(problem);
      const greKey = pickGreKey(t.networks(), Number(t.meta(GRE_KEY_HIGH) ?? 0));
      const n: NetworkRec = {
        name,
        cidr,
        hostPrefixLen,
        greKey,
        mtu,
        createdMs: s.now(),
        ...(isolation === 'groups' ? { isolation } : {}),
        ...(v6 ? { ipv6Cidr: v6.cidr, ipv6HostPrefixLen: v6.hostPrefixLen } : {}),
      };
      t.putNetwork(n);
      t.setMeta(GRE_KEY_HIGH, String(greKey));
      const hosts = t.hosts();
      if (hosts.length > sliceCount(n)) {
        throw exhausted(
          `network ${name} (${cidr}) has ${sliceCount(n)} /${hostPrefixLen} slices for ${hosts.length} admitted hosts`,
        );
      }
      for (const h of hosts) allocateSlice(t, n, h.name);
      return { result: n, upserts: hosts.map((h) => h.name), removes: [] };
    });
    s.log.info({ network: name, cidr, hostPrefixLen, ipv6Cidr: v6?.cidr, greKey: net.greKey }, 'network created');
    return networkView(net);
  }

  async deleteNetwork(name: string): Promise<void> {
    const s = this.s;
    if (!s.nets.some((n) => n.name === name)) throw notFound(`no network named "${trunc(name)}"`);
    const attached = [...s.soft.entries()].flatMap(([h, x]) =>
      x.endpoints.filter((e) => e.network === name).map(() => h),
    );
    if (attached.length) {
      throw precondition(
        `network ${name} still has ${attached.length} attached containers (on ${[...new Set(attached)].join(', ')})`,
      );
    }
    await s.change('network delete', (t) => {
      t.deleteNetwork(name);
      return { result: undefined, upserts: t.hosts().map((h) => h.name), removes: [] };
    });
    s.log.info({ network: name }, 'network deleted');
  }
}
