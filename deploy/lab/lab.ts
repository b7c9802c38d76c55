// The lab's side effects: namespaces, veths, per-host ovsdb-server/ovs-vswitchd and
// dockerd. Everything created is recorded in DIR/state.json as soon as it exists, so
// `down` removes exactly that, also after a crash halfway through `up`.
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as http from 'node:http';
import { randomBytes } from 'node:crypto';
import { createRunner, ExecError, systemPath, which, type Runner } from '../../common/exec.js';
import {
  computePlan,
  etcdArgs,
  etcdEndpoints,
  validateControlPlane,
  hostEnv,
  hostPaths,
  labIdFrom,
  longestSocketPath,
  labNs,
  validateHostCount,
  validatePrefix,
  DEFAULT_PREFIX,
  IMAGE,
  OUTSIDE_IP,
  OUTSIDE_PREFIX,
  PHYS_BRIDGE,
  ROUTER_IP,
  SWITCH_BRIDGE,
  UNDERLAY_IFACE,
  UNDERLAY_PREFIX,
  type LabNode,
  type LabPlan,
} from './plan.js';

export class LabError extends Error {
  constructor(
    readonly code: string,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'LabError';
  }
}

export interface ProcRecord {
  pid: number;
  what: string;
  ns: string;
  node: string;
}

export interface LabState {
  version: 1;
  id: string;
  dir: string;
  hosts: number;
  status: 'creating' | 'up' | 'failed';
  createdAt: string;
  createdDir: boolean;
  plan: LabPlan;
  netns: string[];
  procs: ProcRecord[];
  /** how each host's dockerd runs: `default` as on a stock Docker host (iptables on, docker0), `bare` without networking of its own */
  docker?: DockerMode;
}

export type DockerMode = 'default' | 'bare';

export const DEFAULT_DIR = '/run/gremesh-lab';
const NETNS_DIR = '/run/netns';

/** Debian package providing each tool the lab needs. */
export const REQUIRED_TOOLS: Record<string, string> = {
  ip: 'iproute2',
  nsenter: 'util-linux',
  ethtool: 'ethtool',
  'ovsdb-tool': 'openvswitch-switch',
  'ovsdb-server': 'openvswitch-switch',
  'ovs-vswitchd': 'openvswitch-switch',
  'ovs-vsctl': 'openvswitch-switch',
  dockerd: 'docker.io',
  busybox: 'busybox-static',
  nft: 'nftables',
};

const VSWITCH_SCHEMA_PATHS = ['/usr/share/openvswitch/vswitch.ovsschema'];

export type Progress = (line: string) => void;

export function statePath(dir: string): string {
  return `${dir}/state.json`;
}

export function readState(dir: string): LabState | undefined {
  try {
    return JSON.parse(fs.readFileSync(statePath(dir), 'utf8')) as LabState;
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') return undefined;
    throw new LabError('LAB_STATE_UNREADABLE', `cannot read ${statePath(dir)}: ${(e as Error).message}`);
  }
}

function writeState(s: LabState): void {
  const tmp = `${statePath(s.dir)}.tmp`;
  fs.writeFileSync(tmp, JSON.stringify(s, null, 2));
  fs.renameSync(tmp, statePath(s.dir));
}

export function nodeByName(s: LabState, name: string): LabNode {
  const n = s.plan.nodes.find((x) => x.name === name);
  if (!n)
    throw new LabError(
      'LAB_UNKNOWN_HOST',
      `unknown lab host "${name}" (known: ${s.plan.nodes.map((x) => x.name).join(', ')})`,
    );
  return n;
}

/** argv prefix that runs a command inside a node's network namespace. */
export function nsPrefix(ns: string): string[] {
  return ['nsenter', `--net=${NETNS_DIR}/${ns}`];
}

export async function checkTools(): Promise<void> {
  const missing: string[] = [];
  for (const [tool, pkg] of Object.entries(REQUIRED_TOOLS)) {
    if (!(await which(tool))) missing.push(`${tool} (Debian package ${pkg})`);
  }
  if (missing.length) {
    throw new LabError('LAB_MISSING_TOOL', `missing ${missing.join(', ')}: run deploy/install-deps.sh as root`);
  }
}

function dockerCli(): string {
  // docker.io's client matches the 20.10 daemon; a newer client elsewhere on PATH works too
  return fs.existsSync('/usr/bin/docker') ? '/usr/bin/docker' : 'docker';
}

// ------------------------------------------------------------------ process helpers

function netnsInode(ns: string): number | undefined {
  try {
    return fs.statSync(`${NETNS_DIR}/${ns}`).ino;
  } catch {
    return undefined;
  }
}

function procNetInode(pid: number): number | undefined {
  try {
    const m = /net:\[(\d+)\]/.exec(fs.readlinkSync(`/proc/${pid}/ns/net`));
    return m ? Number(m[1]) : undefined;
  } catch {
    return undefined;
  }
}

export function alive(pid: number): boolean {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
    return state !== 'Z' && state !== 'X';
  } catch {
    return false;
  }
}

