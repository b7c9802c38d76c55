// Pure: the lab's address and name plan. No side effects here.
import { formatIp, parseIp } from '../../common/ipv4.js';

export const MAX_HOSTS = 32;
export const UNDERLAY_PREFIX = 24;
export const UNDERLAY_NET = '198.18.0.0';
export const ROUTER_IP = '198.18.0.254'; // the outside namespace, on the underlay
export const CTL_IP = '198.18.0.2'; // the control namespace (coordinator)
export const OUTSIDE_IP = '198.51.100.1'; // "the internet"
export const OUTSIDE_PREFIX = 24;
export const SWITCH_BRIDGE = 'br0';
export const UNDERLAY_IFACE = 'eth0';
export const PHYS_BRIDGE = 'br-phy';
export const IMAGE = 'gremesh/busybox:lab';

export type NodeRole = 'host' | 'ctl' | 'outside';

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

export function computePlan(id: string, hosts: number, prefix = DEFAULT_PREFIX): LabPlan {
  const err = validateHostCount(hosts) ?? validatePrefix(prefix);
  if (err) throw new RangeError(err);
  if (!/^[0-9a-f]{4}$/.test(id)) throw new RangeError(`lab id must be 4 hex digits, got ${id}`);
  const ns = (n: string) => labNs(prefix, id, n);
  const nodes: LabNode[] = [
    { name: 'out', role: 'outside', ns: ns('out'), ip: ROUTER_IP, switchPort: 'p-out' },
    { name: 'ctl', role: 'ctl', ns: ns('ctl'), ip: CTL_IP, switchPort: 'p-ctl' },
  ];
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
