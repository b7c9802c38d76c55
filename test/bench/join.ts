// A host joins: the time from its agent's process start until every tunnel exists both
// ways (a GRE port on it for every peer, and on every peer for it), for the 4th to 8th
// host of a lab, beside OVN measured on the same hosts in the same run (ovn-controller
// with ovn-bridge-datapath-type=netdev: from its process start until its geneve ports
// exist both ways). Tunnels are watched through in-process OVSDB monitors on every
// host (no polling processes). Also: from the coordinator admitting a host until every
// other host has its tunnel, and Node's own start time, so the figure can be read as
// "Node + the rest".
// Usage: node dist/test/bench/join.js [--hosts 8]
import * as fs from 'node:fs';
import { spawnSync } from 'node:child_process';
import { parseArgs } from 'node:util';
import { BIN, cli, tempDir } from '../helpers/cli.js';
import { readState } from '../../deploy/lab/lab.js';
import { join, joinAll, startAgent, startCoordinator, stopProcess } from '../../deploy/lab/mesh.js';
import { hostIp, hostPaths } from '../../deploy/lab/plan.js';
import { configureChassis, startOvnCentral, startOvnController as startOvnControllerOn } from './ovn.js';
import { OvsdbClient } from '../../agent/ovs/ovsdb/client.js';
import { silentLogger } from '../../common/log.js';
import { createRunner } from '../../common/exec.js';
import { toMap } from '../../agent/ovs/ovsdb/rows.js';
import { summarize } from './stats.js';

const { values } = parseArgs({ options: { hosts: { type: 'string', default: '8' } } });
const N = Number(values.hosts);
const FIRST = 4;
const dir = tempDir('gmj');
const up = await cli(BIN.lab, ['up', '--hosts', String(N), '--dir', dir, '--bare-docker'], {}, 600_000);
if (up.exitCode !== 0) throw new Error(up.stderr);
const state = readState(dir)!;
const hosts = Array.from({ length: N }, (_, i) => `h${i + 1}`);
const run = createRunner({ timeoutMs: 30_000 });

/** every host's tunnel interfaces (type) by remote_ip, live from OVSDB */
const monitors = new Map<string, OvsdbClient>();
const listeners = new Set<() => void>();
for (const h of hosts) {
  const c = new OvsdbClient({
    target: `unix:${hostPaths(dir, h).dbSock}`,
    tables: { Interface: ['name', 'type', 'options'] },
    log: silentLogger,
    onChange: () => {
      for (const l of [...listeners]) l();
    },
  });
  c.start();
  monitors.set(h, c);
}
const remotes = (h: string, type: string) =>
  new Set(
    monitors
      .get(h)!
      .rows('Interface')
      .filter((r) => r.type === type)
      .map((r) => toMap(r.options as never).remote_ip),
  );
const meshed = (h: string, peers: string[], type: string) => {
  const ip = hostIp(Number(h.slice(1)));
  const mine = remotes(h, type);
  return peers.every((p) => mine.has(hostIp(Number(p.slice(1)))) && remotes(p, type).has(ip));
};
/** resolves with the time (performance.now) at which cond first held, checked on every OVSDB update */
const when = (cond: () => boolean, timeoutMs = 60_000) =>
  new Promise<number>((resolve, reject) => {
    const check = () => {
      if (!cond()) return;
      listeners.delete(check);
      clearTimeout(timer);
      resolve(performance.now());
    };
    const timer = setTimeout(() => {
      listeners.delete(check);
      reject(new Error('timed out'));
    }, timeoutMs);
    listeners.add(check);
    check();
  });