/** Is `pid` still the process we recorded (alive and in the namespace we started it in)? */
export function isOurs(p: ProcRecord): boolean {
  if (!alive(p.pid)) return false;
  const want = netnsInode(p.ns);
  return want !== undefined && procNetInode(p.pid) === want;
}

async function sleep(ms: number): Promise<void> {
  await new Promise((r) => setTimeout(r, ms));
}

/** SIGTERM, wait up to graceMs, then SIGKILL; resolves when every pid is gone. */
export async function stopPids(pids: number[], graceMs: number): Promise<void> {
  const live = pids.filter(alive);
  for (const pid of live) {
    try {
      process.kill(pid, 'SIGTERM');
    } catch {
      /* gone */
    }
  }
  const deadline = Date.now() + graceMs;
  while (live.some(alive) && Date.now() < deadline) await sleep(50);
  for (const pid of live.filter(alive)) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      /* gone */
    }
  }
  const hard = Date.now() + 5000;
  while (live.some(alive) && Date.now() < hard) await sleep(20);
}

/** PIDs of every process in a namespace, and of every process whose root directory lies under dir. */
function leftoverPids(nsInodes: Set<number>, dirs: string[]): number[] {
  const out: number[] = [];
  for (const e of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    const pid = Number(e);
    if (pid === process.pid) continue;
    const ino = procNetInode(pid);
    let root = '';
    try {
      root = fs.readlinkSync(`/proc/${pid}/root`);
    } catch {
      /* gone */
    }
    if ((ino !== undefined && nsInodes.has(ino)) || (root !== '/' && dirs.some((d) => root.startsWith(`${d}/`))))
      out.push(pid);
  }
  return out;
}

function mountsUnder(dir: string): string[] {
  const lines = fs.readFileSync('/proc/self/mountinfo', 'utf8').split('\n');
  const points = lines.map((l) => l.split(' ')[4] ?? '').filter((p) => p === dir || p.startsWith(`${dir}/`));
  return [...new Set(points)].sort((a, b) => b.length - a.length); // deepest first
}

function pingDocker(sock: string): Promise<boolean> {
  return new Promise((resolve) => {
    const req = http.request({ socketPath: sock, path: '/_ping', timeout: 1000 }, (res) => {
      res.resume();
      resolve(res.statusCode === 200);
    });
    req.on('error', () => resolve(false));
    req.on('timeout', () => {
      req.destroy();
      resolve(false);
    });
    req.end();
  });
}

// ------------------------------------------------------------------ up

export interface UpOptions {
  dir: string;
  hosts: number;
  /** namespace prefix (default `gml`; the test suite uses `gmt` so `sweep` can find its labs) */
  prefix?: string;
  /** dockerd as on a stock Docker host (default) or without networking of its own (`bare`) */
  docker?: DockerMode;
  /** etcd members in namespaces of their own (e1.., 198.18.0.3..), started with the lab (default 0) */
  etcd?: number;
  /** namespaces for coordinators: ctl, then ctl2, ctl3 (198.18.0.8, .9) (default 1) */
  coordinators?: number;
  progress: Progress;
  run?: Runner;
}

export async function up(o: UpOptions): Promise<LabState> {
  const started = performance.now();
  const hostErr = validateHostCount(o.hosts);
  if (hostErr) throw new LabError('LAB_BAD_HOSTS', hostErr);
  const prefix = o.prefix ?? DEFAULT_PREFIX;
  const prefixErr = validatePrefix(prefix);
  if (prefixErr) throw new LabError('LAB_BAD_PREFIX', prefixErr);
  const control = { etcd: o.etcd ?? 0, coordinators: o.coordinators ?? 1 };
  const controlErr = validateControlPlane(control.etcd, control.coordinators);
  if (controlErr) throw new LabError('LAB_BAD_CONTROL_PLANE', controlErr);
  if (process.getuid?.() !== 0)
    throw new LabError('LAB_NOT_ROOT', 'the lab needs root (network namespaces, OVS, dockerd)');
  await checkTools();
  if (control.etcd && !(await which('etcd')))
    throw new LabError(
      'LAB_MISSING_TOOL',
      'missing etcd (Debian package etcd-server): run deploy/install-deps.sh as root',
    );
  const existing = readState(o.dir);
  if (existing)
    throw new LabError(
      'LAB_EXISTS',
      `a lab (id ${existing.id}, ${existing.hosts} hosts) is already in ${o.dir}: run "gremesh-lab down --dir ${o.dir}" first`,
    );
  const sockLen = longestSocketPath(o.dir, `h${o.hosts}`);
  if (sockLen > 100)
    throw new LabError(
      'LAB_DIR_TOO_LONG',
      `lab dir ${o.dir} is too long: sockets under it would exceed the 107-byte unix socket limit`,
    );
  const createdDir = !fs.existsSync(o.dir);
  try {
    fs.mkdirSync(o.dir, { recursive: true });
    fs.accessSync(o.dir, fs.constants.W_OK);
  } catch (e) {
    throw new LabError(
      'LAB_DIR_NOT_WRITABLE',
      `lab dir ${o.dir} is not writable: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`,
    );
  }
  let id = labIdFrom(randomBytes(2));
  while (fs.existsSync(`${NETNS_DIR}/${labNs(prefix, id, 'sw')}`)) id = labIdFrom(randomBytes(2));
  const plan = computePlan(id, o.hosts, prefix, control);
  const state: LabState = {
    version: 1,
    id,
    dir: o.dir,
    hosts: o.hosts,
    status: 'creating',
    createdAt: new Date().toISOString(),
    createdDir,
    plan,
    netns: [],
    procs: [],
    docker: o.docker ?? 'default',
  };
  try {
    writeState(state);
  } catch (e) {
    throw new LabError(
      'LAB_DIR_NOT_WRITABLE',
      `lab dir ${o.dir} is not writable: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`,
    );
  }
  const run = o.run ?? createRunner({ timeoutMs: 30_000 });
  const step = (what: string) =>
    o.progress(`[${((performance.now() - started) / 1000).toFixed(2).padStart(6)}s] ${what}`);
  try {
    await buildLab(state, run, step);
    state.status = 'up';
    writeState(state);
    step(`lab ${id} up: ${o.hosts} hosts in ${o.dir}`);
    return state;
  } catch (e) {
    state.status = 'failed';
    writeState(state);
    step(`failed: ${(e as Error).message}; removing what was made`);
    await down({ dir: o.dir, progress: () => {} }).catch(() => {});
    throw e instanceof LabError
      ? e
      : new LabError('LAB_UP_FAILED', `lab up failed: ${(e as Error).message}`, { cause: e });
  }
}

