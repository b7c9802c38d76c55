// Endpoints the way a test (or anything else) makes them: a namespace with a veth
// whose host end is a port of gremesh0 with gremesh-network/ip/mac external_ids.
import { execa } from 'execa';
import { systemPath } from '../../common/exec.js';
import { recordNetns } from '../../deploy/lab/lab.js';
import { hostEnv, labNs } from '../../deploy/lab/plan.js';
import type { TestLab } from './lab.js';

export interface Endpoint {
  name: string;
  host: string;
  ns: string;
  port: string;
  ip: string;
  mac: string;
  network: string;
  exec(
    argv: string[],
    opts?: { reject?: boolean; timeoutMs?: number },
  ): Promise<{ stdout: string; stderr: string; exitCode: number }>;
}

export async function sh(argv: string[], env: Record<string, string> = {}, reject = true, timeoutMs = 60_000) {
  const r = await execa(argv[0]!, argv.slice(1), {
    reject: false,
    env: { PATH: systemPath(), ...env },
    timeout: timeoutMs,
  });
  const out = { stdout: String(r.stdout ?? ''), stderr: String(r.stderr ?? ''), exitCode: r.exitCode ?? -1 };
  if (reject && out.exitCode !== 0) throw new Error(`${argv.join(' ')} exited ${out.exitCode}: ${out.stderr}`);
  return out;
}

export async function addEndpoint(
  lab: TestLab,
  host: string,
  name: string,
  o: { network: string; ip: string; prefix: number; mac: string; mtu?: number; gateway?: string },
): Promise<Endpoint> {
  const node = lab.state.plan.nodes.find((n) => n.name === host)!;
  const ns = labNs(lab.state.plan.prefix, lab.state.id, `e-${name}`);
  const port = `ep-${name}`.slice(0, 15);
  await sh(['ip', 'netns', 'add', ns]);
  recordNetns(lab.dir, ns);
  await sh(['ip', 'link', 'add', 'name', port, 'netns', node.ns, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns]);
  const inHost = (argv: string[]) => sh(['nsenter', `--net=/run/netns/${node.ns}`, ...argv], hostEnv(lab.dir, node));
  const inEp = (argv: string[]) => sh(['nsenter', `--net=/run/netns/${ns}`, ...argv]);
  await inHost(['ethtool', '-K', port, 'tx', 'off']);
  await inHost(['ip', 'link', 'set', port, 'up']);
  await inEp(['ip', 'link', 'set', 'lo', 'up']);
  await inEp(['ip', 'link', 'set', 'eth0', 'address', o.mac, 'mtu', String(o.mtu ?? 1458), 'up']);
  await inEp(['ip', 'addr', 'add', `${o.ip}/${o.prefix}`, 'dev', 'eth0']);
  await inEp(['ethtool', '-K', 'eth0', 'tx', 'off']);
  if (o.gateway) await inEp(['ip', 'route', 'add', 'default', 'via', o.gateway]);
  await inHost([
    'ovs-vsctl',
    'add-port',
    'gremesh0',
    port,
    '--',
    'set',
    'Interface',
    port,
    `external_ids:gremesh-network=${o.network}`,
    `external_ids:gremesh-ip=${o.ip}`,
    `external_ids:gremesh-mac=${o.mac}`,
  ]);
  return {
    name,
    host,
    ns,
    port,
    ip: o.ip,
    mac: o.mac,
    network: o.network,
    exec: (argv, opts = {}) =>
      sh(['nsenter', `--net=/run/netns/${ns}`, ...argv], {}, opts.reject ?? true, opts.timeoutMs ?? 60_000),
  };
}

/** ping until one answer (first packets may meet ARP resolution on a new tunnel); false after timeoutMs */
export async function pingsWithin(ep: Endpoint, ip: string, timeoutMs = 10_000): Promise<boolean> {
  const end = Date.now() + timeoutMs;
  while (Date.now() < end) {
    const r = await ep.exec(['ping', '-c', '1', '-W', '1', ip], { reject: false });
    if (r.exitCode === 0) return true;
  }
  return false;
}

/** ping -i interval -c count; returns transmitted and received */
export async function pingCount(
  ep: Endpoint,
  ip: string,
  count: number,
  intervalS = 0.1,
): Promise<{ sent: number; received: number }> {
  const r = await ep.exec(['ping', '-i', String(intervalS), '-c', String(count), '-W', '1', ip], {
    reject: false,
    timeoutMs: count * intervalS * 1000 + 30_000,
  });
  const m = /(\d+) packets transmitted, (\d+) received/.exec(r.stdout);
  return m ? { sent: Number(m[1]), received: Number(m[2]) } : { sent: count, received: 0 };
}

export async function waitUntil(
  f: () => boolean | Promise<boolean>,
  timeoutMs: number,
  stepMs = 50,
): Promise<number | undefined> {
  const t0 = Date.now();
  while (Date.now() - t0 < timeoutMs) {
    if (await f()) return Date.now() - t0;
    await new Promise((r) => setTimeout(r, stepMs));
  }
  return undefined;
}

/** A container's eth0 once it is up with an IPv4 address (its agent attached it): address and MAC. */
export async function containerAddress(pid: string, timeoutMs = 30_000): Promise<{ ip: string; mac: string }> {
  let ip = '';
  let mac = '';
  await waitUntil(async () => {
    const l = JSON.parse(
      (await sh(['nsenter', '-t', pid, '-n', 'ip', '-j', 'addr', 'show', 'eth0'], {}, false)).stdout || '[]',
    ) as { address: string; flags?: string[]; addr_info: { family: string; local: string }[] }[];
    ip = (l[0]?.flags ?? []).includes('UP') ? (l[0]?.addr_info.find((a) => a.family === 'inet')?.local ?? '') : '';
    mac = l[0]?.address ?? '';
    return ip !== '';
  }, timeoutMs);
  return { ip, mac };
}
