// Pure: the lab's address and name plan. No side effects here.
import { formatIp, parseIp } from '../../common/ipv4.js';

export const MAX_HOSTS = 32;
export const UNDERLAY_PREFIX = 24;
export const UNDERLAY_NET = '198.18.0.0';
export const ROUTER_IP = '198.18.0.254'; // the outside namespace, on the underlay
export const CTL_IP = '198.18.0.2'; // the control namespace (coordinator)
export const OUTSIDE_IP = '198.51.100.1'; // "the internet"
/** the one name the lab's outside DNS server (on OUTSIDE_IP) knows */
export const OUTSIDE_NAME = 'outside.gremesh.test';
export const OUTSIDE_PREFIX = 24;
/** IPv6 (documentation space 2001:db8::/32): the underlay's /64, its router (the outside) and "the internet" */
export const UNDERLAY6_NET = '2001:db8:0:18::';
export const UNDERLAY6_PREFIX = 64;
export const ROUTER_IP6 = '2001:db8:0:18::fe';
export const OUTSIDE_IP6 = '2001:db8:0:51::1';
export const OUTSIDE6_PREFIX = 64;

/** Pure: a lab node's IPv6 underlay address: the underlay /64 and its IPv4 address's last byte (198.18.0.11 -> ::b) */
export function underlayIp6(ip: string): string {
  return `${UNDERLAY6_NET}${(parseIp(ip)! & 0xff).toString(16)}`;
}
export const SWITCH_BRIDGE = 'br0';
export const UNDERLAY_IFACE = 'eth0';
export const PHYS_BRIDGE = 'br-phy';
export const IMAGE = 'gremesh/busybox:lab';

export type NodeRole = 'host' | 'ctl' | 'outside' | 'etcd';

/** etcd members: 0 (none: the coordinator's own SQLite), or an odd cluster size */
export const ETCD_SIZES = [0, 1, 3, 5];
export const MAX_COORDINATORS = 3;
export const ETCD_CLIENT_PORT = 2379;
export const ETCD_PEER_PORT = 2380;

/** etcd member i (1-based) on the underlay: 198.18.0.3 .. 198.18.0.7 */
export function etcdIp(i: number): string {
  return formatIp(parseIp(UNDERLAY_NET)! + 2 + i);
}

/** coordinator k (1-based): "ctl" on 198.18.0.2, then "ctl2", "ctl3" on 198.18.0.8, .9 */
export function ctlName(k: number): string {
  return k === 1 ? 'ctl' : `ctl${k}`;
}
export function ctlIp(k: number): string {
  return k === 1 ? CTL_IP : formatIp(parseIp(UNDERLAY_NET)! + 6 + k);
}

export function validateControlPlane(etcd: number, coordinators: number): string | undefined {
  if (!ETCD_SIZES.includes(etcd)) return `--etcd must be one of ${ETCD_SIZES.join(', ')} (members), got ${etcd}`;
  if (!Number.isInteger(coordinators) || coordinators < 1 || coordinators > MAX_COORDINATORS)
    return `--coordinators must be a whole number from 1 to ${MAX_COORDINATORS}, got ${coordinators}`;
  if (coordinators > 1 && etcd === 0)
    return '--coordinators above 1 needs --etcd (coordinators share their state there)';
  return undefined;
}

/** Pure: the client URLs of a plan's etcd members ('' when it has none) */
export function etcdEndpoints(plan: LabPlan): string {
  return plan.nodes
    .filter((n) => n.role === 'etcd')
    .map((n) => `http://${n.ip}:${ETCD_CLIENT_PORT}`)
    .join(',');
}

/** Pure: the flags of etcd member `node` of the plan's cluster */
export function etcdArgs(plan: LabPlan, node: LabNode, dataDir: string): string[] {
  const members = plan.nodes.filter((n) => n.role === 'etcd');
  return [
    `--name=${node.name}`,
    `--data-dir=${dataDir}`,
    `--listen-client-urls=http://${node.ip}:${ETCD_CLIENT_PORT}`,
    `--advertise-client-urls=http://${node.ip}:${ETCD_CLIENT_PORT}`,
    `--listen-peer-urls=http://${node.ip}:${ETCD_PEER_PORT}`,
    `--initial-advertise-peer-urls=http://${node.ip}:${ETCD_PEER_PORT}`,
    `--initial-cluster=${members.map((m) => `${m.name}=http://${m.ip}:${ETCD_PEER_PORT}`).join(',')}`,
    `--initial-cluster-token=gremesh-lab-${plan.id}`,
    '--initial-cluster-state=new',
    '--logger=zap',
    '--log-level=warn',
  ];
}

export interface LabNode {
  /** lab-wide name: h1..hN, ctl, out */
  name: string;
  role: NodeRole;
  /** network namespace name */
  ns: string;
  /** underlay address (without prefix) */
  ip: string;
  /** the switch-side veth end's name (inside the switch namespace) */
  switchPort: string;
}

export interface LabPlan {
  id: string;
  /** namespace names start with PREFIX-ID-: `gml` for labs people make, `gmt` for the tests' own */
  prefix: string;
  switchNs: string;
  nodes: LabNode[];
}