async function addNetns(state: LabState, run: Runner, ns: string): Promise<void> {
  await run(['ip', 'netns', 'add', ns]);
  state.netns.push(ns);
  writeState(state);
  await run([...nsPrefix(ns), 'ip', 'link', 'set', 'lo', 'up']);
}

async function buildLab(state: LabState, run: Runner, step: Progress): Promise<void> {
  const { plan, dir } = state;
  await addNetns(state, run, plan.switchNs);
  const sw = (...a: string[]) => run([...nsPrefix(plan.switchNs), ...a]);
  await sw('ip', 'link', 'add', SWITCH_BRIDGE, 'type', 'bridge');
  await sw('ip', 'link', 'set', SWITCH_BRIDGE, 'up');
  step(`underlay switch ${plan.switchNs}/${SWITCH_BRIDGE}`);

  for (const node of plan.nodes) {
    await addNetns(state, run, node.ns);
    // both veth ends are born inside their namespaces: nothing ever sits in the root namespace
    await run([
      'ip',
      'link',
      'add',
      'name',
      UNDERLAY_IFACE,
      'netns',
      node.ns,
      'type',
      'veth',
      'peer',
      'name',
      node.switchPort,
      'netns',
      plan.switchNs,
    ]);
    await sw('ip', 'link', 'set', node.switchPort, 'master', SWITCH_BRIDGE, 'up');
    const inNs = (...a: string[]) => run([...nsPrefix(node.ns), ...a]);
    await inNs('ethtool', '-K', UNDERLAY_IFACE, 'tx', 'off');
    await inNs('ip', 'link', 'set', UNDERLAY_IFACE, 'up');
    if (node.role === 'outside') {
      await inNs('ip', 'addr', 'add', `${ROUTER_IP}/${UNDERLAY_PREFIX}`, 'dev', UNDERLAY_IFACE);
      await inNs('ip', 'addr', 'add', `${OUTSIDE_IP}/${OUTSIDE_PREFIX}`, 'dev', UNDERLAY_IFACE);
    } else if (node.role === 'ctl' || node.role === 'etcd') {
      await inNs('ip', 'addr', 'add', `${node.ip}/${UNDERLAY_PREFIX}`, 'dev', UNDERLAY_IFACE);
      await inNs('ip', 'route', 'add', 'default', 'via', ROUTER_IP);
    }
  }
  step(`${plan.nodes.length} namespaces wired to the switch (outside ${OUTSIDE_IP}, ctl ${plan.nodes[1]!.ip})`);

  const members = plan.nodes.filter((n) => n.role === 'etcd');
  if (members.length) {
    for (const m of members) {
      state.procs.push({ pid: startEtcdMember(dir, plan, m), what: 'etcd', ns: m.ns, node: m.name });
      writeState(state);
    }
    await waitEtcdHealthy(plan, 60_000);
    step(`etcd: ${members.length} members, healthy (${etcdEndpoints(plan)})`);
  }

  const image = `${dir}/image.tar`;
  await buildImageTar(run, dir, image);
  step(`test image rootfs from busybox-static`);

  const hosts = plan.nodes.filter((n) => n.role === 'host');
  await Promise.all(hosts.map((h) => buildHost(state, run, step, h, image)));
}

