// `up`: check, plan and record a new lab, then build it: the namespaces and the underlay
// switch, the etcd members, the test image and every host; on failure remove what was made.
import * as fs from 'node:fs';
import { randomBytes } from 'node:crypto';
import { createRunner, which, type Runner } from '../../common/exec.js';
import {
  computePlan,
  etcdEndpoints,
  validateControlPlane,
  labIdFrom,
  longestSocketPath,
  labNs,
  validateHostCount,
  validatePrefix,
  DEFAULT_PREFIX,
  OUTSIDE_IP,
  OUTSIDE_IP6,
  OUTSIDE6_PREFIX,
  OUTSIDE_PREFIX,
  ROUTER_IP6,
  UNDERLAY6_PREFIX,
  ROUTER_IP,
  SWITCH_BRIDGE,
  UNDERLAY_IFACE,
  UNDERLAY_PREFIX,
} from './plan.js';
import {
  LabError,
  type LabState,
  type DockerMode,
  NETNS_DIR,
  nsPrefix,
  type Progress,
  readState,
  writeState,
} from './state.js';
import { checkTools } from './tools.js';
import { buildImageTar, buildHost } from './host-build.js';
import { startEtcdMember, waitEtcdHealthy } from './etcd.js';
import { startOutsideDns } from './outside.js';
import { down } from './teardown.js';

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
      for (const a of [`${ROUTER_IP6}/${UNDERLAY6_PREFIX}`, `${OUTSIDE_IP6}/${OUTSIDE6_PREFIX}`])
        await inNs('ip', '-6', 'addr', 'add', a, 'dev', UNDERLAY_IFACE, 'nodad');
    } else if (node.role === 'ctl' || node.role === 'etcd') {
      await inNs('ip', 'addr', 'add', `${node.ip}/${UNDERLAY_PREFIX}`, 'dev', UNDERLAY_IFACE);
      await inNs('ip', 'route', 'add', 'default', 'via', ROUTER_IP);
    }
  }
  step(`${plan.nodes.length} namespaces wired to the switch (outside ${OUTSIDE_IP}, ctl ${plan.nodes[1]!.ip})`);
  const out = plan.nodes.find((n) => n.role === 'outside')!;
  state.procs.push({ pid: startOutsideDns(dir, out), what: 'outside-dns', ns: out.ns, node: out.name });
  writeState(state);

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
