// OVN as a reference in the benchmarks, on the lab's own hosts: the central databases
// and ovn-northd in the ctl namespace, one ovn-controller per host on that host's OVS
// (ovn-bridge-datapath-type=netdev, geneve). Every process is recorded in the lab's
// state, so `gremesh-lab down` ends it like the rest.
import * as fs from 'node:fs';
import type { Runner } from '../../common/exec.js';
import { systemPath } from '../../common/exec.js';
import { nodeByName, recordProcess, type LabState } from '../../deploy/lab/lab.js';
import { CTL_IP, hostEnv, hostIp, hostPaths } from '../../deploy/lab/plan.js';

export function ovnDir(dir: string): string {
  return `${dir}/ctl/ovn`;
}

/** NB and SB ovsdb-servers and ovn-northd in the ctl namespace */
export async function startOvnCentral(dir: string, state: LabState, run: Runner): Promise<void> {
  const ctl = nodeByName(state, 'ctl');
  const d = ovnDir(dir);
  fs.mkdirSync(d, { recursive: true });
  const inCtl = (argv: string[]) =>
    run(['nsenter', `--net=/run/netns/${ctl.ns}`, ...argv], { env: { OVN_RUNDIR: d, OVS_RUNDIR: d } });
  for (const [db, port] of [
    ['nb', 6641],
    ['sb', 6642],
  ] as const) {
    await run(['ovsdb-tool', 'create', `${d}/ovn${db}_db.db`, `/usr/share/ovn/ovn-${db}.ovsschema`]);
    await inCtl([
      'ovsdb-server',
      `${d}/ovn${db}_db.db`,
      `--remote=punix:${d}/ovn${db}_db.sock`,
      `--remote=ptcp:${port}:${CTL_IP}`,
      `--pidfile=${d}/ovsdb-${db}.pid`,
      `--unixctl=${d}/ovsdb-${db}.ctl`,
      `--log-file=${d}/ovsdb-${db}.log`,
      '--detach',
    ]);
    recordProcess(dir, {
      pid: Number(fs.readFileSync(`${d}/ovsdb-${db}.pid`, 'utf8')),
      what: `ovsdb-${db}`,
      ns: ctl.ns,
      node: 'ctl',
    });
  }
  await inCtl([
    'ovn-northd',
    `--ovnnb-db=unix:${d}/ovnnb_db.sock`,
    `--ovnsb-db=unix:${d}/ovnsb_db.sock`,
    `--pidfile=${d}/ovn-northd.pid`,
    `--unixctl=${d}/ovn-northd.ctl`,
    `--log-file=${d}/ovn-northd.log`,
    '--detach',
  ]);
  recordProcess(dir, {
    pid: Number(fs.readFileSync(`${d}/ovn-northd.pid`, 'utf8')),
    what: 'ovn-northd',
    ns: ctl.ns,
    node: 'ctl',
  });
}

/** ovn-nbctl against the lab's NB database */
export function ovnNbctl(dir: string, run: Runner, args: string[]): Promise<unknown> {
  return run(['ovn-nbctl', `--db=unix:${ovnDir(dir)}/ovnnb_db.sock`, ...args]);
}

/** a host's OVS as an OVN chassis (system-id = host name, geneve on its underlay address) */
export async function configureChassis(dir: string, state: LabState, run: Runner, h: string): Promise<void> {
  const n = nodeByName(state, h);
  await run(
    [
      'nsenter',
      `--net=/run/netns/${n.ns}`,
      'ovs-vsctl',
      'set',
      'Open_vSwitch',
      '.',
      `external_ids:system-id=${h}`,
      `external_ids:ovn-remote=tcp:${CTL_IP}:6642`,
      'external_ids:ovn-encap-type=geneve',
      `external_ids:ovn-encap-ip=${hostIp(Number(h.slice(1)))}`,
      'external_ids:ovn-bridge-datapath-type=netdev',
    ],
    { env: hostEnv(dir, n) },
  );
}

export async function startOvnController(dir: string, state: LabState, run: Runner, h: string): Promise<void> {
  const p = hostPaths(dir, h);
  const n = nodeByName(state, h);
  await run(
    [
      'nsenter',
      `--net=/run/netns/${n.ns}`,
      'ovn-controller',
      `unix:${p.dbSock}`,
      `--pidfile=${p.root}/ovn-controller.pid`,
      `--log-file=${p.root}/ovn-controller.log`,
      '--detach',
    ],
    { env: { ...hostEnv(dir, n), OVN_RUNDIR: p.root, PATH: systemPath() } },
  );
  recordProcess(dir, {
    pid: Number(fs.readFileSync(`${p.root}/ovn-controller.pid`, 'utf8')),
    what: 'ovn-controller',
    ns: n.ns,
    node: h,
  });
}