async function buildImageTar(run: Runner, dir: string, tarPath: string): Promise<void> {
  const root = `${dir}/rootfs`;
  fs.rmSync(root, { recursive: true, force: true });
  for (const d of ['bin', 'etc', 'tmp', 'proc', 'sys', 'dev']) fs.mkdirSync(`${root}/${d}`, { recursive: true });
  const bb = (await which('busybox'))!;
  fs.copyFileSync(fs.realpathSync(bb), `${root}/bin/busybox`);
  fs.chmodSync(`${root}/bin/busybox`, 0o755);
  const applets = (await run([`${root}/bin/busybox`, '--list'])).stdout.split('\n').filter((a) => a && a !== 'busybox');
  for (const a of applets) fs.symlinkSync('busybox', `${root}/bin/${a}`);
  fs.writeFileSync(`${root}/etc/passwd`, 'root:x:0:0:root:/root:/bin/sh\n');
  fs.writeFileSync(`${root}/etc/group`, 'root:x:0:\n');
  await run(['tar', '-C', root, '-cf', tarPath, '.']);
  fs.rmSync(root, { recursive: true, force: true });
}

/** Starts an etcd member of the lab's cluster in its namespace (its data dir survives a restart); returns its PID. */
export function startEtcdMember(dir: string, plan: LabPlan, node: LabNode): number {
  const data = `${dir}/${node.name}`;
  fs.mkdirSync(data, { recursive: true, mode: 0o700 });
  const log = fs.openSync(`${data}/etcd.log`, 'a');
  const child = spawn('nsenter', [`--net=${NETNS_DIR}/${node.ns}`, 'etcd', ...etcdArgs(plan, node, `${data}/data`)], {
    detached: true,
    stdio: ['ignore', log, log],
    env: { PATH: systemPath() },
  });
  fs.closeSync(log);
  child.unref();
  if (!child.pid) throw new LabError('LAB_ETCD_FAILED', `${node.name}: etcd did not start`);
  return child.pid;
}

/** The members' health as etcdctl reports it from the ctl namespace: endpoint -> healthy. */
export async function etcdHealth(plan: LabPlan): Promise<Record<string, boolean>> {
  const ctl = plan.nodes.find((n) => n.name === 'ctl')!;
  const r = await createRunner({ timeoutMs: 15_000 })(
    [
      ...nsPrefix(ctl.ns),
      'etcdctl',
      '--endpoints',
      etcdEndpoints(plan),
      '--command-timeout=2s',
      'endpoint',
      'health',
      '-w',
      'json',
    ],
    { env: { ETCDCTL_API: '3' }, okCodes: [1] },
  );
  try {
    const list = JSON.parse(r.stdout) as { endpoint: string; health: boolean }[];
    return Object.fromEntries(list.map((x) => [x.endpoint, x.health]));
  } catch {
    return {};
  }
}

async function waitEtcdHealthy(plan: LabPlan, ms: number): Promise<void> {
  const want = plan.nodes.filter((n) => n.role === 'etcd').length;
  const deadline = Date.now() + ms;
  for (;;) {
    const h = await etcdHealth(plan);
    if (Object.values(h).filter(Boolean).length === want) return;
    if (Date.now() > deadline)
      throw new LabError('LAB_ETCD_FAILED', `etcd not healthy after ${ms / 1000} s: ${JSON.stringify(h)}`);
    await sleep(200);
  }
}

/** Starts ovsdb-server on a lab host's existing conf.db; returns its PID. */
export async function startOvsdb(run: Runner, dir: string, node: LabNode): Promise<number> {
  const p = hostPaths(dir, node.name);
  await run(
    [
      ...nsPrefix(node.ns),
      'ovsdb-server',
      `${p.ovsDb}/conf.db`,
      `--remote=punix:${p.dbSock}`,
      '--remote=db:Open_vSwitch,Open_vSwitch,manager_options',
      `--pidfile=${p.ovsRun}/ovsdb-server.pid`,
      `--unixctl=${p.ovsRun}/ovsdb-server.ctl`,
      '--detach',
      `--log-file=${p.ovsLog}/ovsdb-server.log`,
    ],
    { env: hostEnv(dir, node) },
  );
  return Number(fs.readFileSync(`${p.ovsRun}/ovsdb-server.pid`, 'utf8').trim());
}

/** dockerd's networking flags: none for a stock host; `bare` turns Docker's own networking off. */
export function dockerNetworkFlags(mode: DockerMode): string[] {
  if (mode === 'default') return [];
  return ['--bridge=none', '--iptables=false', '--ip6tables=false', '--ip-forward=false', '--ip-masq=false'];
}

/**
 * Starts dockerd for a lab host (own data root, exec root, socket, mount namespace with its
 * plugin directory); resolves when its API
 * answers. With the lab's default mode it runs as on a stock Docker host (iptables on,
 * its docker0 bridge on 172.17.0.0/16 inside the host's namespace, off the lab's ranges).
 */
