// LinkDriver: the kernel side (addresses, links, MTU) through `ip`.
import type { Runner } from '../../common/exec.js';
import { formatIp6, parseIfaceCidr6 } from '../../common/ipv6.js';

/** `ip`'s family flag for an address */
const familyOf = (ip: string): '-4' | '-6' => (ip.includes(':') ? '-6' : '-4');

const canonicalCidr6 = (c: string): string => {
  const p = parseIfaceCidr6(c);
  return p ? `${formatIp6(p.ip)}/${p.prefix}` : c;
};

/** a container's veth as plugContainer makes it: its interface inside, MAC, MTU, addresses (IPv6 one: dual-stack), default gateway */
export interface PlugSpec {
  iface: string;
  mac: string;
  mtu: number;
  cidr: string;
  cidr6?: string;
  gateway: string | undefined;
  userspace: boolean;
}

export interface LinkDriver {
  /** make dev carry exactly this IPv4 address (ip/prefix) among its global ones (and this IPv6 one, if given), up, with this MTU */
  ensureAddress(dev: string, cidr: string, mtu: number, cidr6?: string): Promise<void>;
  /** MTU of the interface that holds this local IPv4 address; undefined if none does */
  mtuOfAddress(ip: string): Promise<number | undefined>;
  /** the local source address used to reach dst */
  sourceFor(dst: string): Promise<string | undefined>;
  /** the device holding a local address, with its prefix and the gateway routes through it */
  underlayOf(ip: string): Promise<{ dev: string; cidr: string; mtu: number; routes: string[][] } | undefined>;
  /** make sure dev is up with cidr and these routes (argv tails of `ip route replace`) */
  ensureUnderlay(dev: string, cidr: string, routes: string[][]): Promise<void>;
  /**
   * A veth pair: hostIf stays here (up, TX checksum offload off), the peer goes into the
   * network namespace of process pid as iface, with MAC, MTU, address and default route.
   */
  plugContainer(pid: number, hostIf: string, c: PlugSpec): Promise<void>;
  /**
   * A veth pair for a Docker endpoint: hostIf here (up, for the bridge), peerIf also here,
   * down, with the endpoint's MAC and MTU, for Docker to move into the container.
   */
  makeVeth(hostIf: string, peerIf: string, c: { mac: string; mtu: number; userspace: boolean }): Promise<void>;
  /** bring the container's interface up and add its default routes (after its flows exist) */
  activateContainer(pid: number, iface: string, gateway: string | undefined, gateway6?: string): Promise<void>;
  /** delete a link; a missing one is fine */
  deleteLink(name: string): Promise<void>;
  linkExists(name: string): Promise<boolean>;
  /** set an IPv4 sysctl of this namespace (net.ipv4.*) */
  sysctl(key: string, value: string): Promise<void>;
}

/**
 * A container's veth in one process: $1 pid, $2 host-side name, $3 interface in the
 * container, $4 MAC, $5 MTU, $6 address/prefix, $7 userspace datapath (1/0), $8 IPv6 address/prefix or ''.
 * The peer is created directly in the container's namespace with its name, MAC and MTU
 * (a link moved between namespaces would lose its addresses), addressed but left down:
 * it comes up (activateContainer) once the bridge forwards for it. A leftover of the
 * same name (an agent killed halfway) is removed only when the first try finds it.
 * With the userspace datapath, which reads the veth through a packet socket, neither
 * side may leave checksums to offload (the host stack's view of these frames is dropped
 * by static nftables rules: agent/nat.ts).
 */
export const PLUG_SCRIPT = `set -e
add() { ip link add "$2" mtu "$5" up type veth peer name "$3" address "$4" mtu "$5" netns "$1"; }
add "$@" 2>/dev/null || { ip link del "$2" 2>/dev/null || true; add "$@"; }
nsenter -t "$1" -n sh -c 'ip addr add "$1" dev "$2" && { [ -z "$4" ] || { sysctl -qw "net.ipv6.conf.$2.disable_ipv6=0" "net.ipv6.conf.$2.accept_dad=0" && ip -6 addr add "$4" dev "$2" nodad; }; } && { [ "$3" != 1 ] || ethtool -K "$2" tx off >/dev/null; }' sh "$6" "$3" "$7" "$8"
[ "$7" != 1 ] || ethtool -K "$2" tx off >/dev/null
`;

