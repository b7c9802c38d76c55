// How GRE packets get into and out of WireGuard on this host.
//
// Kernel datapath (real hosts): the tunnel IP is on the WireGuard device itself; the kernel
// routes GRE to a peer's tunnel IP into WireGuard, and delivers what WireGuard decrypts to
// OVS's GRE port as any local GRE. Nothing else is needed.
//
// Userspace datapath (the lab; DPDK hosts): OVS builds and ends GRE itself and must see it
// on one of its bridges. A small bridge of our own (TRANSPORT_BRIDGE, netdev) carries the
// tunnel IP; a veth pair joins it to the kernel (TRANSPORT_KERNEL in the kernel,
// TRANSPORT_OVS on the bridge). OVS resolves a peer's tunnel IP through the bridge (the
// kernel answers for it by proxy ARP on the veth) and sends GRE out of the veth; the
// kernel routes what enters from the veth into WireGuard (table TABLE_TO_WG). What
// WireGuard decrypts for our tunnel IP is routed back out of the veth (table TABLE_FROM_WG,
// looked up before the local table for packets from the WireGuard device), to the
// bridge's MAC, where OVS ends the tunnel. The tunnel IP is never on the underlay.
import * as fs from 'node:fs';
import type { Runner } from '../../common/exec.js';
import { parseCidr } from '../../common/ipv4.js';

export const TRANSPORT_BRIDGE = 'gremesh-wgbr';
export const TRANSPORT_KERNEL = 'gremesh-wgk';
export const TRANSPORT_OVS = 'gremesh-wgo';
export const TABLE_TO_WG = 7401;
export const TABLE_FROM_WG = 7402;
/** rule priorities: from WireGuard before the local table (which moves from 0 to LOCAL_PREF) */
export const PREF_FROM_WG = 10;
export const LOCAL_PREF = 20;
export const PREF_TO_WG = 7401;
/** queue room on the WireGuard device and the veth: bursts of a TCP window wait rather than drop */
const TXQUEUELEN = 5000;

export interface TransportSpec {
  device: string;
  tunnelIp: string;
  tunnelCidr: string;
  /** the MTU of the WireGuard device and the transport links (the underlay's) */
  mtu: number;
  datapath: 'system' | 'netdev';
  /** ovs-vsctl --db */
  ovsDb: string;
}

interface IpRule {
  priority: number;
  iif?: string;
  table?: string;
  src?: string;
}

/** Pure: the rules to add and delete so packets take the paths above (netdev). */
export function ruleChanges(rules: IpRule[], device: string): { add: string[][]; del: string[][] } {
  const add: string[][] = [];
  const del: string[][] = [];
  const has = (p: number, iif: string | undefined, table: string) =>
    rules.some((r) => r.priority === p && r.iif === iif && r.table === table);
  if (!has(LOCAL_PREF, undefined, 'local')) add.push(['pref', String(LOCAL_PREF), 'lookup', 'local']);
  if (!has(PREF_FROM_WG, device, String(TABLE_FROM_WG)))
    add.push(['pref', String(PREF_FROM_WG), 'iif', device, 'lookup', String(TABLE_FROM_WG)]);
  if (!has(PREF_TO_WG, TRANSPORT_KERNEL, String(TABLE_TO_WG)))
    add.push(['pref', String(PREF_TO_WG), 'iif', TRANSPORT_KERNEL, 'lookup', String(TABLE_TO_WG)]);
  if (rules.some((r) => r.priority === 0 && r.table === 'local')) del.push(['pref', '0', 'lookup', 'local']);
  // a rule of ours for another device (the device was renamed)
  for (const r of rules)
    if (r.priority === PREF_FROM_WG && r.table === String(TABLE_FROM_WG) && r.iif !== device)
      del.push(['pref', String(PREF_FROM_WG), 'iif', r.iif ?? '', 'lookup', String(TABLE_FROM_WG)]);
  return { add, del };
}

const linkExists = async (run: Runner, name: string) =>
  (await run(['ip', 'link', 'show', 'dev', name], { okCodes: [0, 1] })).exitCode === 0;