export async function startDockerd(dir: string, node: LabNode, mountNs: number, extra: string[] = []): Promise<number> {
  const mode = readState(dir)?.docker ?? 'bare';
  const p = hostPaths(dir, node.name);
  const log = fs.openSync(p.dockerLog, 'a');
  const child = spawn(
    'nsenter',
    [
      `--mount=/proc/${mountNs}/ns/mnt`,
      `--net=/run/netns/${node.ns}`,
      'dockerd',
      `--data-root=${p.dockerRoot}`,
      `--exec-root=${p.dockerExec}`,
      `--pidfile=${p.dockerPid}`,
      `--host=unix://${p.dockerSock}`,
      ...dockerNetworkFlags(mode),
      '--userland-proxy=false',
      '--log-level=warn',
      ...extra,
    ],
    { detached: true, stdio: ['ignore', log, log], env: { ...process.env, PATH: systemPath() } },
  );
  fs.closeSync(log);
  child.unref();
  if (!child.pid) throw new LabError('LAB_DOCKERD_FAILED', `${node.name}: dockerd did not start`);
  const deadline = Date.now() + 30_000;
  while (!(await pingDocker(p.dockerSock))) {
    if (!alive(child.pid)) throw new LabError('LAB_DOCKERD_FAILED', `${node.name}: dockerd exited; see ${p.dockerLog}`);
    if (Date.now() > deadline)
      throw new LabError('LAB_DOCKERD_FAILED', `${node.name}: dockerd not ready after 30 s; see ${p.dockerLog}`);
    await sleep(50);
  }
  return child.pid;
}

/**
 * A lab host's own mount namespace, held by a `sleep` in the host's network namespace
 * (recorded as `mount-ns`, ended with the host). There the host's plugin directory is
 * /run/docker/plugins, so its dockerd finds only its own agent's plugin socket; and a
 * dockerd started again finds the container network namespaces the earlier one mounted
 * (live-restore), as on a real host where every dockerd runs in the one mount namespace.
 */
export async function startMountNs(dir: string, node: LabNode): Promise<number> {
  const p = hostPaths(dir, node.name);
  fs.mkdirSync(p.dockerPlugins, { recursive: true });
  const child = spawn(
    'unshare',
    [
      '--mount',
      '--propagation',
      'private',
      'sh',
      '-c',
      'mkdir -p /run/docker/plugins && mount --bind "$1" /run/docker/plugins && exec nsenter --net="$2" sleep infinity',
      'gremesh-lab-mount-ns',
      p.dockerPlugins,
      `/run/netns/${node.ns}`,
    ],
    { detached: true, stdio: 'ignore', env: { ...process.env, PATH: systemPath() } },
  );
  child.unref();
  if (!child.pid) throw new LabError('LAB_DOCKERD_FAILED', `${node.name}: no mount namespace`);
  const rec = { pid: child.pid, what: 'mount-ns', ns: node.ns, node: node.name };
  // in place once the holder runs in the host's network namespace (it got there after the mount)
  const deadline = Date.now() + 10_000;
  while (!isOurs(rec)) {
    if (!alive(child.pid) || Date.now() > deadline)
      throw new LabError('LAB_DOCKERD_FAILED', `${node.name}: the mount namespace for dockerd did not come up`);
    await sleep(10);
  }
  return child.pid;
}

/** Stop (SIGTERM, as a service manager does) and start a lab host's dockerd with extra flags. */
export async function restartDockerd(dir: string, host: string, extra: string[] = []): Promise<number> {
  const s = requireState(dir);
  const node = nodeByName(s, host);
  await stopPids(
    s.procs.filter((x) => x.node === host && x.what === 'dockerd' && isOurs(x)).map((x) => x.pid),
    20_000,
  );
  let mountNs = s.procs.find((x) => x.node === host && x.what === 'mount-ns' && isOurs(x))?.pid;
  if (!mountNs) {
    mountNs = await startMountNs(dir, node);
    recordProcess(dir, { pid: mountNs, what: 'mount-ns', ns: node.ns, node: host });
  }
  const pid = await startDockerd(dir, node, mountNs, extra);
  recordProcess(dir, { pid, what: 'dockerd', ns: node.ns, node: host });
  return pid;
}

/** kill -9 a lab host's ovsdb-server and ovs-vswitchd, then start both again (the db file survives). */
export async function restartOvs(dir: string, host: string): Promise<void> {
  const s = requireState(dir);
  const node = nodeByName(s, host);
  const pids = s.procs
    .filter((x) => x.node === host && (x.what === 'ovs-vswitchd' || x.what === 'ovsdb-server') && isOurs(x))
    .map((x) => x.pid);
  for (const pid of pids) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      /* gone */
    }
  }
  await stopPids(pids, 2000);
  const run = createRunner({ timeoutMs: 30_000 });
  recordProcess(dir, { pid: await startOvsdb(run, dir, node), what: 'ovsdb-server', ns: node.ns, node: host });
  recordProcess(dir, { pid: await startVswitchd(run, dir, node), what: 'ovs-vswitchd', ns: node.ns, node: host });
}