/**
 * An endpoint's veth pair in one process: $1 host side, $2 peer, $3 MAC, $4 MTU, $5 userspace
 * datapath (1/0). The peer stays in this namespace, down: Docker moves it into the container,
 * renames it and sets its address and routes after Join. A leftover pair of the same name
 * (an agent killed halfway) is replaced.
 */
export const VETH_SCRIPT = `set -e
add() { ip link add "$1" mtu "$4" up type veth peer name "$2" address "$3" mtu "$4"; }
add "$@" 2>/dev/null || { ip link del "$1" 2>/dev/null || true; ip link del "$2" 2>/dev/null || true; add "$@"; }
[ "$5" != 1 ] || { ethtool -K "$1" tx off >/dev/null; ethtool -K "$2" tx off >/dev/null; }
`;

interface IpAddrJson {
  ifname: string;
  mtu: number;
  operstate?: string;
  flags?: string[];
  addr_info: { family: string; local: string; prefixlen: number; scope: string }[];
}

export class IpLinkDriver implements LinkDriver {
  constructor(private readonly run: Runner) {}

  private async addrs(dev?: string, family: '-4' | '-6' = '-4'): Promise<IpAddrJson[]> {
    const r = await this.run(['ip', '-j', family, 'addr', 'show', ...(dev ? ['dev', dev] : [])]);
    return JSON.parse(r.stdout || '[]') as IpAddrJson[];
  }

  async ensureAddress(dev: string, cidr: string, mtu: number, cidr6?: string): Promise<void> {
    await this.ensureAddress6(dev, cidr6);
    const [link] = await this.addrs(dev);
    const have = (link?.addr_info ?? [])
      .filter((a) => a.family === 'inet' && a.scope === 'global')
      .map((a) => `${a.local}/${a.prefixlen}`);
    for (const h of have) if (h !== cidr) await this.run(['ip', 'addr', 'del', h, 'dev', dev]);
    if (!have.includes(cidr)) await this.run(['ip', 'addr', 'replace', cidr, 'dev', dev]);
    if (!link || link.mtu !== mtu || !(link.flags ?? []).includes('UP')) {
      await this.run(['ip', 'link', 'set', 'dev', dev, 'mtu', String(mtu), 'up']);
      // the host takes no routes from the overlay: no router advertisements, no redirects
      await this.run(
        [
          'sysctl',
          '-qw',
          `net.ipv6.conf.${dev}.accept_ra=0`,
          `net.ipv6.conf.${dev}.accept_redirects=0`,
          `net.ipv4.conf.${dev}.accept_redirects=0`,
          `net.ipv4.conf.${dev}.send_redirects=0`,
        ],
        { okCodes: [255] },
      );
    }
  }

  /** dev's global IPv6 addresses: exactly cidr6 (none without it), without duplicate detection (it is ours alone) */
  private async ensureAddress6(dev: string, cidr6: string | undefined): Promise<void> {
    const r = await this.run(['ip', '-j', '-6', 'addr', 'show', 'dev', dev], { okCodes: [1] });
    const [link] = JSON.parse(r.stdout || '[]') as IpAddrJson[];
    const have = (link?.addr_info ?? [])
      .filter((a) => a.family === 'inet6' && a.scope === 'global')
      .map((a) => `${a.local}/${a.prefixlen}`);
    const want = cidr6 ? canonicalCidr6(cidr6) : undefined;
    for (const h of have) if (h !== want) await this.run(['ip', '-6', 'addr', 'del', h, 'dev', dev]);
    if (want && !have.includes(want)) await this.run(['ip', '-6', 'addr', 'replace', want, 'dev', dev, 'nodad']);
  }

