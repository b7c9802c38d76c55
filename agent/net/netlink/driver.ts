// NetlinkLinkDriver: the hot LinkDriver methods (plug a container, make an endpoint's veth,
// activate, delete, exists) over rtnetlink in this process: no process started per attach.
// The rest (addresses and routes of the host's own devices, sysctl) is done once per start
// and delegated to IpLinkDriver.
import type { Runner } from '../../../common/exec.js';
import { IpLinkDriver, type LinkDriver, type PlugSpec } from '../link-driver.js';
import * as nl from './codec.js';
import { NetlinkError } from './codec.js';
import { NetlinkSocket, writeSysctlIn } from './socket.js';

const isErr = (e: unknown, code: string): boolean => e instanceof NetlinkError && e.code === code;

export class NetlinkLinkDriver implements LinkDriver {
  private host: NetlinkSocket | undefined;
  private readonly ip: IpLinkDriver;

  constructor(run: Runner) {
    this.ip = new IpLinkDriver(run);
  }

  private sock(): NetlinkSocket {
    return (this.host ??= NetlinkSocket.open());
  }

  // --- delegated: not on the attach path ---
  ensureAddress(dev: string, cidr: string, mtu: number, cidr6?: string): Promise<void> {
    return this.ip.ensureAddress(dev, cidr, mtu, cidr6);
  }
  mtuOfAddress(ip: string): Promise<number | undefined> {
    return this.ip.mtuOfAddress(ip);
  }
  sourceFor(dst: string): Promise<string | undefined> {
    return this.ip.sourceFor(dst);
  }
  underlayOf(ip: string): Promise<{ dev: string; cidr: string; mtu: number; routes: string[][] } | undefined> {
    return this.ip.underlayOf(ip);
  }
  ensureUnderlay(dev: string, cidr: string, routes: string[][]): Promise<void> {
    return this.ip.ensureUnderlay(dev, cidr, routes);
  }
  sysctl(key: string, value: string): Promise<void> {
    return this.ip.sysctl(key, value);
  }

  /** create a veth; a leftover of the same name (EEXIST) is deleted (with `alsoDel`) and tried once more */
  private addVeth(v: nl.VethSpec, alsoDel: string[]): void {
    const s = this.sock();
    try {
      s.request(`add veth ${v.name}`, (seq) => nl.newVeth(seq, v));
    } catch (e) {
      if (!isErr(e, 'EEXIST')) throw e;
      for (const n of [v.name, ...alsoDel]) this.delSync(n);
      s.request(`add veth ${v.name}`, (seq) => nl.newVeth(seq, v));
    }
  }

  private delSync(name: string, s = this.sock()): void {
    try {
      s.request(`del ${name}`, (seq) => nl.delLink(seq, name));
    } catch (e) {
      if (!isErr(e, 'ENODEV')) throw e;
    }
  }

  private static indexOf(s: NetlinkSocket, name: string): number {
    const [r] = s.request(`get ${name}`, (seq) => nl.getLink(seq, name));
    if (!r) throw new Error(`get ${name}: no answer`);
    return nl.parseLink(r.body).index;
  }

  async plugContainer(pid: number, hostIf: string, c: PlugSpec): Promise<void> {
    try {
      this.addVeth(
        { name: hostIf, mtu: c.mtu, up: true, peer: { name: c.iface, mac: c.mac, mtu: c.mtu, netnsPid: pid } },
        [],
      );
      const inside = NetlinkSocket.openIn(pid);
      try {
        const index = NetlinkLinkDriver.indexOf(inside, c.iface);
        inside.request(`addr ${c.cidr} dev ${c.iface}`, (seq) => nl.newAddr(seq, index, c.cidr));
        if (c.cidr6) {
          // Docker turns IPv6 off in a container without an IPv6 network of its own: on for
          // this interface, and no duplicate detection for its link-local (port security
          // lets no other port use it)
          writeSysctlIn(pid, `ipv6/conf/${c.iface}/disable_ipv6`, '0');
          writeSysctlIn(pid, `ipv6/conf/${c.iface}/accept_dad`, '0');
          inside.request(`addr ${c.cidr6} dev ${c.iface}`, (seq) => nl.newAddr(seq, index, c.cidr6!));
        }
        if (c.userspace) inside.txChecksumOff(c.iface);
      } finally {
        inside.close();
      }
      if (c.userspace) this.sock().txChecksumOff(hostIf);
    } catch (e) {
      await this.deleteLink(hostIf);
      throw e;
    }
  }

  async makeVeth(hostIf: string, peerIf: string, c: { mac: string; mtu: number; userspace: boolean }): Promise<void> {
    try {
      this.addVeth({ name: hostIf, mtu: c.mtu, up: true, peer: { name: peerIf, mac: c.mac, mtu: c.mtu } }, [peerIf]);
      if (c.userspace) {
        this.sock().txChecksumOff(hostIf);
        this.sock().txChecksumOff(peerIf);
      }
    } catch (e) {
      await this.deleteLink(hostIf);
      throw e;
    }
  }

  async activateContainer(pid: number, iface: string, gateway: string | undefined, gateway6?: string): Promise<void> {
    const inside = NetlinkSocket.openIn(pid);
    try {
      inside.request(`up ${iface}`, (seq) => nl.setLinkUp(seq, iface));
      if (gateway || gateway6) {
        const index = NetlinkLinkDriver.indexOf(inside, iface);
        if (gateway)
          inside.request(`default via ${gateway} dev ${iface}`, (seq) => nl.replaceDefaultRoute(seq, index, gateway));
        if (gateway6)
          inside.request(`default via ${gateway6} dev ${iface}`, (seq) => nl.replaceDefaultRoute(seq, index, gateway6));
      }
    } finally {
      inside.close();
    }
  }

  async deleteLink(name: string): Promise<void> {
    this.delSync(name);
  }

  async linkExists(name: string): Promise<boolean> {
    try {
      return this.sock().request(`get ${name}`, (seq) => nl.getLink(seq, name)).length > 0;
    } catch (e) {
      if (isErr(e, 'ENODEV')) return false;
      throw e;
    }
  }

  close(): void {
    this.host?.close();
    this.host = undefined;
  }
}
