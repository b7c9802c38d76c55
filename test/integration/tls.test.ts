// Trust: a TLS coordinator (the default) as agents and coordctl meet it. Every RPC with
// no certificate, an unknown CA, another host's certificate, a revoked certificate or
// token, an agent certificate on admin calls: refused with the right status, state
// unchanged. Then a fuzz run over every RPC.
import test from 'ava';
import * as grpc from '@grpc/grpc-js';
import * as fs from 'node:fs';
import { X509Certificate, randomBytes } from 'node:crypto';
import { BIN, cli, tempDir } from '../helpers/cli.js';
import {
  admin,
  agentClient,
  removeDir,
  startCoordinator,
  tlsCreds,
  unary,
  type RunningCoordinator,
} from '../helpers/coordinator.js';
import { createRunner } from '../../common/exec.js';
import { ensureKeyAndCsr, fetchPinnedCa, tlsFiles } from '../../agent/control-plane/tls.js';
import { CreateNetworkRequest, JoinHostRequest, RegisterRequest } from '../../proto/gen/gremesh/v1/gremesh.js';

const run = createRunner();
const code = async (p: Promise<unknown>) => {
  try {
    await p;
    return 'OK';
  } catch (e) {
    return grpc.status[(e as grpc.ServiceError).code] ?? String(e);
  }
};

interface Agent {
  dir: string;
  creds: grpc.ChannelCredentials;
}
/** What gremesh-agent does on first start: pin the CA, make a key and CSR, register with the token. */
async function joinAsAgent(c: RunningCoordinator, name: string, ip: string): Promise<Agent> {
  const ctl = await cli(BIN.coordctl, ['--coordinator', c.addr, ...c.ctlArgs, 'join', name, '-o', 'json']);
  const j = JSON.parse(ctl.stdout) as { token: string; caHash: string; command: string };
  const dir = tempDir('gmag');
  const f = tlsFiles(dir);
  fs.writeFileSync(f.ca, await fetchPinnedCa(c.addr, j.caHash));
  const csr = await ensureKeyAndCsr(dir, name);
  const g = agentClient(c.addr, tlsCreds(f.ca));
  const r = await unary<{ certificate: string }>(g, 'register', {
    name,
    token: j.token,
    credential: '',
    underlayIp: ip,
    agentVersion: 't',
    csr,
  });
  g.close();
  fs.writeFileSync(f.cert, r.certificate);
  return { dir, creds: tlsCreds(f.ca, f.key, f.cert) };
}

const watchOnce = (addr: string, creds: grpc.ChannelCredentials, name: string) =>
  new Promise<string>((resolve) => {
    const g = agentClient(addr, creds);
    const st = g.watch({ name, credential: '', knownRevision: 0 });
    st.on('data', () => {
      st.cancel();
      g.close();
      resolve('OK');
    });
    st.on('error', (e: grpc.ServiceError) => {
      g.close();
      resolve(e.code === grpc.status.CANCELLED ? 'OK' : grpc.status[e.code]!);
    });
  });

let c: RunningCoordinator;
test.before(async () => {
  c = await startCoordinator({ tls: true });
});
test.after.always(async () => {
  await c.stop();
  removeDir(c.dataDir);
});

test.serial(
  'first start makes a CA, serving and admin certificates, keys 0600; coordctl join prints the CA hash',
  async (t) => {
    for (const k of ['ca.key', 'server.key', 'admin.key'])
      t.is(fs.statSync(`${c.dataDir}/pki/${k}`).mode & 0o777, 0o600, k);
    const j = await cli(BIN.coordctl, ['--coordinator', c.addr, ...c.ctlArgs, 'join', 'h1', '-o', 'json']);
    t.is(j.exitCode, 0, j.stderr);
    const jj = JSON.parse(j.stdout) as { caHash: string; command: string };
    t.regex(jj.caHash, /^sha256:[0-9a-f]{64}$/);
    t.true(jj.command.endsWith(`--ca-hash ${jj.caHash}`));
    t.regex(c.stderr(), /^$|^(?![\s\S]*WARNING)/, 'no insecure warning with TLS');
  },
);

