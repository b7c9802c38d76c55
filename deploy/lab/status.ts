// `status`: what a lab's state records, with whether each namespace and process is still there.
import * as fs from 'node:fs';
import { hostPaths } from './plan.js';
import { NETNS_DIR, readState } from './state.js';
import { isOurs } from './processes.js';

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
