// Process helpers for the lab: is a recorded PID still ours, stop PIDs (TERM then KILL),
// find what is left in our namespaces or dirs, and start a process inside a lab node.
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import { systemPath } from '../../common/exec.js';
import { hostEnv } from './plan.js';
import { LabError, type ProcRecord, NETNS_DIR, nodeByName, recordProcess, requireState } from './state.js';

export function netnsInode(ns: string): number | undefined {
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

export async function sleep(ms: number): Promise<void> {
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
export function leftoverPids(nsInodes: Set<number>, dirs: string[]): number[] {
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

export function mountsUnder(dir: string): string[] {
  const lines = fs.readFileSync('/proc/self/mountinfo', 'utf8').split('\n');
  const points = lines.map((l) => l.split(' ')[4] ?? '').filter((p) => p === dir || p.startsWith(`${dir}/`));
  return [...new Set(points)].sort((a, b) => b.length - a.length); // deepest first
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
