// An idle agent: 3 lab hosts joined, a container on each, nothing changing. Over a
// window (default 30 s): how many processes each agent started (its own count, written
// to status.json: every process goes through the exec runner) and how much CPU it used.
// Usage: node dist/test/bench/idle.js [--seconds 30]
import * as fs from 'node:fs';
import * as os from 'node:os';
import { parseArgs } from 'node:util';
import { BIN, cli, tempDir } from '../helpers/cli.js';
import { readState } from '../../deploy/lab/lab.js';
import { agentStateDir, joinAll, startCoordinator } from '../../deploy/lab/mesh.js';
import { IMAGE, hostEnv } from '../../deploy/lab/plan.js';
import { createRunner } from '../../common/exec.js';

const { values } = parseArgs({ options: { seconds: { type: 'string', default: '30' } } });
const seconds = Number(values.seconds);
const dir = tempDir('gmi');
const hosts = ['h1', 'h2', 'h3'];
const up = await cli(BIN.lab, ['up', '--hosts', '3', '--dir', dir], {}, 600_000);
if (up.exitCode !== 0) throw new Error(up.stderr);
const run = createRunner({ timeoutMs: 60_000 });
const started = (h: string) =>
  (JSON.parse(fs.readFileSync(`${agentStateDir(dir, h)}/status.json`, 'utf8')) as { processesStarted: number })
    .processesStarted;
const agentPid = (h: string) =>
  readState(dir)!
    .procs.filter((p) => p.node === h && p.what === 'agent')
    .at(-1)!.pid;
const cpuTicks = (pid: number) => {
  const f = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  const parts = f.slice(f.lastIndexOf(')') + 2).split(' ');
  return Number(parts[11]) + Number(parts[12]); // utime + stime
};
const rows: { host: string; processes: number; cpuPercent: number }[] = [];
try {
  await startCoordinator(dir);
  await joinAll(dir, hosts);
  for (const h of hosts) {
    const n = readState(dir)!.plan.nodes.find((x) => x.name === h)!;
    await run(
      [
        'nsenter',
        `--net=/run/netns/${n.ns}`,
        'docker',
        'run',
        '-d',
        '--net=none',
        '--label',
        'gremesh.network=default',
        IMAGE,
        'sleep',
        '3600',
      ],
      { env: hostEnv(dir, n) },
    );
  }
  // settle: every agent has attached its container and stopped changing things
  await new Promise((r) => setTimeout(r, 15_000));
  const before = hosts.map((h) => ({ p: started(h), cpu: cpuTicks(agentPid(h)) }));
  await new Promise((r) => setTimeout(r, seconds * 1000));
  // the status file is rewritten on every pass: wait for one after the window
  await new Promise((r) => setTimeout(r, 11_000));
  const hz = 100; // USER_HZ
  for (const [k, h] of hosts.entries()) {
    const cpu = (cpuTicks(agentPid(h)) - before[k]!.cpu) / hz;
    rows.push({ host: h, processes: started(h) - before[k]!.p, cpuPercent: (cpu / (seconds + 11)) * 100 });
  }
  for (const r of rows)
    process.stdout.write(
      `${r.host}: idle agent over ${seconds} s: ${r.processes} processes started, ${r.cpuPercent.toFixed(2)} % of one core (${os.cpus().length} cores)\n`,
    );
} finally {
  await cli(BIN.lab, ['down', '--dir', dir], {}, 600_000);
  fs.rmSync(dir, { recursive: true, force: true });
}
if (process.env.GREMESH_BENCH_JSON)
  fs.writeFileSync(process.env.GREMESH_BENCH_JSON, JSON.stringify({ seconds, rows }, null, 2));