  async mtuOfAddress(ip: string): Promise<number | undefined> {
    const all = await this.addrs(undefined, familyOf(ip));
    return all.find((l) => l.addr_info.some((a) => a.local === ip))?.mtu;
  }

  async underlayOf(ip: string): Promise<{ dev: string; cidr: string; mtu: number; routes: string[][] } | undefined> {
    const link = (await this.addrs(undefined, familyOf(ip))).find((l) => l.addr_info.some((a) => a.local === ip));
    if (!link) return undefined;
    const a = link.addr_info.find((x) => x.local === ip)!;
    const r = await this.run(['ip', '-j', familyOf(ip), 'route', 'show', 'dev', link.ifname]);
    const routes = (JSON.parse(r.stdout || '[]') as { dst: string; gateway?: string }[])
      .filter((x) => x.gateway)
      .map((x) => [x.dst, 'via', x.gateway!, 'dev', link.ifname]);
    return { dev: link.ifname, cidr: `${ip}/${a.prefixlen}`, mtu: link.mtu, routes };
  }

  async ensureUnderlay(dev: string, cidr: string, routes: string[][]): Promise<void> {
    const [link] = await this.addrs(dev, familyOf(cidr.split('/')[0]!));
    if (!link) return;
    if (!(link.flags ?? []).includes('UP')) await this.run(['ip', 'link', 'set', 'dev', dev, 'up']);
    if (!link.addr_info.some((a) => `${a.local}/${a.prefixlen}` === cidr))
      await this.run(['ip', 'addr', 'replace', cidr, 'dev', dev]);
    for (const r of routes) await this.run(['ip', 'route', 'replace', ...r]);
  }

  async plugContainer(pid: number, hostIf: string, c: PlugSpec): Promise<void> {
    // One helper process for the whole plug (a shell and the tools it runs cost ~12 ms;
    // spawning each tool from Node cost ~54 ms). Every value is an argument, never text.
    try {
      await this.run([
        'sh',
        '-c',
        PLUG_SCRIPT,
        'gremesh-plug',
        String(pid),
        hostIf,
        c.iface,
        c.mac,
        String(c.mtu),
        c.cidr,
        c.userspace ? '1' : '0',
        c.cidr6 ?? '',
      ]);
    } catch (e) {
      await this.deleteLink(hostIf);
      throw e;
    }
  }

  async makeVeth(hostIf: string, peerIf: string, c: { mac: string; mtu: number; userspace: boolean }): Promise<void> {
    try {
      await this.run([
        'sh',
        '-c',
        VETH_SCRIPT,
        'gremesh-veth',
        hostIf,
        peerIf,
        c.mac,
        String(c.mtu),
        c.userspace ? '1' : '0',
      ]);
    } catch (e) {
      await this.deleteLink(hostIf);
      throw e;
    }
  }

  async activateContainer(pid: number, iface: string, gateway: string | undefined, gateway6?: string): Promise<void> {
    const batch = [
      `link set ${iface} up`,
      ...(gateway ? [`route replace default via ${gateway} dev ${iface}`] : []),
      ...(gateway6 ? [`-6 route replace default via ${gateway6} dev ${iface}`] : []),
    ];
    await this.run(['nsenter', '-t', String(pid), '-n', 'ip', '-batch', '-'], { input: `${batch.join('\n')}\n` });
  }

  async deleteLink(name: string): Promise<void> {
    await this.run(['ip', 'link', 'del', name], { okCodes: [1] });
  }

  async linkExists(name: string): Promise<boolean> {
    const r = await this.run(['ip', '-j', 'link', 'show', 'dev', name], { okCodes: [1] });
    return r.exitCode === 0;
  }

  async sysctl(key: string, value: string): Promise<void> {
    await this.run(['sysctl', '-qw', `${key}=${value}`]);
  }

  async sourceFor(dst: string): Promise<string | undefined> {
    try {
      const r = await this.run(['ip', '-j', 'route', 'get', dst]);
      return (JSON.parse(r.stdout) as { prefsrc?: string }[])[0]?.prefsrc;
    } catch {
      return undefined;
    }
  }
}