/** A crashed machine: every process of the host killed at once, its namespace gone. */
export async function crashHost(dir: string, host: string): Promise<void> {
  const s = requireState(dir);
  const node = nodeByName(s, host);
  const ino = netnsInode(node.ns);
  const hostDir = hostPaths(dir, host).root;
  const victims = leftoverPids(new Set(ino !== undefined ? [ino] : []), [hostDir]);
  for (const pid of victims) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      /* gone */
    }
  }
  await stopPids(victims, 2000);
  await createRunner()(['ip', 'netns', 'del', node.ns]).catch(() => {});
}

/** Starts ovs-vswitchd for a lab host (also used to restart it in fault tests); returns its PID. */
export async function startVswitchd(run: Runner, dir: string, node: LabNode): Promise<number> {
  const p = hostPaths(dir, node.name);
  await run(
    [
      ...nsPrefix(node.ns),
      'ovs-vswitchd',
      `unix:${p.dbSock}`,
      `--pidfile=${p.ovsRun}/ovs-vswitchd.pid`,
      `--unixctl=${p.ovsRun}/ovs-vswitchd.ctl`,
      '--detach',
      `--log-file=${p.ovsLog}/ovs-vswitchd.log`,
    ],
    { env: hostEnv(dir, node) },
  );
  return Number(fs.readFileSync(`${p.ovsRun}/ovs-vswitchd.pid`, 'utf8').trim());
}

/** kill -9 a lab host's ovs-vswitchd and start a new one, as a crash and a supervisor would. */
export async function restartVswitchd(dir: string, host: string): Promise<number> {
  const s = requireState(dir);
  const node = nodeByName(s, host);
  for (const p of s.procs.filter((x) => x.node === host && x.what === 'ovs-vswitchd' && isOurs(x))) {
    process.kill(p.pid, 'SIGKILL');
    await stopPids([p.pid], 2000);
  }
  const pid = await startVswitchd(createRunner({ timeoutMs: 30_000 }), dir, node);
  recordProcess(dir, { pid, what: 'ovs-vswitchd', ns: node.ns, node: host });
  return pid;
}

/** Record a namespace a test made inside the lab (an endpoint), so `down` removes it. */
export function recordNetns(dir: string, ns: string): void {
  const s = requireState(dir);
  if (!s.netns.includes(ns)) s.netns.push(ns);
  writeState(s);
}

async function buildHost(state: LabState, run: Runner, step: Progress, node: LabNode, image: string): Promise<void> {
  const p = hostPaths(state.dir, node.name);
  for (const d of [p.ovsRun, p.dockerRoot, p.dockerExec]) fs.mkdirSync(d, { recursive: true });
  const env = hostEnv(state.dir, node);
  const inNs = (argv: string[], opts: Parameters<Runner>[1] = {}) =>
    run([...nsPrefix(node.ns), ...argv], { ...opts, env: { ...env, ...opts.env } });
  const record = (pid: number, what: string) => {
    state.procs.push({ pid, what, ns: node.ns, node: node.name });
    writeState(state);
  };

  // OVS: own db, own daemons, userspace datapath
  const schema = VSWITCH_SCHEMA_PATHS.find((s) => fs.existsSync(s));
  if (!schema)
    throw new LabError('LAB_MISSING_TOOL', 'vswitch.ovsschema not found (Debian package openvswitch-common)');
  await run(['ovsdb-tool', 'create', `${p.ovsDb}/conf.db`, schema]);
  record(await startOvsdb(run, state.dir, node), 'ovsdb-server');
  await inNs(['ovs-vsctl', '--no-wait', 'init']);
  record(await startVswitchd(run, state.dir, node), 'ovs-vswitchd');
  // br-phy holds the underlay NIC and the host's address (OVS userspace-tunneling guide)
  // (not /sys: nsenter --net keeps the root namespace's sysfs mounted)
  const mac = (
    JSON.parse((await inNs(['ip', '-j', 'link', 'show', UNDERLAY_IFACE])).stdout) as { address: string }[]
  )[0]!.address;
  await inNs([
    'ovs-vsctl',
    '--may-exist',
    'add-br',
    PHYS_BRIDGE,
    '--',
    'set',
    'bridge',
    PHYS_BRIDGE,
    'datapath_type=netdev',
    `other_config:hwaddr="${mac}"`,
    '--',
    '--may-exist',
    'add-port',
    PHYS_BRIDGE,
    UNDERLAY_IFACE,
  ]);
  // The underlay NIC belongs to OVS (read through a packet socket), but the kernel sees
  // its frames too: it would answer GRE with "protocol unreachable" and, once the host
  // forwards, route (and de-NAT) packets meant for br-phy a second time. Packet sockets
  // get their copy before ingress, so dropping at ingress leaves OVS's copy alone.
  await inNs(['nft', '-f', '-'], {
    input: `table netdev gremesh_lab {\n  chain underlay_owned_by_ovs {\n    type filter hook ingress device ${UNDERLAY_IFACE} priority 0; policy drop;\n  }\n}\n`,
  });
  await inNs(['ip', 'addr', 'add', `${node.ip}/${UNDERLAY_PREFIX}`, 'dev', PHYS_BRIDGE]);
  await inNs(['ip', 'link', 'set', PHYS_BRIDGE, 'up']);
  await inNs(['ip', 'route', 'add', 'default', 'via', ROUTER_IP, 'dev', PHYS_BRIDGE]);
  step(`${node.name}: ovsdb-server + ovs-vswitchd (netdev), ${PHYS_BRIDGE} ${node.ip}/${UNDERLAY_PREFIX}`);

  const mountNs = await startMountNs(state.dir, node);
  record(mountNs, 'mount-ns');
  const pid = await startDockerd(state.dir, node, mountNs);
  record(pid, 'dockerd');
  await run([dockerCli(), 'import', image, IMAGE], { env: { DOCKER_HOST: `unix://${p.dockerSock}` } });
  step(
    `${node.name}: dockerd (pid ${pid}, ${state.docker === 'bare' ? 'bare' : "Docker's defaults"}) with image ${IMAGE}`,
  );
}