function sysctl(path: string, value: string): void {
  // /proc/sys/net is this network namespace's
  fs.writeFileSync(`/proc/sys/net/${path}`, value);
}

/** Makes (or repairs) the path between OVS's GRE and WireGuard; idempotent. */
export async function ensureTransport(run: Runner, t: TransportSpec): Promise<void> {
  const prefix = parseCidr(t.tunnelCidr)!.prefix;
  await run(['ip', 'link', 'set', 'dev', t.device, 'mtu', String(t.mtu), 'txqueuelen', String(TXQUEUELEN), 'up']);
  if (t.datapath === 'system') {
    await run(['ip', 'addr', 'replace', `${t.tunnelIp}/${prefix}`, 'dev', t.device]);
    return;
  }
  if (!(await linkExists(run, TRANSPORT_KERNEL)))
    await run(['ip', 'link', 'add', TRANSPORT_KERNEL, 'type', 'veth', 'peer', 'name', TRANSPORT_OVS]);
  // the userspace datapath forwards what the kernel hands it as is: no checksum left to offload
  for (const v of [TRANSPORT_KERNEL, TRANSPORT_OVS]) await run(['ethtool', '-K', v, 'tx', 'off'], { okCodes: [0, 1] });
  await run([
    'ovs-vsctl',
    `--db=${t.ovsDb}`,
    '--may-exist',
    'add-br',
    TRANSPORT_BRIDGE,
    '--',
    'set',
    'bridge',
    TRANSPORT_BRIDGE,
    'datapath_type=netdev',
    'external_ids:gremesh-owner=gremesh-agent',
    '--',
    '--may-exist',
    'add-port',
    TRANSPORT_BRIDGE,
    TRANSPORT_OVS,
  ]);
  sysctl('ipv4/ip_forward', '1');
  for (const [dev, key, v] of [
    [TRANSPORT_KERNEL, 'proxy_arp', '1'],
    [TRANSPORT_KERNEL, 'accept_local', '1'],
    [TRANSPORT_KERNEL, 'rp_filter', '0'],
    [t.device, 'rp_filter', '0'],
  ] as const)
    sysctl(`ipv4/conf/${dev}/${key}`, v);
  const rules = JSON.parse((await run(['ip', '-j', 'rule', 'show'])).stdout || '[]') as IpRule[];
  const mac = (
    JSON.parse((await run(['ip', '-j', 'link', 'show', 'dev', TRANSPORT_BRIDGE])).stdout) as { address: string }[]
  )[0]!.address;
  // the rest in one `ip -batch` (one process, not fifteen: it is on a new host's way to its first tunnel)
  await run(['ip', '-batch', '-'], { input: transportBatch(t, prefix, mac, ruleChanges(rules, t.device)) });
}

/** Pure: the `ip -batch` lines that bring the netdev transport up (all idempotent: set, replace, computed rules). */
export function transportBatch(
  t: Pick<TransportSpec, 'device' | 'tunnelIp' | 'tunnelCidr' | 'mtu'>,
  prefix: number,
  bridgeMac: string,
  rules: { add: string[][]; del: string[][] },
): string {
  const lines = [
    ...[TRANSPORT_KERNEL, TRANSPORT_OVS, TRANSPORT_BRIDGE].map(
      (l) => `link set dev ${l} mtu ${t.mtu} txqueuelen ${TXQUEUELEN} up`,
    ),
    `addr replace ${t.tunnelIp}/${prefix} dev ${TRANSPORT_BRIDGE}`,
    ...rules.add.map((r) => `rule add ${r.join(' ')}`),
    ...rules.del.map((r) => `rule del ${r.join(' ')}`),
    `route replace ${t.tunnelCidr} dev ${t.device} table ${TABLE_TO_WG}`,
    `route replace ${t.tunnelIp}/32 dev ${TRANSPORT_KERNEL} table ${TABLE_FROM_WG}`,
    `neigh replace ${t.tunnelIp} lladdr ${bridgeMac} dev ${TRANSPORT_KERNEL} nud permanent`,
  ];
  return lines.join('\n') + '\n';
}
