// Benchmark: agents whose coordinator dies. N agents (gremesh-agent's own coordinator client,
// in this process, no OVS), a join token each, watch through their first coordinator; it is
// killed (-9). Printed: time from the kill until each agent watches again.
//  - etcd, 2 coordinators: agents given A,B (half of them B,A); A killed, they move to B.
//  - SQLite, 1 coordinator: the anchor, a supervisor that starts it again at once (as
//    systemd's Restart= would, with no delay): agents wait for it to come back.
// Usage: node dist/test/bench/failover.js [--agents 100] [--repeat 3]
import * as fs from 'node:fs';
import * as os from 'node:os';
import { parseArgs } from 'node:util';
import { CoordinatorClient } from '../../agent/control-plane/coordinator-client.js';
import { silentLogger } from '../../common/log.js';
import { admin, removeDir, startCoordinator, unary, type RunningCoordinator } from '../helpers/coordinator.js';
import { EtcdMember } from '../helpers/etcd.js';
import { summarize } from './stats.js';

const { values } = parseArgs({
  options: { agents: { type: 'string', default: '100' }, repeat: { type: 'string', default: '3' } },
});
const n = Number(values.agents);
const repeat = Number(values.repeat);
const etcd = await EtcdMember.start();
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const ipOf = (i: number) => `198.19.${Math.floor(i / 250)}.${(i % 250) + 1}`;

async function until(f: () => boolean, ms: number): Promise<void> {
  const end = Date.now() + ms;
  while (!f()) {
    if (Date.now() > end) throw new Error('timed out');
    await sleep(2);
  }
}

/** one round: agents up on `first`, `first` killed, then each agent's time to watch again */
async function round(store: 'sqlite' | 'etcd', r: number): Promise<number[]> {
  const args = ['--network-cidr', '198.18.0.0/16', '--host-prefix-len', '27'];
  const shared = [
    ...args,
    '--store',
    'etcd',
    '--etcd-endpoints',
    etcd.endpoint,
    '--etcd-prefix',
    `/fo${r}-${Date.now()}/`,
  ];
  const cs: RunningCoordinator[] = [];
  cs.push(await startCoordinator({ args: store === 'etcd' ? shared : args }));
  if (store === 'etcd') cs.push(await startCoordinator({ args: shared }));
  const a = admin(cs[0]!.addr);
  const dirs: string[] = [];
  const clients: CoordinatorClient[] = [];
  for (let i = 0; i < n; i++) {
    const { token } = await unary<{ token: string }>(a, 'joinHost', { name: `a${i}`, ttlSeconds: 0 });
    const dir = fs.mkdtempSync(`${os.tmpdir()}/gmfo-`);
    dirs.push(dir);
    const list = cs.map((c) => c.addr);
    // etcd: half the agents start on A, half on B; only A's half has to move
    const order = store === 'etcd' && i % 2 ? [list[1]!, list[0]!] : list;
    const c = new CoordinatorClient({
      coordinator: order.join(','),
      name: `a${i}`,
      token,
      underlayIp: ipOf(i),
      stateDir: dir,
      version: 'bench',
      log: silentLogger,
      onSnapshot: () => {},
      backoffMinMs: 100,
      backoffMaxMs: 1000,
    });
    c.start();
    clients.push(c);
  }
  a.close();
  await until(() => clients.every((c) => c.connected), 60_000);
  const victim = cs[0]!;
  const moving = clients.filter((c) => c.address === victim.addr);
  const back = new Map<CoordinatorClient, number>();
  const t0 = performance.now();
  await victim.kill9();
  const dataDir = victim.dataDir;
  if (store === 'sqlite') cs[0] = await startCoordinator({ dataDir, port: victim.port, args });
  const watch = setInterval(() => {
    for (const c of moving)
      if (!back.has(c) && c.connected && c.address !== '' && !(store === 'etcd' && c.address === victim.addr))
        back.set(c, performance.now() - t0);
  }, 1);
  // connected turns false once the stream breaks: wait for every moving agent to be back
  await until(() => back.size === moving.length, 60_000);
  clearInterval(watch);
  for (const c of clients) c.stop();
  for (const c of cs) {
    await c.stop();
    removeDir(c.dataDir);
  }
  for (const d of dirs) removeDir(d);
  return [...back.values()];
}

const rows: Record<string, unknown>[] = [];
for (const store of ['etcd', 'sqlite'] as const) {
  const all: number[] = [];
  for (let r = 0; r < repeat; r++) all.push(...(await round(store, r)));
  const s = summarize(all);
  const label =
    store === 'etcd'
      ? 'etcd, 2 coordinators: A killed, agents move to B     '
      : 'SQLite, 1 coordinator: killed, started again at once';
  console.log(
    `${label}  ${all.length} agent moves: watching again p50=${s.p50.toFixed(0)} ms p99=${s.p99.toFixed(0)} ms max=${Math.max(...all).toFixed(0)} ms`,
  );
  rows.push({ store, agents: n, moves: all.length, watchingAgain: s, maxMs: Math.max(...all) });
}
await etcd.remove();
if (process.env.GREMESH_BENCH_JSON) fs.writeFileSync(process.env.GREMESH_BENCH_JSON, JSON.stringify(rows, null, 2));
process.exit(0);