test.serial(
  'an agent pins the CA, keeps its key, gets a certificate bound to its name, then watches over mutual TLS',
  async (t) => {
    const a = await joinAsAgent(c, 'h2', '198.18.0.12');
    const cert = new X509Certificate(fs.readFileSync(tlsFiles(a.dir).cert));
    t.regex(cert.subject, /CN=host:h2/);
    t.is(await watchOnce(c.addr, a.creds, 'h2'), 'OK');
    t.is(fs.statSync(tlsFiles(a.dir).key).mode & 0o777, 0o600);
    t.false(fs.readFileSync(tlsFiles(a.dir).csr, 'utf8').includes('PRIVATE KEY'), 'only the CSR is sent');
    removeDir(a.dir);
  },
);

test.serial('a wrong pinned hash is refused before anything is sent', async (t) => {
  const e = await t.throwsAsync(fetchPinnedCa(c.addr, `sha256:${'0'.repeat(64)}`));
  t.regex(e!.message, /did not present a CA with the pinned hash/);
});

test.serial(
  'rejected with the right status and nothing changes: no certificate, unknown CA, other host, agent on admin, revoked, reused token',
  async (t) => {
    const a3 = await joinAsAgent(c, 'h3', '198.18.0.13');
    const a4 = await joinAsAgent(c, 'h4', '198.18.0.14');
    const ca = `${c.dataDir}/pki/ca.crt`;
    const adminCreds = tlsCreds(ca, `${c.dataDir}/pki/admin.key`, `${c.dataDir}/pki/admin.crt`);
    const status = async () => {
      const a = admin(c.addr, adminCreds);
      const r = await unary<{ revision: number; hosts: unknown[] }>(a, 'getStatus', {});
      a.close();
      return r;
    };
    const before = await status();
    // no client certificate
    const noCert = admin(c.addr, tlsCreds(ca));
    t.is(await code(unary(noCert, 'listHosts', {})), 'UNAUTHENTICATED');
    t.is(await code(unary(noCert, 'joinHost', { name: 'evil', ttlSeconds: 0 })), 'UNAUTHENTICATED');
    noCert.close();
    t.is(await watchOnce(c.addr, tlsCreds(ca), 'h3'), 'UNAUTHENTICATED');
    // a client that trusts another CA cannot even connect
    const other = tempDir('gmca');
    await run([
      'openssl',
      'req',
      '-x509',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:P-256',
      '-nodes',
      '-keyout',
      `${other}/k`,
      '-out',
      `${other}/c`,
      '-days',
      '1',
      '-subj',
      '/CN=other',
    ]);
    const foreign = admin(c.addr, tlsCreds(`${other}/c`));
    t.is(await code(unary(foreign, 'listHosts', {}, 3000)), 'UNAVAILABLE');
    foreign.close();
    // a certificate from another CA, presented to ours, is not an identity
    const selfSigned = admin(c.addr, tlsCreds(ca, `${other}/k`, `${other}/c`));
    t.is(await code(unary(selfSigned, 'listHosts', {})), 'UNAUTHENTICATED');
    selfSigned.close();
    removeDir(other);
    // another host's certificate
    t.is(await watchOnce(c.addr, a3.creds, 'h4'), 'PERMISSION_DENIED');
    const g3 = agentClient(c.addr, a3.creds);
    t.is(
      await code(
        unary(g3, 'reportStatus', {
          name: 'h4',
          credential: '',
          tunnels: [],
          endpoints: [],
          attachErrors: [],
          certNotBeforeMs: 0,
          certNotAfterMs: 0,
        }),
      ),
      'PERMISSION_DENIED',
    );
    t.is(
      await code(
        unary(g3, 'register', {
          name: 'h4',
          token: '',
          credential: '',
          underlayIp: '198.18.0.14',
          agentVersion: '',
          csr: '',
        }),
      ),
      'PERMISSION_DENIED',
    );
    // an agent certificate on admin calls
    const asAdmin = admin(c.addr, a3.creds);
    t.is(await code(unary(asAdmin, 'listHosts', {})), 'PERMISSION_DENIED');
    t.is(await code(unary(asAdmin, 'removeHost', { name: 'h4' })), 'PERMISSION_DENIED');
    asAdmin.close();
    g3.close();
    t.deepEqual(await status(), before, 'state unchanged');
    // leave revokes the certificate
    t.is((await cli(BIN.coordctl, ['--coordinator', c.addr, ...c.ctlArgs, 'leave', 'h4'])).exitCode, 0);
    t.is(await watchOnce(c.addr, a4.creds, 'h4'), 'UNAUTHENTICATED');
    // a used token cannot be used again with another key
    const j = JSON.parse(
      (await cli(BIN.coordctl, ['--coordinator', c.addr, ...c.ctlArgs, 'join', 'h5', '-o', 'json'])).stdout,
    ) as { token: string };
    const csr = await ensureKeyAndCsr(a4.dir, 'h5');
    const g = agentClient(c.addr, tlsCreds(ca));
    const first = await unary<{ certificate: string }>(g, 'register', {
      name: 'h5',
      token: j.token,
      credential: '',
      underlayIp: '198.18.0.15',
      agentVersion: '',
      csr,
    });
    const otherKey = tempDir('gmag');
    const csr2 = await ensureKeyAndCsr(otherKey, 'h5');
    t.is(
      await code(
        unary(g, 'register', {
          name: 'h5',
          token: j.token,
          credential: '',
          underlayIp: '198.18.0.15',
          agentVersion: '',
          csr: csr2,
        }),
      ),
      'UNAUTHENTICATED',
    );
    // the same key again (a join whose reply was lost): a new certificate; the first one stops working
    const again = await unary<{ certificate: string }>(g, 'register', {
      name: 'h5',
      token: j.token,
      credential: '',
      underlayIp: '198.18.0.15',
      agentVersion: '',
      csr,
    });
    t.not(again.certificate, first.certificate);
    fs.writeFileSync(`${a4.dir}/first.crt`, first.certificate);
    fs.writeFileSync(`${a4.dir}/again.crt`, again.certificate);
    t.is(await watchOnce(c.addr, tlsCreds(ca, tlsFiles(a4.dir).key, `${a4.dir}/first.crt`), 'h5'), 'UNAUTHENTICATED');
    t.is(await watchOnce(c.addr, tlsCreds(ca, tlsFiles(a4.dir).key, `${a4.dir}/again.crt`), 'h5'), 'OK');
    removeDir(otherKey);
    t.is(
      await code(
        unary(g, 'register', {
          name: 'h6',
          token: j.token,
          credential: '',
          underlayIp: '198.18.0.16',
          agentVersion: '',
          csr: '',
        }),
      ),
      'INVALID_ARGUMENT',
    );
    // a credential (insecure mode's secret) is no way in on a TLS coordinator
    t.is(
      await code(
        unary(g, 'register', {
          name: 'h3',
          token: '',
          credential: 'f'.repeat(64),
          underlayIp: '198.18.0.13',
          agentVersion: '',
          csr: '',
        }),
      ),
      'UNAUTHENTICATED',
    );
    g.close();
    removeDir(a3.dir);
    removeDir(a4.dir);
  },
);

