// One lab host built: its OVS (own db and daemons, br-phy on the underlay), its mount
// namespace and dockerd, with the busybox test image imported.
import * as fs from 'node:fs';
import { which, type Runner } from '../../common/exec.js';
import {
  hostEnv,
  hostPaths,
  IMAGE,
  PHYS_BRIDGE,
  ROUTER_IP,
  UNDERLAY_IFACE,
  UNDERLAY_PREFIX,
  type LabNode,
  ROUTER_IP6,
  UNDERLAY6_PREFIX,
  underlayIp6,
} from './plan.js';
import { LabError, nsPrefix, type LabState, type Progress, writeState } from './state.js';
import { VSWITCH_SCHEMA_PATHS, dockerCli } from './tools.js';
import { startOvsdb, startVswitchd } from './ovs-daemons.js';
import { startDockerd, startMountNs } from './dockerd.js';

export async function buildImageTar(run: Runner, dir: string, tarPath: string): Promise<void> {
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

export async function buildHost(
  state: LabState,
  run: Runner,
  step: Progress,
  node: LabNode,
  image: string,
): Promise<void> {
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
  // IPv6 on the underlay too (NAT66 egress; an IPv6 address the coordinator may name)
  await inNs(['ip', '-6', 'addr', 'add', `${underlayIp6(node.ip)}/${UNDERLAY6_PREFIX}`, 'dev', PHYS_BRIDGE, 'nodad']);
  await inNs(['ip', '-6', 'route', 'add', 'default', 'via', ROUTER_IP6, 'dev', PHYS_BRIDGE]);
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
