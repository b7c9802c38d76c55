// TLS joins on a loaded coordinator: N hosts join at once (JoinHost with the admin
// certificate, then Register with a CSR made from each host's own key), against a real
// coordinator on loopback. Prints p50/p99 per join, and beside it, in the same run, what
// signing N CSRs costs the two ways: in process (what the coordinator does now) and with
// two openssl processes each (what it did before: verify, then sign).
// Usage: node dist/test/bench/joins.js [--count 100]
import * as fs from 'node:fs';
import * as path from 'node:path';
import { parseArgs } from 'node:util';
import { createRunner } from '../../common/exec.js';
import { issue, makeCsr, newKeyPair, privateKeyPem, selfSignedCa, verifiedCsrKey } from '../../common/certs.js';
import { admin, agentClient, startCoordinator, tlsCreds, unary } from '../helpers/coordinator.js';
import { tempDir } from '../helpers/cli.js';
import { summarize } from './stats.js';

const { values } = parseArgs({ options: { count: { type: 'string', default: '100' } } });
const n = Number(values.count);
const ms = (x: number) => `${x.toFixed(1)} ms`;

// 1. N concurrent TLS joins
const c = await startCoordinator({ tls: true, args: ['--host-prefix-len', '26'] });
const pki = `${c.dataDir}/pki`;
const adm = admin(c.addr, tlsCreds(`${pki}/ca.crt`, `${pki}/admin.key`, `${pki}/admin.crt`));
const agt = agentClient(c.addr, tlsCreds(`${pki}/ca.crt`));
const csrs = await Promise.all(Array.from({ length: n }, async (_, i) => makeCsr(await newKeyPair(), `CN=host:j${i}`)));
const perJoin: number[] = [];
let failed = 0;
const t0 = performance.now();
await Promise.all(
  csrs.map(async (csr, i) => {
    const s = performance.now();
    try {
      const { token } = await unary<{ token: string }>(adm, 'joinHost', { name: `j${i}`, ttlSeconds: 0 }, 60_000);
      const r = await unary<{ certificate: string }>(
        agt,
        'register',
        {
          name: `j${i}`,
          token,
          credential: '',
          underlayIp: `198.19.${Math.floor(i / 250)}.${(i % 250) + 1}`,
          agentVersion: 'bench',
          csr,
        },
        60_000,
      );
      if (!r.certificate.includes('BEGIN CERTIFICATE')) throw new Error('no certificate');
      perJoin.push(performance.now() - s);
    } catch (e) {
      if (failed++ < 3) process.stderr.write(`j${i}: ${(e as Error).message}\n`);
    }
  }),
);
const wall = performance.now() - t0;
await c.stop();
fs.rmSync(c.dataDir, { recursive: true, force: true });
const joins = summarize(perJoin);

// 2. signing N CSRs, in process and with openssl (two processes each), same machine, same run
const caKeys = await newKeyPair();
const caPem = await selfSignedCa(caKeys, 'CN=bench CA', 30);
const tmp = tempDir('gmjb');
fs.writeFileSync(path.join(tmp, 'ca.crt'), caPem);
fs.writeFileSync(path.join(tmp, 'ca.key'), await privateKeyPem(caKeys));
fs.writeFileSync(path.join(tmp, 'ext.cnf'), 'extendedKeyUsage=clientAuth\n');
const inProc: number[] = [];
for (const csr of csrs) {
  const s = performance.now();
  await issue({ certPem: caPem, keys: caKeys }, await verifiedCsrKey(csr), {
    subject: 'CN=host:x',
    days: 365,
    usage: 'client',
  });
  inProc.push(performance.now() - s);
}
const run = createRunner({ timeoutMs: 30_000 });
const withOpenssl: number[] = [];
for (const csr of csrs) {
  const s = performance.now();
  fs.writeFileSync(path.join(tmp, 'req.csr'), csr);
  await run(['openssl', 'req', '-in', path.join(tmp, 'req.csr'), '-noout', '-verify']);
  await run([
    'openssl',
    'x509',
    '-req',
    '-in',
    path.join(tmp, 'req.csr'),
    '-CA',
    path.join(tmp, 'ca.crt'),
    '-CAkey',
    path.join(tmp, 'ca.key'),
    '-set_serial',
    '0x01',
    '-days',
    '365',
    '-subj',
    '/CN=host:x',
    '-extfile',
    path.join(tmp, 'ext.cnf'),
    '-out',
    path.join(tmp, 'host.crt'),
  ]);
  withOpenssl.push(performance.now() - s);
}
fs.rmSync(tmp, { recursive: true, force: true });
const a = summarize(inProc);
const b = summarize(withOpenssl);
process.stdout.write(
  `${n} concurrent TLS joins (JoinHost + Register with a CSR): ${perJoin.length} admitted, ${failed} failed, ` +
    `per join p50 ${ms(joins.p50)} p99 ${ms(joins.p99)}, all in ${ms(wall)}\n` +
    `signing one CSR (verify + sign), ${n} in a row: in process p50 ${ms(a.p50)} p99 ${ms(a.p99)}; ` +
    `openssl (2 processes) p50 ${ms(b.p50)} p99 ${ms(b.p99)}: ${(b.p50 / a.p50).toFixed(0)}x\n`,
);
if (process.env.GREMESH_BENCH_JSON)
  fs.writeFileSync(
    process.env.GREMESH_BENCH_JSON,
    JSON.stringify(
      { n, admitted: perJoin.length, failed, joins, wallMs: wall, signInProcess: a, signOpenssl: b },
      null,
      2,
    ),
  );
process.exit(failed ? 1 : 0);