test.serial('the CSR cannot choose the identity: a request for CN=admin is signed as host:NAME', async (t) => {
  const j = JSON.parse(
    (await cli(BIN.coordctl, ['--coordinator', c.addr, ...c.ctlArgs, 'join', 'h7', '-o', 'json'])).stdout,
  ) as { token: string };
  const dir = tempDir('gmag');
  await run([
    'openssl',
    'req',
    '-new',
    '-newkey',
    'ec',
    '-pkeyopt',
    'ec_paramgen_curve:P-256',
    '-nodes',
    '-keyout',
    `${dir}/k`,
    '-out',
    `${dir}/r`,
    '-subj',
    '/CN=admin',
  ]);
  const g = agentClient(c.addr, tlsCreds(`${c.dataDir}/pki/ca.crt`));
  const r = await unary<{ certificate: string }>(g, 'register', {
    name: 'h7',
    token: j.token,
    credential: '',
    underlayIp: '198.18.0.17',
    agentVersion: '',
    csr: fs.readFileSync(`${dir}/r`, 'utf8'),
  });
  g.close();
  t.regex(new X509Certificate(r.certificate).subject, /CN=host:h7/);
  fs.writeFileSync(`${dir}/c`, r.certificate);
  const a = admin(c.addr, tlsCreds(`${c.dataDir}/pki/ca.crt`, `${dir}/k`, `${dir}/c`));
  t.is(await code(unary(a, 'listHosts', {})), 'PERMISSION_DENIED');
  a.close();
  removeDir(dir);
});

