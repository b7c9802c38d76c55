// Benchmark: N simulated agents (gRPC clients in this process, each on its own
// connection, no OVS) watch the coordinator. For each new host: time from the start
// of its Register until each agent holds a snapshot that contains it.
// --store etcd: two coordinators on one etcd (a real etcd 3.4 on loopback), half the
// agents watching each, the new host registered at the first; --store both: SQLite's
// one coordinator and etcd's two side by side, per N, in one run.
// Usage: node dist/test/bench/fanout.js [--sizes 10,100,1000] [--repeat 20] [--tls] [--store sqlite|etcd|both]
import * as grpc from '@grpc/grpc-js';
import * as fs from 'node:fs';
import { parseArgs } from 'node:util';
import { AdminServiceClient, AgentServiceClient, type DesiredState } from '../../proto/gen/gremesh/v1/gremesh.js';
import { removeDir, startCoordinator, unary } from '../helpers/coordinator.js';
import { summarize } from './stats.js';
import * as os from 'node:os';
import { ensureKeyAndCsr } from '../../agent/control-plane/tls.js';
import { EtcdMember } from '../helpers/etcd.js';
import type { RunningCoordinator } from '../helpers/coordinator.js';

const { values } = parseArgs({
  options: {
    sizes: { type: 'string', default: '10,100,1000' },
    repeat: { type: 'string', default: '20' },
    tls: { type: 'boolean', default: false },
    store: { type: 'string', default: 'sqlite' },
  },
});
if (!['sqlite', 'etcd', 'both'].includes(values.store!)) throw new Error('--store must be sqlite, etcd or both');
const stores = values.store === 'both' ? ['sqlite', 'etcd'] : [values.store!];
const etcd = stores.includes('etcd') ? await EtcdMember.start() : undefined;
const useTls = values.tls!;
// with --tls every simulated agent has its own certificate (one shared key and CSR: the
// coordinator signs each for its own name)
const keyDir = fs.mkdtempSync(`${os.tmpdir()}/gmfan-`);
const csr = useTls ? await ensureKeyAndCsr(keyDir, 'bench') : '';
const certs = new Map<string, string>();
let caFile = '';
const credsFor = (name?: string) => {
  if (!useTls) return grpc.credentials.createInsecure();
  if (!name) return grpc.credentials.createSsl(fs.readFileSync(caFile));
  return grpc.credentials.createSsl(
    fs.readFileSync(caFile),
    fs.readFileSync(`${keyDir}/host.key`),
    Buffer.from(certs.get(name)!),
  );
};
const sizes = values.sizes!.split(',').map(Number);
const repeat = Number(values.repeat);
const ipOf = (i: number) => `198.19.${Math.floor(i / 250)}.${(i % 250) + 1}`;
const opts = { 'grpc.use_local_subchannel_pool': 1 };

function rssMb(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) / 1024 : Number.NaN;
}

async function admitMany(
  addr: string,
  names: string[],
  ipBase: number,
  adminCreds: grpc.ChannelCredentials,
): Promise<string[]> {
  const a = new AdminServiceClient(addr, adminCreds);
  const g = new AgentServiceClient(addr, credsFor());
  const creds: string[] = [];
  for (let i = 0; i < names.length; i += 50) {
    const batch = names.slice(i, i + 50);
    creds.push(
      ...(await Promise.all(
        batch.map(async (name, j) => {
          const { token } = await unary<{ token: string }>(a, 'joinHost', { name, ttlSeconds: 0 });
          const r = await unary<{ credential: string; certificate: string }>(g, 'register', {
            name,
            token,
            credential: '',
            underlayIp: ipOf(ipBase + i + j),
            agentVersion: 'bench',
            csr,
          });
          if (r.certificate) certs.set(name, r.certificate);
          return r.credential;
        }),
      )),
    );
  }
  a.close();
  g.close();
  return creds;
}

const rows: Record<string, unknown>[] = [];
async function coordinatorsFor(store: string, n: number): Promise<RunningCoordinator[]> {
  // the overlay in 198.18.0.0/16, the simulated underlay addresses in 198.19.0.0/16
  const args = ['--network-cidr', '198.18.0.0/16', '--host-prefix-len', '27'];
  if (store === 'sqlite') return [await startCoordinator({ tls: useTls, args })];
  const shared = [
    ...args,
    '--store',
    'etcd',
    '--etcd-endpoints',
    etcd!.endpoint,
    '--etcd-prefix',
    `/fan${n}-${Date.now()}/`,
  ];
  const a = await startCoordinator({ tls: useTls, args: shared });
  const dir = fs.mkdtempSync(`${os.tmpdir()}/gmc-`);
  if (useTls) {
    fs.copyFileSync(`${a.dataDir}/secrets.key`, `${dir}/secrets.key`);
    fs.chmodSync(`${dir}/secrets.key`, 0o600);
  }
  return [a, await startCoordinator({ tls: useTls, dataDir: dir, args: shared })];
}

