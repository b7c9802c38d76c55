// A lab host's dockerd: its flags, its own mount namespace (its plugin directory), start
// until its API answers, and restart with extra flags (fault and plugin tests).
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as http from 'node:http';
import { systemPath } from '../../common/exec.js';
import { hostPaths, OUTSIDE_IP, type LabNode } from './plan.js';
import { LabError, type DockerMode, readState, nodeByName, recordProcess, requireState } from './state.js';
import { alive, isOurs, sleep, stopPids } from './processes.js';

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
 * /run/docker/plugins, so its dockerd finds only its own agent's plugin socket; its
 * /etc/resolv.conf names the outside namespace's DNS server (OUTSIDE_IP); and a
 * dockerd started again finds the container network namespaces the earlier one mounted
 * (live-restore), as on a real host where every dockerd runs in the one mount namespace.
 */
export async function startMountNs(dir: string, node: LabNode): Promise<number> {
  const p = hostPaths(dir, node.name);
  fs.mkdirSync(p.dockerPlugins, { recursive: true });
  // dockerd (and so its containers) resolve through the lab's outside server, never the machine's
  const resolvConf = `${p.root}/resolv.conf`;
  fs.writeFileSync(resolvConf, `nameserver ${OUTSIDE_IP}\n`);
  const child = spawn(
    'unshare',
    [
      '--mount',
      '--propagation',
      'private',
      'sh',
      '-c',
      'mkdir -p /run/docker/plugins && mount --bind "$1" /run/docker/plugins && mount --bind "$3" /etc/resolv.conf && exec nsenter --net="$2" sleep infinity',
      'gremesh-lab-mount-ns',
      p.dockerPlugins,
      `/run/netns/${node.ns}`,
      resolvConf,
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
