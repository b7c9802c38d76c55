// The lab's outside namespace's own server: its DNS (outside-dns.ts), started with the lab.
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import { systemPath } from '../../common/exec.js';
import type { LabNode } from './plan.js';
import { LabError, NETNS_DIR } from './state.js';

const SCRIPT = new URL('./outside-dns.js', import.meta.url).pathname;

/** Starts the outside DNS server in the outside namespace (recorded as `outside-dns` by the caller). */
export function startOutsideDns(dir: string, node: LabNode): number {
  // in the node's own dir, which `down` removes with the node
  fs.mkdirSync(`${dir}/${node.name}`, { recursive: true });
  const log = fs.openSync(`${dir}/${node.name}/outside-dns.log`, 'a');
  const child = spawn('nsenter', [`--net=${NETNS_DIR}/${node.ns}`, process.execPath, SCRIPT], {
    detached: true,
    stdio: ['ignore', log, log],
    env: { PATH: systemPath() },
  });
  fs.closeSync(log);
  child.unref();
  if (!child.pid) throw new LabError('LAB_SPAWN_FAILED', 'the outside DNS server did not start');
  return child.pid;
}
