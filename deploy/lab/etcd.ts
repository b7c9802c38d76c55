// The lab's etcd cluster: a member started in its own namespace, and the members' health.
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import { createRunner, systemPath } from '../../common/exec.js';
import { etcdArgs, etcdEndpoints, type LabNode, type LabPlan } from './plan.js';
import { LabError, NETNS_DIR, nsPrefix } from './state.js';
import { sleep } from './processes.js';

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

export async function waitEtcdHealthy(plan: LabPlan, ms: number): Promise<void> {
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