// ------------------------------------------------------------------ down

export interface DownOptions {
  dir: string;
  progress: Progress;
  run?: Runner;
}

/** Returns false when there was no lab in dir. */
export async function down(o: DownOptions): Promise<boolean> {
  const started = performance.now();
  const state = readState(o.dir);
  if (!state) return false;
  const run = o.run ?? createRunner({ timeoutMs: 30_000 });
  const step = (what: string) =>
    o.progress(`[${((performance.now() - started) / 1000).toFixed(2).padStart(6)}s] ${what}`);

  // 1. containers, then dockerd, gracefully (dockerd stops its containers and containerd)
  const dockerds = state.procs.filter((p) => p.what === 'dockerd' && isOurs(p));
  await Promise.all(
    dockerds.map(async (d) => {
      const sock = hostPaths(state.dir, d.node).dockerSock;
      const env = { DOCKER_HOST: `unix://${sock}` };
      try {
        const ids = (await run([dockerCli(), 'ps', '-aq'], { env, timeoutMs: 10_000 })).stdout
          .split('\n')
          .filter(Boolean);
        if (ids.length) await run([dockerCli(), 'rm', '-f', ...ids], { env, timeoutMs: 30_000 });
      } catch {
        /* dockerd wedged: it is killed below */
      }
    }),
  );
  await stopPids(
    dockerds.map((d) => d.pid),
    15_000,
  );
  if (dockerds.length) step(`stopped ${dockerds.length} dockerd`);

  // 2. every other process we recorded (ovs daemons, agents, coordinator), checked to be ours
  const others = state.procs.filter((p) => p.what !== 'dockerd' && isOurs(p));
  await stopPids(
    others.map((p) => p.pid),
    5_000,
  );
  if (others.length) step(`stopped ${others.length} processes (${[...new Set(others.map((p) => p.what))].join(', ')})`);

  // 3. anything still running inside our namespaces or rooted in our dir (orphaned container processes)
  const inodes = new Set(state.netns.map(netnsInode).filter((x): x is number => x !== undefined));
  const stray = leftoverPids(inodes, [state.dir]);
  if (stray.length) {
    await stopPids(stray, 3_000);
    step(`stopped ${stray.length} leftover processes`);
  }

  // 4. mounts under the lab dir (docker's overlays, netns bind mounts), deepest first
  const mounts = mountsUnder(state.dir);
  for (const m of mounts) await run(['umount', '-l', m]).catch(() => {});
  if (mounts.length) step(`unmounted ${mounts.length} mounts`);

  // 5. namespaces: their veths go with them
  for (const ns of [...state.netns].reverse()) {
    if (fs.existsSync(`${NETNS_DIR}/${ns}`))
      await run(['ip', 'netns', 'del', ns]).catch((e: ExecError) => step(`warning: ${e.message}`));
  }
  step(`removed ${state.netns.length} namespaces`);

  // 6. files
  for (const n of state.plan.nodes) fs.rmSync(`${state.dir}/${n.name}`, { recursive: true, force: true });
  fs.rmSync(`${state.dir}/image.tar`, { force: true });
  fs.rmSync(`${state.dir}/rootfs`, { recursive: true, force: true });
  fs.rmSync(statePath(state.dir), { force: true });
  if (state.createdDir) {
    try {
      fs.rmdirSync(state.dir);
    } catch {
      /* the user put something there: leave it */
    }
  }
  step(`lab ${state.id} down`);
  return true;
}

// ------------------------------------------------------------------ sweep

export interface SweepOptions {
  /** namespace and temp-dir prefix of the labs to remove (`gmt`: the test suite's) */
  prefix: string;
  /** where those labs' dirs live (the test helpers make them in the OS temp dir) */
  tmpDir: string;
  progress: Progress;
}

export interface SweepResult {
  labs: number;
  processes: number;
  namespaces: number;
  dirs: number;
}

