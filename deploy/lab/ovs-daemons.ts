// A lab host's ovsdb-server and ovs-vswitchd: started, and restarted as a crash and a
// supervisor would (fault tests).
import * as fs from 'node:fs';
import { createRunner, type Runner } from '../../common/exec.js';
import { hostEnv, hostPaths, type LabNode } from './plan.js';
import { nodeByName, nsPrefix, recordProcess, requireState } from './state.js';
import { isOurs, stopPids } from './processes.js';

/** Starts ovsdb-server on a lab host's existing conf.db; returns its PID. */
export async function startOvsdb(run: Runner, dir: string, node: LabNode): Promise<number> {
  const p = hostPaths(dir, node.name);
  await run(
    [
      ...nsPrefix(node.ns),
      'ovsdb-server',
      `${p.ovsDb}/conf.db`,
      `--remote=punix:${p.dbSock}`,
      '--remote=db:Open_vSwitch,Open_vSwitch,manager_options',
      `--pidfile=${p.ovsRun}/ovsdb-server.pid`,
      `--unixctl=${p.ovsRun}/ovsdb-server.ctl`,
      '--detach',
      `--log-file=${p.ovsLog}/ovsdb-server.log`,
    ],
    { env: hostEnv(dir, node) },
  );
  return Number(fs.readFileSync(`${p.ovsRun}/ovsdb-server.pid`, 'utf8').trim());
}

/** Starts ovs-vswitchd for a lab host (also used to restart it in fault tests); returns its PID. */
export async function startVswitchd(run: Runner, dir: string, node: LabNode): Promise<number> {
  const p = hostPaths(dir, node.name);
  await run(
    [
      ...nsPrefix(node.ns),
      'ovs-vswitchd',
      `unix:${p.dbSock}`,
      `--pidfile=${p.ovsRun}/ovs-vswitchd.pid`,
      `--unixctl=${p.ovsRun}/ovs-vswitchd.ctl`,
      '--detach',
      `--log-file=${p.ovsLog}/ovs-vswitchd.log`,
    ],
    { env: hostEnv(dir, node) },
  );
  return Number(fs.readFileSync(`${p.ovsRun}/ovs-vswitchd.pid`, 'utf8').trim());
}

/** kill -9 a lab host's ovsdb-server and ovs-vswitchd, then start both again (the db file survives). */
export async function restartOvs(dir: string, host: string): Promise<void> {
  const s = requireState(dir);
  const node = nodeByName(s, host);
  const pids = s.procs
    .filter((x) => x.node === host && (x.what === 'ovs-vswitchd' || x.what === 'ovsdb-server') && isOurs(x))
    .map((x) => x.pid);
  for (const pid of pids) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      /* gone */
    }
  }
  await stopPids(pids, 2000);
  const run = createRunner({ timeoutMs: 30_000 });
  recordProcess(dir, { pid: await startOvsdb(run, dir, node), what: 'ovsdb-server', ns: node.ns, node: host });
  recordProcess(dir, { pid: await startVswitchd(run, dir, node), what: 'ovs-vswitchd', ns: node.ns, node: host });
}

/** kill -9 a lab host's ovs-vswitchd and start a new one, as a crash and a supervisor would. */
export async function restartVswitchd(dir: string, host: string): Promise<number> {
  const s = requireState(dir);
  const node = nodeByName(s, host);
  for (const p of s.procs.filter((x) => x.node === host && x.what === 'ovs-vswitchd' && isOurs(x))) {
    process.kill(p.pid, 'SIGKILL');
    await stopPids([p.pid], 2000);
  }
  const pid = await startVswitchd(createRunner({ timeoutMs: 30_000 }), dir, node);
  recordProcess(dir, { pid, what: 'ovs-vswitchd', ns: node.ns, node: host });
  return pid;
}