test.serial(
  'fuzz: thousands of random, malformed and truncated messages on every RPC; the coordinator stays up, answers each with an error, state unchanged',
  async (t) => {
    const ca = `${c.dataDir}/pki/ca.crt`;
    const adminCreds = tlsCreds(ca, `${c.dataDir}/pki/admin.key`, `${c.dataDir}/pki/admin.crt`);
    const a = admin(c.addr, adminCreds);
    const snapshot = async () => {
      const s = await unary<{ revision: number; hosts: { name: string }[]; networks: unknown[] }>(a, 'getStatus', {});
      const tk = await unary<{ tokens: unknown[] }>(a, 'listTokens', {});
      return { revision: s.revision, hosts: s.hosts.map((h) => h.name), networks: s.networks, tokens: tk.tokens };
    };
    const before = await snapshot();
    const Raw = grpc.makeGenericClientConstructor({}, 'raw');
    const rawAdmin = new Raw(c.addr, adminCreds, { 'grpc.use_local_subchannel_pool': 1 });
    const rawAnon = new Raw(c.addr, tlsCreds(ca), { 'grpc.use_local_subchannel_pool': 1 });
    const id = (b: Buffer) => b;
    const call = (cl: grpc.Client, path: string, body: Buffer) =>
      new Promise<string>((resolve) => {
        cl.makeUnaryRequest(path, id, id, body, new grpc.Metadata(), { deadline: Date.now() + 5000 }, (e) =>
          resolve(e ? grpc.status[e.code]! : 'OK'),
        );
      });
    const badName = () =>
      ['', 'UPPER', 'under_score', '-lead', 'trail-', 'x'.repeat(64), 'dot.ted', '\u0000', 'é'][
        Math.floor(Math.random() * 9)
      ]! + (Math.random() < 0.3 ? 'x'.repeat(Math.floor(Math.random() * 100_000)) : '');
    const badCidr = () =>
      ['', '1.2.3.4', '300.0.0.0/8', 'fd00::/64', '198.18.64.1/18', '10.0.0.0/33', 'a/b', '198.18.64.0/18'][
        Math.floor(Math.random() * 8)
      ]!;
    const truncate = (b: Uint8Array) => Buffer.from(b.subarray(0, Math.max(1, Math.floor(Math.random() * b.length))));
    const results = new Map<string, number>();
    const note = (k: string) => results.set(k, (results.get(k) ?? 0) + 1);
    const agentPaths = ['Register', 'Watch', 'ReportStatus'].map((m) => `/gremesh.v1.AgentService/${m}`);
    const adminRead = ['ListHosts', 'GetHost', 'ListNetworks', 'GetStatus', 'ListTokens'].map(
      (m) => `/gremesh.v1.AdminService/${m}`,
    );
    const adminWrite = ['JoinHost', 'RemoveHost', 'CreateNetwork', 'DeleteNetwork', 'RevokeToken'].map(
      (m) => `/gremesh.v1.AdminService/${m}`,
    );
    let oks = 0;
    const N = 3000;
    for (let i = 0; i < N; i += 50) {
      await Promise.all(
        Array.from({ length: 50 }, async (_, j) => {
          const k = (i + j) % 5;
          let r: string;
          if (k === 0) {
            // random bytes, no certificate, every method
            const p = [...agentPaths, ...adminRead, ...adminWrite][Math.floor(Math.random() * 13)]!;
            r = await call(rawAnon, p, randomBytes(Math.floor(Math.random() * 300)));
            if (r === 'OK') oks++;
          } else if (k === 1) {
            // random bytes with the admin certificate on read-only calls and Register
            const p = [...adminRead, agentPaths[0]!][Math.floor(Math.random() * 6)]!;
            r = await call(rawAdmin, p, randomBytes(Math.floor(Math.random() * 300)));
          } else if (k === 2) {
            // well-formed frames with invalid values on every mutating admin call
            const which = Math.floor(Math.random() * 3);
            const body =
              which === 0
                ? JoinHostRequest.encode({ name: badName(), ttlSeconds: Math.floor(Math.random() * 2 ** 32) }).finish()
                : which === 1
                  ? CreateNetworkRequest.encode({
                      isolation: '',
                      name: badName(),
                      cidr: badCidr(),
                      hostPrefixLen: Math.floor(Math.random() * 40),
                      mtu: Math.floor(Math.random() * 70000),
                      ipv6Cidr: Math.random() < 0.5 ? '' : 'fd00::/' + Math.floor(Math.random() * 140),
                      ipv6HostPrefixLen: Math.floor(Math.random() * 200),
                    }).finish()
                  : Buffer.from(JSON.stringify({ not: 'protobuf' }));
            r = await call(
              rawAdmin,
              which === 2 ? adminWrite[Math.floor(Math.random() * 5)]! : which === 0 ? adminWrite[0]! : adminWrite[2]!,
              Buffer.from(body),
            );
            if (r === 'OK' && which !== 2) oks++;
          } else if (k === 3) {
            // truncated frames
            const body = RegisterRequest.encode({
              name: 'h9',
              token: 'abcdef.0123456789abcdef',
              credential: '',
              underlayIp: '198.18.0.99',
              agentVersion: 'x'.repeat(200),
              csr: 'y'.repeat(500),
            }).finish();
            r = await call(rawAnon, agentPaths[0]!, truncate(body));
            if (r === 'OK') oks++;
          } else {
            // names and addresses that are invalid, through removal calls
            r = await call(
              rawAdmin,
              `/gremesh.v1.AdminService/${['RemoveHost', 'DeleteNetwork', 'RevokeToken'][Math.floor(Math.random() * 3)]}`,
              Buffer.from(JoinHostRequest.encode({ name: badName(), ttlSeconds: 0 }).finish()),
            );
          }
          note(r);
        }),
      );
    }
    t.log(`${N} calls: ${[...results].map(([k, v]) => `${k} ${v}`).join(', ')}`);
    t.is(oks, 0, 'no random, malformed or truncated request was accepted');
    t.deepEqual(await snapshot(), before, 'state unchanged');
    t.is(c.proc.exitCode, null, 'the coordinator is still running');
    rawAdmin.close();
    rawAnon.close();
    a.close();
  },
);

