// The lab's record of itself: DIR/state.json (what `up` made, written as soon as it exists,
// so `down` removes exactly that), its error type, and lookups of its nodes.
import * as fs from 'node:fs';
import type { LabNode, LabPlan } from './plan.js';

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

export const NETNS_DIR = '/run/netns';

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

export function writeState(s: LabState): void {
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

/** Record a namespace a test made inside the lab (an endpoint), so `down` removes it. */
export function recordNetns(dir: string, ns: string): void {
  const s = requireState(dir);
  if (!s.netns.includes(ns)) s.netns.push(ns);
  writeState(s);
}