const nodeStart: number[] = [];
for (let i = 0; i < 9; i++) {
  const t = performance.now();
  spawnSync(process.execPath, ['-e', '0']);
  nodeStart.push(performance.now() - t);
}
const out: Record<string, unknown> = { nodeStartMs: summarize(nodeStart) };
try {
  // ---- gremesh: h1..h3 joined, then the 4th..Nth host, one at a time
  await startCoordinator(dir, ['--insecure']);
  await joinAll(dir, hosts.slice(0, FIRST - 1), ['--insecure']);
  await when(() =>
    hosts.slice(0, FIRST - 1).every((h, _, a) =>
      meshed(
        h,
        a.filter((x) => x !== h),
        'gre',
      ),
    ),
  );
  const gm: number[] = [];
  const fanout: number[] = [];
  for (let n = FIRST; n <= N; n++) {
    const h = `h${n}`;
    const peers = hosts.slice(0, n - 1);
    const args = await join(dir, h);
    const ip = hostIp(n);
    const done = when(() => meshed(h, peers, 'gre'));
    const othersHave = when(() => peers.every((p) => remotes(p, 'gre').has(ip)));
    const t0 = performance.now();
    const wall0 = Date.now();
    startAgent(dir, h, args, ['--insecure']);
    const t1 = await done;
    const tOthers = await othersHave;
    gm.push(t1 - t0);
    // from the coordinator's "host admitted" (its log's clock) to the last peer's tunnel
    const admitted = fs
      .readFileSync(`${dir}/ctl/coordinator.log`, 'utf8')
      .split('\n')
      .filter((l) => l.includes('"host admitted"') && l.includes(`"host":"${h}"`))
      .map((l) => (JSON.parse(l) as { time: number }).time)
      .at(-1)!;
    fanout.push(wall0 + (tOthers - t0) - admitted);
  }
  out.gremesh = { join: summarize(gm), afterAdmit: summarize(fanout), samples: gm };
  for (const h of hosts) await stopProcess(dir, h, 'agent');

  // ---- OVN on the same hosts: central in the ctl namespace, ovn-controller per host
  await startOvnCentral(dir, state, run);
  for (const h of hosts) await configureChassis(dir, state, run, h);
  const startOvnController = (h: string) => startOvnControllerOn(dir, state, run, h);
  for (const h of hosts.slice(0, FIRST - 1)) await startOvnController(h);
  await when(() =>
    hosts.slice(0, FIRST - 1).every((h, _, a) =>
      meshed(
        h,
        a.filter((x) => x !== h),
        'geneve',
      ),
    ),
  );
  const ovn: number[] = [];
  for (let n = FIRST; n <= N; n++) {
    const h = `h${n}`;
    const done = when(() => meshed(h, hosts.slice(0, n - 1), 'geneve'));
    const t0 = performance.now();
    await startOvnController(h);
    ovn.push((await done) - t0);
  }
  out.ovn = { join: summarize(ovn), samples: ovn };
  const g = out.gremesh as { join: { p50: number }; afterAdmit: { p50: number } };
  const node = (out.nodeStartMs as { p50: number }).p50;
  process.stdout.write(
    `host ${FIRST}..${N} joins, process start -> tunnels both ways with every peer (p50): ` +
      `gremesh ${g.join.p50.toFixed(0)} ms (Node's own start ${node.toFixed(0)} ms + ${(g.join.p50 - node).toFixed(0)} ms), ` +
      `OVN ovn-controller ${summarize(ovn).p50.toFixed(0)} ms, same hosts, same run\n` +
      `coordinator admits the host -> its tunnel on every other host: p50 ${g.afterAdmit.p50.toFixed(0)} ms\n`,
  );
} finally {
  for (const c of monitors.values()) c.stop();
  // GREMESH_BENCH_LOGS=DIR keeps the agents' and the coordinator's logs (to see where the time goes)
  const keep = process.env.GREMESH_BENCH_LOGS;
  if (keep) {
    fs.mkdirSync(keep, { recursive: true });
    for (const h of hosts) fs.copyFileSync(`${dir}/${h}/agent.log`, `${keep}/${h}-agent.log`);
    fs.copyFileSync(`${dir}/ctl/coordinator.log`, `${keep}/coordinator.log`);
  }
  await cli(BIN.lab, ['down', '--dir', dir], {}, 600_000);
  fs.rmSync(dir, { recursive: true, force: true });
}
if (process.env.GREMESH_BENCH_JSON) fs.writeFileSync(process.env.GREMESH_BENCH_JSON, JSON.stringify(out, null, 2));
process.exit(0);