for (const n of sizes)
  for (const store of stores) {
    const cs = await coordinatorsFor(store, n);
    const c = cs[0]!;
    caFile = `${c.dataDir}/pki/ca.crt`;
    const adminCreds = useTls
      ? grpc.credentials.createSsl(
          fs.readFileSync(caFile),
          fs.readFileSync(`${c.dataDir}/pki/admin.key`),
          fs.readFileSync(`${c.dataDir}/pki/admin.crt`),
        )
      : grpc.credentials.createInsecure();
    const names = Array.from({ length: n }, (_, i) => `w${i}`);
    const creds = await admitMany(c.addr, names, 0, adminCreds);
    // each watcher: the peers it holds, and a callback when a given host appears
    const waiting = new Map<string, number>(); // new host -> t0
    const seen: number[][] = [];
    const clients: AgentServiceClient[] = [];
    let ready = 0;
    await new Promise<void>((resolve) => {
      names.forEach((name, i) => {
        // with two coordinators, every other agent watches the second one
        const cl = new AgentServiceClient(cs[i % cs.length]!.addr, credsFor(name), opts);
        clients.push(cl);
        const peers = new Set<string>();
        const recorded = new Set<string>();
        let first = true;
        const st = cl.watch({ name, credential: creds[i]!, knownRevision: 0 });
        st.on('data', (m: DesiredState) => {
          if (m.full) peers.clear();
          for (const p of m.peers) peers.add(p.name);
          for (const r of m.removedPeers) peers.delete(r);
          for (const [h, t0] of waiting) {
            if (peers.has(h) && !recorded.has(h)) {
              recorded.add(h);
              seen[seen.length - 1]!.push(performance.now() - t0);
            }
          }
          if (first) {
            first = false;
            if (++ready === n) resolve();
          }
        });
        st.on('error', () => {});
      });
    });
    const per: number[] = [];
    const all: number[] = [];
    const g = new AgentServiceClient(c.addr, credsFor());
    const a = new AdminServiceClient(c.addr, adminCreds);
    for (let r = 0; r < repeat; r++) {
      const name = `new${r}`;
      const { token } = await unary<{ token: string }>(a, 'joinHost', { name, ttlSeconds: 0 });
      seen.push([]);
      const t0 = performance.now();
      waiting.set(name, t0);
      await unary(g, 'register', {
        name,
        token,
        credential: '',
        underlayIp: ipOf(n + 10 + r),
        agentVersion: 'bench',
        csr,
      });
      const end = Date.now() + 30_000;
      while (seen[seen.length - 1]!.length < n && Date.now() < end) await new Promise((res) => setTimeout(res, 1));
      waiting.delete(name);
      const got = seen[seen.length - 1]!;
      if (got.length < n) throw new Error(`only ${got.length}/${n} agents saw ${name}`);
      per.push(...got);
      all.push(Math.max(...got));
      await new Promise((res) => setTimeout(res, 20));
    }
    const rss = rssMb(c.proc.pid!);
    const sp = summarize(per);
    const sa = summarize(all);
    const label = store === 'sqlite' ? 'SQLite, 1 coordinator ' : 'etcd, 2 coordinators  ';
    console.log(
      `${label} ${useTls ? 'TLS ' : 'insecure '}N=${String(n).padStart(4)}  per agent p50=${sp.p50.toFixed(1)} ms p99=${sp.p99.toFixed(1)} ms   all N hold it: p50=${sa.p50.toFixed(1)} ms p99=${sa.p99.toFixed(1)} ms   coordinator RSS=${rss.toFixed(0)} MB  (${repeat} joins)`,
    );
    rows.push({ n, tls: useTls, store, coordinators: cs.length, perAgent: sp, allAgents: sa, rssMb: rss });
    for (const cl of clients) cl.close();
    g.close();
    a.close();
    for (const x of cs) {
      await x.stop();
      removeDir(x.dataDir);
    }
  }
await etcd?.remove();
fs.rmSync(keyDir, { recursive: true, force: true });
if (process.env.GREMESH_BENCH_JSON) fs.writeFileSync(process.env.GREMESH_BENCH_JSON, JSON.stringify(rows, null, 2));
