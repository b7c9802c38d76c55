// The gremesh control plane inside a lab: the coordinator in the "ctl" namespace,
// hosts admitted with `coordctl join` and an agent per host started with the command
// line that join prints (plus the lab host's OVS/Docker sockets). Used by the demo
// and the end-to-end tests.
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import { CTL_IP, ctlIp, ctlName, etcdEndpoints, hostPaths, OUTSIDE_IP } from './plan.js';
import { alive, isOurs, requireState, spawnInNode, stopPids } from './lab.js';

export const COORD_PORT = 7420;
export const COORD_ADDR = `${CTL_IP}:${COORD_PORT}`;
export const DEFAULT_CIDR = '198.18.64.0/18';
const DIST = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const BINS = {
  coordinator: `${DIST}/coordinator/main.js`,
  coordctl: `${DIST}/coordinator/cli.js`,
  agent: `${DIST}/agent/main.js`,
};

/** coordinator k's data dir (k = 1: the ctl namespace's) */
export function coordinatorDir(dir: string, k = 1): string {
  return `${dir}/${ctlName(k)}/coordinator`;
}

export function coordinatorAddr(k: number): string {
  return `${ctlIp(k)}:${COORD_PORT}`;
}

/** the lab's coordinators (ctl, ctl2, ...), as agents and coordctl take them: A,B */
export function coordinatorAddrs(dir: string): string {
  const n = requireState(dir).plan.nodes.filter((x) => x.role === 'ctl').length;
  return Array.from({ length: n }, (_, i) => coordinatorAddr(i + 1)).join(',');
}
export function agentStateDir(dir: string, host: string): string {
  return `${hostPaths(dir, host).root}/agent`;
}
export function agentLog(dir: string, host: string): string {
  return `${hostPaths(dir, host).root}/agent.log`;
}