test.serial(
  'renewal over the current certificate: a new key, the same name; the old certificate is done with',
  async (t) => {
    const a = await joinAsAgent(c, 'rn1', '198.18.0.71');
    const other = await joinAsAgent(c, 'rn2', '198.18.0.72');
    const f = tlsFiles(a.dir);
    const fresh = tempDir('gmag');
    fs.copyFileSync(f.ca, tlsFiles(fresh).ca);
    const csr = await ensureKeyAndCsr(fresh, 'rn1'); // a new key
    t.is(
      await code(unary(agentClient(c.addr, tlsCreds(f.ca)), 'renew', { name: 'rn1', csr })),
      'UNAUTHENTICATED',
      'not without a certificate',
    );
    t.is(
      await code(unary(agentClient(c.addr, other.creds), 'renew', { name: 'rn1', csr })),
      'PERMISSION_DENIED',
      "not with another host's",
    );
    const r = await unary<{ certificate: string }>(agentClient(c.addr, a.creds), 'renew', { name: 'rn1', csr });
    t.regex(r.certificate, /BEGIN CERTIFICATE/);
    fs.writeFileSync(tlsFiles(fresh).cert, r.certificate);
    const renewed = tlsCreds(tlsFiles(fresh).ca, tlsFiles(fresh).key, tlsFiles(fresh).cert);
    t.is(await watchOnce(c.addr, renewed, 'rn1'), 'OK', 'the new certificate works');
    t.is(await watchOnce(c.addr, a.creds, 'rn1'), 'UNAUTHENTICATED', 'the old one is no longer current');
    t.is(
      await code(unary(agentClient(c.addr, a.creds), 'renew', { name: 'rn1', csr })),
      'UNAUTHENTICATED',
      'nor can it renew again',
    );
  },
);