export function validateHostCount(n: number): string | undefined {
  if (!Number.isInteger(n) || n < 1 || n > MAX_HOSTS)
    return `--hosts must be a whole number from 1 to ${MAX_HOSTS}, got ${n}`;
  return undefined;
}

export function hostName(i: number): string {
  return `h${i}`;
}

export function hostIp(i: number): string {
  return formatIp(parseIp(UNDERLAY_NET)! + 10 + i);
}

/** A short lab id from random bytes: 4 lowercase hex digits. */
export function labIdFrom(bytes: Uint8Array): string {
  return Array.from(bytes.slice(0, 2), (b) => b.toString(16).padStart(2, '0')).join('');
}

/** The namespace prefix of labs made by hand or by `make demo`. */
export const DEFAULT_PREFIX = 'gml';
/** The namespace prefix (and temp-dir prefix) of labs the test suite makes: `gremesh-lab sweep` removes only these. */
export const TEST_PREFIX = 'gmt';

export function validatePrefix(prefix: string): string | undefined {
  if (!/^[a-z][a-z0-9]{1,7}$/.test(prefix))
    return `--prefix must be 2 to 8 lowercase letters or digits starting with a letter, got "${prefix}"`;
  return undefined;
}

export function computePlan(
  id: string,
  hosts: number,
  prefix = DEFAULT_PREFIX,
  control: { etcd: number; coordinators: number } = { etcd: 0, coordinators: 1 },
): LabPlan {
  const err =
    validateHostCount(hosts) ?? validatePrefix(prefix) ?? validateControlPlane(control.etcd, control.coordinators);
  if (err) throw new RangeError(err);
  if (!/^[0-9a-f]{4}$/.test(id)) throw new RangeError(`lab id must be 4 hex digits, got ${id}`);
  const ns = (n: string) => labNs(prefix, id, n);
  const nodes: LabNode[] = [
    { name: 'out', role: 'outside', ns: ns('out'), ip: ROUTER_IP, switchPort: 'p-out' },
    { name: 'ctl', role: 'ctl', ns: ns('ctl'), ip: CTL_IP, switchPort: 'p-ctl' },
  ];
  for (let k = 2; k <= control.coordinators; k++)
    nodes.push({ name: ctlName(k), role: 'ctl', ns: ns(ctlName(k)), ip: ctlIp(k), switchPort: `p-${ctlName(k)}` });
  for (let i = 1; i <= control.etcd; i++)
    nodes.push({ name: `e${i}`, role: 'etcd', ns: ns(`e${i}`), ip: etcdIp(i), switchPort: `p-e${i}` });
  for (let i = 1; i <= hosts; i++) {
    const name = hostName(i);
    nodes.push({ name, role: 'host', ns: ns(name), ip: hostIp(i), switchPort: `p-${name}` });
  }
  return { id, prefix, switchNs: ns('sw'), nodes };
}

/** The name of a lab namespace: the plan's nodes, and extra ones tests make (endpoints, rogue hosts). */
export function labNs(prefix: string, id: string, name: string): string {
  return `${prefix}-${id}-${name}`;
}

/** Per-host directories and sockets under the lab dir. */
export interface HostPaths {
  root: string;
  ovsRun: string;
  ovsDb: string;
  ovsLog: string;
  dbSock: string;
  dockerRoot: string;
  dockerExec: string;
  dockerSock: string;
  dockerPid: string;
  dockerLog: string;
  /** bound over /run/docker/plugins in this host's dockerd (its own mount namespace): the agent's plugin socket */
  dockerPlugins: string;
}

export function hostPaths(labDir: string, host: string): HostPaths {
  const root = `${labDir}/${host}`;
  return {
    root,
    ovsRun: `${root}/ovs`,
    ovsDb: `${root}/ovs`,
    ovsLog: `${root}/ovs`,
    dbSock: `${root}/ovs/db.sock`,
    dockerRoot: `${root}/docker/data`,
    dockerExec: `${root}/de`,
    dockerSock: `${root}/docker.sock`,
    dockerPid: `${root}/docker/dockerd.pid`,
    dockerLog: `${root}/docker/dockerd.log`,
    dockerPlugins: `${root}/plugins`,
  };
}

/** Environment that points OVS and Docker clients at one host's daemons. */
export function hostEnv(labDir: string, node: LabNode): Record<string, string> {
  const env: Record<string, string> = { GREMESH_LAB_NODE: node.name, GREMESH_NETNS: node.ns };
  if (node.role === 'host') {
    const p = hostPaths(labDir, node.name);
    Object.assign(env, {
      DOCKER_HOST: `unix://${p.dockerSock}`,
      OVS_RUNDIR: p.ovsRun,
      OVS_DBDIR: p.ovsDb,
      OVS_LOGDIR: p.ovsLog,
    });
  }
  return env;
}

/** Unix socket paths are limited to 107 bytes; containerd's lives deep under the exec root. */
export function longestSocketPath(labDir: string, host: string): number {
  return `${hostPaths(labDir, host).dockerExec}/containerd/containerd-debug.sock`.length;
}

/** Names of every Linux interface the plan creates must fit 15 characters. */
export function interfaceNames(plan: LabPlan): string[] {
  return [SWITCH_BRIDGE, UNDERLAY_IFACE, PHYS_BRIDGE, ...plan.nodes.map((n) => n.switchPort)];
}