async function waitFor(f: () => boolean | Promise<boolean>, ms: number, what: string): Promise<void> {
  const end = Date.now() + ms;
  while (!(await f())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/**
 * Starts gremesh-coordinator k (1: in the ctl namespace, k: in ctlK); resolves when it
 * listens. In a lab with etcd members it runs on them (--store etcd); coordinator k > 1
 * gets a copy of the first one's secrets key (the shared CA in etcd is sealed with it).
 */
export async function startCoordinator(dir: string, extra: string[] = [], k = 1): Promise<number> {
  const data = coordinatorDir(dir, k);
  fs.mkdirSync(data, { recursive: true });
  const log = `${dir}/${ctlName(k)}/coordinator.log`;
  if (k === 1) fs.writeFileSync(`${dir}/ctl/mode`, extra.includes('--insecure') ? 'insecure' : 'tls');
  const key = `${coordinatorDir(dir)}/secrets.key`;
  if (k > 1 && fs.existsSync(key) && !fs.existsSync(`${data}/secrets.key`)) fs.copyFileSync(key, `${data}/secrets.key`);
  const etcd = etcdEndpoints(requireState(dir).plan);
  const before = fs.existsSync(log) ? fs.readFileSync(log, 'utf8').length : 0;
  const pid = spawnInNode(
    dir,
    ctlName(k),
    'coordinator',
    [
      'node',
      BINS.coordinator,
      '--listen',
      coordinatorAddr(k),
      '--data-dir',
      data,
      '--network-cidr',
      DEFAULT_CIDR,
      '--host-prefix-len',
      '24',
      '--down-after',
      LAB_DOWN_AFTER,
      ...(etcd ? ['--store', 'etcd', '--etcd-endpoints', etcd, '--etcd-timeout', LAB_ETCD_TIMEOUT] : []),
      ...extra,
    ],
    log,
  );
  await waitFor(
    () => {
      const text = fs.readFileSync(log, 'utf8').slice(before);
      if (!alive(pid))
        throw new Error(`coordinator ${ctlName(k)} exited: ${text.trim().split('\n').slice(-3).join(' | ')}`);
      return text.includes('listening on');
    },
    20_000,
    `the coordinator in ${ctlName(k)} to listen`,
  );
  return pid;
}

/** Starts the lab's coordinators, one after the other (the first one makes the CA). */
export async function startCoordinators(dir: string, extra: string[] = []): Promise<number[]> {
  const n = requireState(dir).plan.nodes.filter((x) => x.role === 'ctl').length;
  const pids: number[] = [];
  for (let k = 1; k <= n; k++) pids.push(await startCoordinator(dir, extra, k));
  return pids;
}

export async function stopProcess(
  dir: string,
  node: string,
  what: string,
  signal: NodeJS.Signals = 'SIGTERM',
): Promise<void> {
  const procs = requireState(dir).procs.filter((p) => p.node === node && p.what === what && isOurs(p));
  for (const p of procs) process.kill(p.pid, signal);
  await stopPids(
    procs.map((p) => p.pid),
    10_000,
  );
}

/** The command line and environment of coordctl inside the ctl namespace (where the coordinator listens). */
export function coordctlCommand(dir: string, args: string[]): { argv: string[]; env: Record<string, string> } {
  const s = requireState(dir);
  const ctl = s.plan.nodes.find((n) => n.name === 'ctl')!;
  // the admin certificate lives in the coordinator's data dir (pki/admin.crt): coordctl's default with GREMESH_DATA_DIR
  const insecure = fs.existsSync(`${dir}/ctl/mode`) && fs.readFileSync(`${dir}/ctl/mode`, 'utf8') === 'insecure';
  return {
    argv: [
      'nsenter',
      `--net=/run/netns/${ctl.ns}`,
      'node',
      BINS.coordctl,
      '--coordinator',
      coordinatorAddrs(dir),
      ...(insecure ? ['--insecure'] : []),
      ...args,
    ],
    env: { GREMESH_DATA_DIR: coordinatorDir(dir) },
  };
}

/** coordctl run inside the ctl namespace, to its end. */
export async function coordctl(
  dir: string,
  args: string[],
): Promise<{ stdout: string; stderr: string; exitCode: number }> {
  const c = coordctlCommand(dir, args);
  const r = await execa(c.argv[0]!, c.argv.slice(1), { reject: false, timeout: 60_000, env: c.env });
  return { stdout: String(r.stdout ?? ''), stderr: String(r.stderr ?? ''), exitCode: r.exitCode ?? -1 };
}

/** `coordctl join HOST`: the agent argv it prints (after "gremesh-agent"). */
export async function join(dir: string, host: string): Promise<string[]> {
  const r = await coordctl(dir, ['join', host, '-o', 'json']);
  if (r.exitCode !== 0) throw new Error(`coordctl join ${host}: ${r.stderr}`);
  return (JSON.parse(r.stdout) as { command: string }).command.split(' ').slice(1);
}

/** The lab's liveness timing: agents report each second, a host silent 5 s shows down. */
export const LAB_REPORT = '1';
export const LAB_DOWN_AFTER = '5s';
/** etcd on one machine answers in milliseconds: a call without an answer in 2 s is refused */
export const LAB_ETCD_TIMEOUT = '2s';

/** Where a lab host's agent finds its OVS, Docker and state (on a real host: the defaults). */
function labAgentFlags(dir: string, host: string): string[] {
  const p = hostPaths(dir, host);
  return [
    '--datapath',
    'netdev',
    '--ovs-db',
    `unix:${p.dbSock}`,
    '--docker',
    `unix://${p.dockerSock}`,
    '--state-dir',
    agentStateDir(dir, host),
    '--plugin-dir',
    p.dockerPlugins,
    // the lab reports every second (default 5 s) so a host is declared down after 5 s, not 30
    '--report',
    LAB_REPORT,
    // the servers the lab's dockerds give containers (their resolv.conf), not the machine's
    '--dns-upstream',
    OUTSIDE_IP,
    // wireguard-go's sockets (/var/run/wireguard/NAME.sock) are shared by every namespace:
    // one name per lab host (used only when the coordinator asks for encryption)
    '--wireguard-interface',
    labWireguardName(dir, host),
  ];
}

/** Pure: a lab host's WireGuard device name, unique across labs (≤ 15 characters). */
export function labWireguardName(dir: string, host: string): string {
  return `wg${createHash('sha256')
    .update(`${path.resolve(dir)}/${host}`)
    .digest('hex')
    .slice(0, 10)}`;
}

/** Starts a host's agent with the join command line, pointed at the lab host's OVS and Docker. */
export function startAgent(dir: string, host: string, joinArgs: string[], extra: string[] = []): number {
  return spawnInNode(
    dir,
    host,
    'agent',
    ['node', BINS.agent, ...joinArgs, ...labAgentFlags(dir, host), ...extra],
    agentLog(dir, host),
  );
}

/**
 * Pure: the variables of an environment file as systemd's EnvironmentFile= reads the
 * simple cases: KEY=VALUE lines, blank lines and # comments skipped, optional quotes.
 */
export function parseEnvFile(text: string): Record<string, string> {
  const env: Record<string, string> = {};
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (!line || line.startsWith('#') || line.startsWith(';')) continue;
    const m = /^([A-Za-z_][A-Za-z0-9_]*)=(.*)$/.exec(line);
    if (!m) continue;
    env[m[1]!] = m[2]!.replace(/^"(.*)"$/, '$1').replace(/^'(.*)'$/, '$1');
  }
  return env;
}

/**
 * Starts a host's agent configured the way the systemd unit does it: every setting from
 * the environment file (`coordctl join NAME -o env`), plus only where this lab host's
 * OVS, Docker and state live (on a real host those are the defaults).
 */
export function startAgentFromEnvFile(dir: string, host: string, envFile: string): number {
  return spawnInNode(
    dir,
    host,
    'agent',
    ['node', BINS.agent, 'run', ...labAgentFlags(dir, host)],
    agentLog(dir, host),
    parseEnvFile(fs.readFileSync(envFile, 'utf8')),
  );
}

/** Join every host and start its agent; resolves when every agent has reported a pass. */
export async function joinAll(
  dir: string,
  hosts: string[],
  extra: string[] = [],
  /** the agent's argv from the join command, changed before it starts (e.g. which coordinator first) */
  rewrite: (host: string, args: string[]) => string[] = (_h, a) => a,
): Promise<Record<string, string[]>> {
  const args: Record<string, string[]> = {};
  for (const h of hosts) args[h] = rewrite(h, await join(dir, h));
  // one after the other, each once registered: h1 gets the first slice, h2 the next...
  for (const h of hosts) {
    startAgent(dir, h, args[h]!, extra);
    // registered: a client certificate (TLS) or a credential (--insecure) in its state dir
    await waitFor(
      () => ['host.crt', 'credential'].some((f) => fs.existsSync(`${agentStateDir(dir, h)}/${f}`)),
      60_000,
      `${h} to register`,
    );
  }
  await Promise.all(
    hosts.map((h) => waitFor(() => fs.existsSync(`${agentStateDir(dir, h)}/status.json`), 60_000, `the agent on ${h}`)),
  );
  return args;
}

export interface AgentStatusFile {
  revision: number;
  connected: boolean;
  /** the coordinator it watches through */
  coordinator?: string;
  tunnels: { peer: string; port: string; bfdState: string }[];
  endpoints: { port: string; ip: string; mac: string; network: string }[];
  mtu: Record<string, number>;
}

export function agentStatus(dir: string, host: string): AgentStatusFile | undefined {
  try {
    return JSON.parse(fs.readFileSync(`${agentStateDir(dir, host)}/status.json`, 'utf8')) as AgentStatusFile;
  } catch {
    return undefined;
  }
}
