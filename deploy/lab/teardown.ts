// Taking labs down: `down` removes what one lab's state records, `sweep` every lab with a
// prefix (also ones killed halfway), `crashHost` kills one host at once as a crash would.
import * as fs from 'node:fs';
import { createRunner, ExecError, type Runner } from '../../common/exec.js';
import { hostPaths, validatePrefix, DEFAULT_PREFIX } from './plan.js';
import {
  LabError,
  type LabState,
  NETNS_DIR,
  type Progress,
  statePath,
  readState,
  nodeByName,
  requireState,
} from './state.js';
import { dockerCli } from './tools.js';
import { netnsInode, isOurs, stopPids, leftoverPids, mountsUnder } from './processes.js';

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
