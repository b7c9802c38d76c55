// A burst of joins the way many agents would make them, from one process: for each
// name, JoinHost (admin certificate) then Register with the token and a CSR, retrying
// whatever fails the way an agent does (backoff, same token, same key) until admitted.
// The fault suite runs it inside the lab's ctl namespace and kills the coordinator
// under it. One JSON line per admitted host on stdout, then a summary line.
// With several coordinators (A,B: one etcd), name i starts at coordinator i mod n and a call
// that finds its coordinator unreachable goes to the next one, as agents and coordctl do.
// Usage: node dist/test/helpers/join-burst.js --coordinator ADDR[,ADDR...] --pki DIR --count N
//          [--prefix b] [--underlay-base 198.18.0.100] [--concurrency 10] [--timeout 120]
//        node dist/test/helpers/join-burst.js --leave ... (RemoveHost for the same names)
import * as grpc from '@grpc/grpc-js';
import * as fs from 'node:fs';
import * as os from 'node:os';
import { parseArgs } from 'node:util';
import { AdminServiceClient, AgentServiceClient } from '../../proto/gen/gremesh/v1/gremesh.js';
import { formatIp, parseIp } from '../../common/ipv4.js';
import { ensureKeyAndCsr } from '../../agent/control-plane/tls.js';
import { unary } from './coordinator.js';
import { coordinatorTls } from '../../common/grpc-tls.js';

const { values } = parseArgs({
  options: {
    coordinator: { type: 'string' },
    pki: { type: 'string' },
    count: { type: 'string', default: '100' },
    prefix: { type: 'string', default: 'b' },
    'underlay-base': { type: 'string', default: '198.18.0.100' },
    concurrency: { type: 'string', default: '10' },
    timeout: { type: 'string', default: '120' },
    leave: { type: 'boolean', default: false },
    help: { type: 'boolean', short: 'h', default: false },
  },
});
if (values.help || !values.coordinator || !values.pki) {
  process.stdout.write(
    'usage: join-burst --coordinator ADDR --pki DIR [--count N] [--prefix P] [--underlay-base IP] [--concurrency K] [--timeout S] [--leave]\n',
  );
  process.exit(values.help ? 0 : 2);
}
const addrs = values.coordinator.split(',').filter(Boolean);
const pki = values.pki;
const count = Number(values.count);
const base = parseIp(values['underlay-base']!)!;
const deadline = Date.now() + Number(values.timeout) * 1000;
const names = Array.from({ length: count }, (_, i) => `${values.prefix}${i}`);
const ca = fs.readFileSync(`${pki}/ca.crt`);
const chanOpts = {
  'grpc.initial_reconnect_backoff_ms': 200,
  'grpc.max_reconnect_backoff_ms': 1000,
  'grpc.use_local_subchannel_pool': 1,
};
const adms = addrs.map((addr) => {
  const tls = coordinatorTls(addr, ca, fs.readFileSync(`${pki}/admin.key`), fs.readFileSync(`${pki}/admin.crt`));
  return new AdminServiceClient(addr, tls.credentials, { ...chanOpts, ...tls.options });
});
const agts = addrs.map((addr) => {
  const tls = coordinatorTls(addr, ca);
  return new AgentServiceClient(addr, tls.credentials, { ...chanOpts, ...tls.options });
});
/** the coordinator could not be reached: the next one gets the call */
const unreachable = (c: string) => c === 'UNAVAILABLE' || c === 'DEADLINE_EXCEEDED';
const out = (o: object) => process.stdout.write(`${JSON.stringify(o)}\n`);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const code = (e: unknown) => grpc.status[(e as grpc.ServiceError).code] ?? String(e);

/** f until it resolves; retries on any gRPC error with backoff 200 ms .. 2 s, gives up at the deadline or after `fatal` */
async function retry<T>(
  what: string,
  f: () => Promise<T>,
  fatal: (c: string) => boolean,
  stats: { attempts: number; errors: Record<string, number> },
  onError: (c: string) => void = () => {},
): Promise<T> {
  let backoff = 200;
  for (;;) {
    stats.attempts++;
    try {
      return await f();
    } catch (e) {
      const c = code(e);
      stats.errors[c] = (stats.errors[c] ?? 0) + 1;
      if (fatal(c) || Date.now() > deadline)
        throw new Error(`${what}: ${c}: ${(e as grpc.ServiceError).details ?? (e as Error).message}`);
      onError(c);
      await sleep(backoff);
      backoff = Math.min(backoff * 2, 2000);
    }
  }
}

const t0 = Date.now();
const totals = { attempts: 0, errors: {} as Record<string, number> };
let done = 0;
let failed = 0;
let next = 0;
const keyDir = fs.mkdtempSync(`${os.tmpdir()}/gmburst-`);
const csr = values.leave ? '' : await ensureKeyAndCsr(keyDir, 'burst');

async function one(i: number): Promise<void> {
  const name = names[i]!;
  const stats = { attempts: 0, errors: {} as Record<string, number> };
  const t = Date.now();
  // spread over the coordinators; the next one when this one cannot be reached
  let at = i % addrs.length;
  const moveOn = (c: string) => {
    if (unreachable(c)) at = (at + 1) % addrs.length;
  };
  try {
    if (values.leave) {
      await retry(
        `leave ${name}`,
        () =>
          unary(adms[at]!, 'removeHost', { name }, 5000).catch((e) => {
            if (code(e) !== 'NOT_FOUND') throw e;
          }),
        (c) => c === 'PERMISSION_DENIED',
        stats,
        moveOn,
      );
    } else {
      const { token } = await retry(
        `join ${name}`,
        () => unary<{ token: string }>(adms[at]!, 'joinHost', { name, ttlSeconds: 0 }, 5000),
        (c) => c === 'INVALID_ARGUMENT' || c === 'PERMISSION_DENIED',
        stats,
        moveOn,
      );
      // the same token and key on every attempt, as gremesh-agent does
      await retry(
        `register ${name}`,
        () =>
          unary(
            agts[at]!,
            'register',
            { name, token, credential: '', underlayIp: formatIp(base + i), agentVersion: 'burst', csr },
            5000,
          ),
        (c) =>
          c === 'INVALID_ARGUMENT' ||
          c === 'PERMISSION_DENIED' ||
          c === 'RESOURCE_EXHAUSTED' ||
          c === 'ALREADY_EXISTS' ||
          (c === 'UNAUTHENTICATED' && (stats.errors.UNAUTHENTICATED ?? 0) >= 3),
        stats,
        moveOn,
      );
    }
    done++;
    out({
      event: values.leave ? 'left' : 'admitted',
      name,
      ms: Date.now() - t,
      attempts: stats.attempts,
      errors: stats.errors,
    });
  } catch (e) {
    failed++;
    out({ event: 'failed', name, error: (e as Error).message, attempts: stats.attempts });
  }
  totals.attempts += stats.attempts;
  for (const [k, v] of Object.entries(stats.errors)) totals.errors[k] = (totals.errors[k] ?? 0) + v;
}

await Promise.all(
  Array.from({ length: Number(values.concurrency) }, async () => {
    while (next < names.length) await one(next++);
  }),
);
out({ event: 'done', ok: done, failed, ms: Date.now() - t0, ...totals });
for (const c of [...adms, ...agts]) c.close();
fs.rmSync(keyDir, { recursive: true, force: true });
process.exit(failed ? 1 : 0);
