// LinkDriver: the kernel side (addresses, links, MTU) through `ip`.
import type { Runner } from '../common/exec.js';

export interface LinkDriver {
  /** make dev carry exactly this IPv4 address (ip/prefix) among its global ones, up, with this MTU */
  ensureAddress(dev: string, cidr: string, mtu: number): Promise<void>;
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
  plugContainer(
    pid: number,
    hostIf: string,
    c: { iface: string; mac: string; mtu: number; cidr: string; gateway: string | undefined; userspace: boolean },
  ): Promise<void>;
  /** bring the container's interface up and add its default route (after its flows exist) */
  activateContainer(pid: number, iface: string, gateway: string | undefined): Promise<void>;
  /** delete a link; a missing one is fine */
  deleteLink(name: string): Promise<void>;
  linkExists(name: string): Promise<boolean>;
  /** set an IPv4 sysctl of this namespace (net.ipv4.*) */
  sysctl(key: string, value: string): Promise<void>;
}

/** nftables table (family netdev) holding one ingress-drop chain per container veth */
export const NFT_NETDEV_TABLE = 'gremesh_ports';

interface IpAddrJson {
  ifname: string;
  mtu: number;
  operstate?: string;
  flags?: string[];
  addr_info: { family: string; local: string; prefixlen: number; scope: string }[];
}

export class IpLinkDriver implements LinkDriver {
  constructor(private readonly run: Runner) {}

  private async addrs(dev?: string): Promise<IpAddrJson[]> {
    const r = await this.run(['ip', '-j', '-4', 'addr', 'show', ...(dev ? ['dev', dev] : [])]);
    return JSON.parse(r.stdout || '[]') as IpAddrJson[];
  }

  async ensureAddress(dev: string, cidr: string, mtu: number): Promise<void> {
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

  async mtuOfAddress(ip: string): Promise<number | undefined> {
    const all = await this.addrs();
    return all.find((l) => l.addr_info.some((a) => a.local === ip))?.mtu;
  }

  async underlayOf(ip: string): Promise<{ dev: string; cidr: string; mtu: number; routes: string[][] } | undefined> {
    const link = (await this.addrs()).find((l) => l.addr_info.some((a) => a.local === ip));
    if (!link) return undefined;
    const a = link.addr_info.find((x) => x.local === ip)!;
    const r = await this.run(['ip', '-j', '-4', 'route', 'show', 'dev', link.ifname]);
    const routes = (JSON.parse(r.stdout || '[]') as { dst: string; gateway?: string }[])
      .filter((x) => x.gateway)
      .map((x) => [x.dst, 'via', x.gateway!, 'dev', link.ifname]);
    return { dev: link.ifname, cidr: `${ip}/${a.prefixlen}`, mtu: link.mtu, routes };
  }

  async ensureUnderlay(dev: string, cidr: string, routes: string[][]): Promise<void> {
    const [link] = await this.addrs(dev);
    if (!link) return;
    if (!(link.flags ?? []).includes('UP')) await this.run(['ip', 'link', 'set', 'dev', dev, 'up']);
    if (!link.addr_info.some((a) => `${a.local}/${a.prefixlen}` === cidr))
      await this.run(['ip', 'addr', 'replace', cidr, 'dev', dev]);
    for (const r of routes) await this.run(['ip', 'route', 'replace', ...r]);
  }

  async plugContainer(
    pid: number,
    hostIf: string,
    c: { iface: string; mac: string; mtu: number; cidr: string; gateway: string | undefined; userspace: boolean },
  ): Promise<void> {
    const peer = `gp${hostIf.slice(2)}`;
    await this.deleteLink(hostIf); // a leftover from a crash halfway
    await this.run([
      'ip',
      'link',
      'add',
      hostIf,
      'mtu',
      String(c.mtu),
      'type',
      'veth',
      'peer',
      'name',
      peer,
      'mtu',
      String(c.mtu),
      'netns',
      String(pid),
    ]);
    try {
      // addressed but down: it comes up (activateContainer) once the bridge forwards for it
      const batch = [
        `link set ${peer} name ${c.iface}`,
        `link set ${c.iface} address ${c.mac} mtu ${c.mtu}`,
        `addr add ${c.cidr} dev ${c.iface}`,
      ];
      await this.run(['nsenter', '-t', String(pid), '-n', 'ip', '-batch', '-'], { input: `${batch.join('\n')}\n` });
      if (c.userspace) {
        // the userspace datapath reads the veth through a packet socket; the host kernel
        // must neither fill checksums late (tx offload) nor handle the container's frames
        // itself (answer its ARP, route its packets): drop them at ingress, after the
        // packet socket has its copy
        await this.run(['nsenter', '-t', String(pid), '-n', 'ethtool', '-K', c.iface, 'tx', 'off']);
        await this.run(['ethtool', '-K', hostIf, 'tx', 'off']);
        await this.run(['nft', '-f', '-'], {
          input: `add table netdev ${NFT_NETDEV_TABLE}\nadd chain netdev ${NFT_NETDEV_TABLE} in-${hostIf} { type filter hook ingress device ${hostIf} priority 0; policy drop; }\n`,
        });
      }
      await this.run(['ip', 'link', 'set', hostIf, 'up']);
    } catch (e) {
      await this.deleteLink(hostIf);
      throw e;
    }
  }

  async activateContainer(pid: number, iface: string, gateway: string | undefined): Promise<void> {
    const batch = [`link set ${iface} up`, ...(gateway ? [`route replace default via ${gateway} dev ${iface}`] : [])];
    await this.run(['nsenter', '-t', String(pid), '-n', 'ip', '-batch', '-'], { input: `${batch.join('\n')}\n` });
  }

  async deleteLink(name: string): Promise<void> {
    await this.run(['ip', 'link', 'del', name], { okCodes: [1] });
    await this.run(['nft', 'delete', 'chain', 'netdev', NFT_NETDEV_TABLE, `in-${name}`], { okCodes: [1] });
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