/**
 * Removes every lab whose namespaces carry PREFIX, and their temp dirs PREFIX-* under
 * tmpDir: first through each lab's own state file (`down`), then whatever a lab killed
 * halfway left without one (processes in those namespaces or rooted in those dirs,
 * mounts, namespaces, dirs). Labs with another prefix (the demo's `gml`) are not touched.
 */
export async function sweep(o: SweepOptions): Promise<SweepResult> {
  const err = validatePrefix(o.prefix);
  if (err) throw new LabError('LAB_BAD_PREFIX', err);
  const res: SweepResult = { labs: 0, processes: 0, namespaces: 0, dirs: 0 };
  const mine = (name: string) => name.startsWith(`${o.prefix}-`);
  const dirs = fs
    .readdirSync(o.tmpDir)
    .filter(mine)
    .map((d) => `${o.tmpDir}/${d}`);
  for (const dir of dirs) {
    let state: LabState | undefined;
    try {
      state = readState(dir);
    } catch {
      state = undefined; // unreadable state: swept below like a dir without one
    }
    if (state && (state.plan.prefix ?? DEFAULT_PREFIX) === o.prefix) {
      await down({ dir, progress: () => {} });
      res.labs++;
      o.progress(`lab ${state.id} in ${dir} removed`);
    }
  }
  const nsNames = fs.existsSync(NETNS_DIR) ? fs.readdirSync(NETNS_DIR).filter(mine) : [];
  const inodes = new Set(nsNames.map(netnsInode).filter((x): x is number => x !== undefined));
  const unique = leftoverPids(inodes, dirs);
  if (unique.length) {
    await stopPids(unique, 3_000);
    res.processes = unique.length;
    o.progress(`stopped ${unique.length} leftover processes`);
  }
  const run = createRunner({ timeoutMs: 30_000 });
  for (const dir of dirs) {
    for (const m of mountsUnder(dir)) await run(['umount', '-l', m]).catch(() => {});
  }
  for (const ns of nsNames) {
    await run(['ip', 'netns', 'del', ns]).catch((e: ExecError) => o.progress(`warning: ${e.message}`));
    res.namespaces++;
  }
  if (nsNames.length) o.progress(`removed ${nsNames.length} leftover namespaces`);
  for (const dir of dirs) {
    fs.rmSync(dir, { recursive: true, force: true });
    res.dirs++;
  }
  return res;
}

// ------------------------------------------------------------------ status

export interface NodeStatus {
  name: string;
  role: string;
  ns: string;
  underlayIp: string;
  nsExists: boolean;
  processes: { what: string; pid: number; running: boolean }[];
  dockerSocket?: string;
  ovsDb?: string;
}

export function status(dir: string): { id: string; dir: string; status: string; nodes: NodeStatus[] } | undefined {
  const s = readState(dir);
  if (!s) return undefined;
  return {
    id: s.id,
    dir: s.dir,
    status: s.status,
    nodes: s.plan.nodes.map((n) => {
      const p = n.role === 'host' ? hostPaths(s.dir, n.name) : undefined;
      return {
        name: n.name,
        role: n.role,
        ns: n.ns,
        underlayIp: n.ip,
        nsExists: fs.existsSync(`${NETNS_DIR}/${n.ns}`),
        processes: s.procs
          .filter((x) => x.node === n.name)
          .map((x) => ({ what: x.what, pid: x.pid, running: isOurs(x) })),
        ...(p ? { dockerSocket: p.dockerSock, ovsDb: `unix:${p.dbSock}` } : {}),
      };
    }),
  };
}

/** Record a process started in a lab node (agents, coordinator) so `down` stops it. */
export function recordProcess(dir: string, p: ProcRecord): void {
  const s = readState(dir);
  if (!s) throw new LabError('LAB_NOT_UP', `no lab in ${dir}`);
  s.procs.push(p);
  writeState(s);
}

export function requireState(dir: string): LabState {
  const s = readState(dir);
  if (!s) throw new LabError('LAB_NOT_UP', `no lab in ${dir}: run "gremesh-lab up --dir ${dir}" first`);
  return s;
}

/**
 * Start a long-running process (coordinator, agent) inside a lab node, detached, with
 * the node's environment; record it so `down` stops it. Output goes to logFile.
 */
export function spawnInNode(
  dir: string,
  nodeName: string,
  what: string,
  argv: string[],
  logFile: string,
  env: Record<string, string> = {},
): number {
  const s = requireState(dir);
  const node = nodeByName(s, nodeName);
  const fd = fs.openSync(logFile, 'a');
  const child = spawn('nsenter', [`--net=${NETNS_DIR}/${node.ns}`, ...argv], {
    detached: true,
    stdio: ['ignore', fd, fd],
    env: { ...process.env, PATH: systemPath(), ...hostEnv(s.dir, node), ...env },
  });
  fs.closeSync(fd);
  child.unref();
  if (!child.pid) throw new LabError('LAB_SPAWN_FAILED', `${nodeName}: could not start ${what}`);
  recordProcess(dir, { pid: child.pid, what, ns: node.ns, node: nodeName });
  return child.pid;
}
