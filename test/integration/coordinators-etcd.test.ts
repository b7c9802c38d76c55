// Coordinators on etcd (--store etcd): two of them on one etcd admit hosts at once through
// gRPC; no slice is handed out twice, and a coordinator started afterwards sees every host.
import test, { type ExecutionContext } from 'ava';
import * as grpc from '@grpc/grpc-js';
import {
  admin,
  agentClient,
  startCoordinator,
  unary,
  removeDir,
  type RunningCoordinator,
} from '../helpers/coordinator.js';
import { ETCD_BIN, EtcdMember } from '../helpers/etcd.js';
import { EtcdStore } from '../../coordinator/etcd-store.js';
import * as fs from 'node:fs';
import { BIN, cli, tempDir } from '../helpers/cli.js';
import { CoordinatorClient } from '../../agent/control-plane/coordinator-client.js';
import type { Snapshot } from '../../agent/model.js';
import { silentLogger } from '../../common/log.js';
import { cidrsOverlap, parseCidr } from '../../common/ipv4.js';
import type { DesiredState, HostInfo } from '../../proto/gen/gremesh/v1/gremesh.js';

const serial = ETCD_BIN ? test.serial : test.skip;
let etcd: EtcdMember | undefined;

test.before(async () => {
  if (ETCD_BIN) etcd = await EtcdMember.start();
});
test.after.always(async () => {
  await etcd?.remove();
});

const ipOf = (i: number) => `198.19.${Math.floor(i / 250)}.${(i % 250) + 1}`;

/** a token from one coordinator, the registration at another (the same one: a host admitted there) */
async function joinAt(
  joinAddr: string,
  registerAddr: string,
  name: string,
  ip: string,
): Promise<{ credential: string }> {
  const a = admin(joinAddr);
  const g = agentClient(registerAddr);
  try {
    const j = await unary<{ token: string }>(a, 'joinHost', { name, ttlSeconds: 0 });
    return await unary<{ credential: string }>(g, 'register', {
      name,
      token: j.token,
      credential: '',
      underlayIp: ip,
      agentVersion: 't',
      csr: '',
    });
  } finally {
    a.close();
    g.close();
  }
}
const reg = (addr: string, name: string, ip: string) => joinAt(addr, addr, name, ip);

/** f() once it holds, or false after ms */
async function until(f: () => boolean, ms = 5000): Promise<boolean> {
  const end = Date.now() + ms;
  while (!f() && Date.now() < end) await new Promise((r) => setTimeout(r, 10));
  return f();
}

/** coordinators A and B (insecure) on the test's etcd under prefix, stopped and removed when the test ends */
async function twoCoordinators(t: ExecutionContext, prefix: string): Promise<[RunningCoordinator, RunningCoordinator]> {
  const args = ['--store', 'etcd', '--etcd-endpoints', etcd!.endpoint, '--etcd-prefix', prefix];
  const a = await startCoordinator({ args: [...args, '--network-cidr', '198.18.64.0/18'] });
  const b = await startCoordinator({ args: [...args, '--network-cidr', '198.18.64.0/18'] });
  t.teardown(async () => {
    await a.stop();
    await b.stop();
    removeDir(a.dataDir);
    removeDir(b.dataDir);
  });
  return [a, b];
}

serial(
  'two coordinators on one etcd: 100 concurrent joins spread over both; no slice twice; a third one sees all',
  async (t) => {
    const args = [
      '--store',
      'etcd',
      '--etcd-endpoints',
      etcd!.endpoint,
      '--etcd-prefix',
      '/two/',
      '--network-cidr',
      '198.18.0.0/16',
      '--host-prefix-len',
      '25',
    ];
    const a = await startCoordinator({ args });
    const b = await startCoordinator({ args });
    t.teardown(async () => {
      await a.stop();
      await b.stop();
      removeDir(a.dataDir);
      removeDir(b.dataDir);
    });
    const res = await Promise.allSettled(
      Array.from({ length: 100 }, (_, i) => joinAt(i % 2 ? a.addr : b.addr, i % 3 ? a.addr : b.addr, `n${i}`, ipOf(i))),
    );
    const failed = res.filter((r): r is PromiseRejectedResult => r.status === 'rejected');
    t.is(
      failed.length,
      0,
      failed
        .map((f) => String(f.reason))
        .slice(0, 3)
        .join('; '),
    );
    const c = await startCoordinator({ args });
    t.teardown(async () => {
      await c.stop();
      removeDir(c.dataDir);
    });
    const ac = admin(c.addr);
    const hosts = (await unary<{ hosts: HostInfo[] }>(ac, 'listHosts', {})).hosts;
    ac.close();
    t.is(hosts.length, 100);
    const slices = hosts.flatMap((h) => h.slices.map((s) => parseCidr(s.cidr)!));
    t.is(slices.length, 100, 'one slice each');
    let overlaps = 0;
    for (let i = 0; i < slices.length; i++)
      for (let j = i + 1; j < slices.length; j++) if (cidrsOverlap(slices[i]!, slices[j]!)) overlaps++;
    t.is(overlaps, 0, 'no slice twice');
  },
);

serial('--store etcd without reachable etcd: a clear error, not a hang', async (t) => {
  const err = await t.throwsAsync(
    startCoordinator({
      args: ['--store', 'etcd', '--etcd-endpoints', 'http://127.0.0.1:9', '--etcd-prefix', '/none/'],
    }),
  );
  t.regex(err!.message, /etcd unavailable/);
});

serial('etcd away: a write is refused with UNAVAILABLE and the reason; etcd back: it works again', async (t) => {
  const c = await startCoordinator({
    args: [
      '--store',
      'etcd',
      '--etcd-endpoints',
      etcd!.endpoint,
      '--etcd-prefix',
      '/away/',
      // the refusal comes after one unanswered call: 2 s, not the default 5
      '--etcd-timeout',
      '2s',
      '--network-cidr',
      '198.18.0.0/16',
    ],
  });
  t.teardown(async () => {
    await c.stop();
    removeDir(c.dataDir);
  });
  const a = admin(c.addr);
  t.teardown(() => a.close());
  await unary(a, 'joinHost', { name: 'h1', ttlSeconds: 0 });
  await etcd!.kill();
  try {
    const err = await t.throwsAsync<grpc.ServiceError>(unary(a, 'joinHost', { name: 'hx', ttlSeconds: 0 }, 20_000));
    t.is(err?.code, grpc.status.UNAVAILABLE);
    t.regex(err?.details ?? '', /^etcd unavailable: /);
  } finally {
    await etcd!.run();
  }
  // works again once the coordinator's etcd client has reconnected
  let back = false;
  for (const end = Date.now() + 30_000; !back && Date.now() < end;) {
    back = await unary(a, 'joinHost', { name: 'h2', ttlSeconds: 0 }).then(
      () => true,
      async () => {
        await new Promise((r) => setTimeout(r, 200));
        return false;
      },
    );
  }
  t.true(back, 'writes work again with etcd back');
  const tokens = await unary<{ tokens: { host: string }[] }>(a, 'listTokens', {});
  t.deepEqual(tokens.tokens.map((x) => x.host).sort(), ['h1', 'h2'], 'the refused write left nothing');
});

serial('a host admitted through coordinator A reaches an agent watching coordinator B (B watches etcd)', async (t) => {
  const [a, b] = await twoCoordinators(t, '/fan/');
  const h1 = await reg(b.addr, 'h1', '198.18.0.11');
  const g = agentClient(b.addr);
  const msgs: DesiredState[] = [];
  const stream = g.watch({ name: 'h1', credential: h1.credential, knownRevision: 0 });
  stream.on('data', (m: DesiredState) => msgs.push(m));
  stream.on('error', () => {});
  t.teardown(() => {
    stream.cancel();
    g.close();
  });
  t.true(await until(() => msgs.length >= 1), 'a first snapshot from B');
  const t0 = Date.now();
  await reg(a.addr, 'h2', '198.18.0.12');
  t.true(
    await until(() => msgs.some((m) => m.peers.some((p) => p.name === 'h2' && p.slices.length === 1))),
    'h2, admitted through A, reaches h1 through B',
  );
  t.log(`h2 admitted through A -> in h1's watch on B after ${Date.now() - t0} ms`);
  // and a host removed through A drops out through B
  const ad = admin(a.addr);
  await unary(ad, 'removeHost', { name: 'h2' });
  ad.close();
  t.true(await until(() => msgs.some((m) => m.removedPeers.includes('h2'))), 'h2 removed through A drops out at B');
});

serial(
  'an agent given both coordinators (--coordinator A,B) moves to B when A is killed, and follows changes made there',
  async (t) => {
    const [a, b] = await twoCoordinators(t, '/failover/');
    const dir = tempDir('gmfo');
    t.teardown(() => removeDir(dir));
    const ad = admin(a.addr);
    const { token } = await unary<{ token: string }>(ad, 'joinHost', { name: 'h1', ttlSeconds: 0 });
    ad.close();
    const snaps: Snapshot[] = [];
    const client = new CoordinatorClient({
      coordinator: `${a.addr},${b.addr}`,
      name: 'h1',
      token,
      underlayIp: '198.18.0.11',
      stateDir: dir,
      version: 't',
      log: silentLogger,
      onSnapshot: (s) => snaps.push(s),
      backoffMinMs: 100,
    });
    client.start();
    t.teardown(() => client.stop());
    t.true(await until(() => snaps.length > 0 && client.connected, 10_000), 'registered and watching through A');
    t.is(client.address, a.addr);
    await a.kill9();
    const t0 = Date.now();
    t.true(await until(() => client.connected && client.address === b.addr, 10_000), 'watching through B');
    const failover = Date.now() - t0;
    const bd = admin(b.addr);
    const j2 = await unary<{ token: string }>(bd, 'joinHost', { name: 'h2', ttlSeconds: 0 });
    bd.close();
    const g = agentClient(b.addr);
    await unary(g, 'register', {
      name: 'h2',
      token: j2.token,
      credential: '',
      underlayIp: '198.18.0.12',
      agentVersion: 't',
      csr: '',
    });
    g.close();
    t.true(
      await until(() => snaps.at(-1)!.peers.some((p) => p.name === 'h2'), 10_000),
      'h2, admitted through B, reaches it',
    );
    t.log(`coordinator A killed -> the agent watching through B after ${failover} ms`);
  },
);

serial('coordctl --coordinator A,B: with A down, the call goes to B', async (t) => {
  const args = ['--store', 'etcd', '--etcd-endpoints', etcd!.endpoint, '--etcd-prefix', '/ctl/'];
  const b = await startCoordinator({ args: [...args, '--network-cidr', '198.18.64.0/18'] });
  t.teardown(async () => {
    await b.stop();
    removeDir(b.dataDir);
  });
  const r = await cli(BIN.coordctl, ['--coordinator', `127.0.0.1:9,${b.addr}`, '--insecure', 'networks', '-o', 'json']);
  t.is(r.exitCode, 0, r.stderr);
  t.regex(r.stdout, /198\.18\.64\.0\/18/);
  const none = await cli(BIN.coordctl, ['--coordinator', '127.0.0.1:9,127.0.0.1:10', '--insecure', 'networks']);
  t.is(none.exitCode, 1);
  t.regex(none.stderr, /cannot reach coordinator at 127\.0\.0\.1:10/);
});

serial(
  'soft state through etcd: endpoints and health an agent reports to A are seen through B (peers and coordctl)',
  async (t) => {
    const [a, b] = await twoCoordinators(t, '/soft/');
    const h1 = await reg(a.addr, 'h1', '198.18.0.11');
    const h2 = await reg(b.addr, 'h2', '198.18.0.12');
    const g = agentClient(b.addr);
    const msgs: DesiredState[] = [];
    const stream = g.watch({ name: 'h2', credential: h2.credential, knownRevision: 0 });
    stream.on('data', (m: DesiredState) => msgs.push(m));
    stream.on('error', () => {});
    t.teardown(() => {
      stream.cancel();
      g.close();
    });
    t.true(await until(() => msgs.some((m) => m.peers.some((p) => p.name === 'h1'))), 'h1 is h2 peer');
    const slice = msgs.flatMap((m) => m.peers).find((p) => p.name === 'h1')!.slices[0]!.cidr;
    const ip = slice.replace(/\.0\/\d+$/, '.5');
    const ga = agentClient(a.addr);
    t.teardown(() => ga.close());
    const t0 = Date.now();
    await unary(ga, 'reportStatus', {
      name: 'h1',
      credential: h1.credential,
      tunnels: [
        {
          peer: 'h2',
          remoteIp: '198.18.0.12',
          port: 'gre-h2',
          bfdState: 'up',
          forwarding: true,
          bfdDiagnostic: '',
          bfdFlaps: 0,
        },
      ],
      endpoints: [
        {
          network: 'default',
          host: 'h1',
          mac: '02:00:00:00:00:05',
          ip,
          containerId: 'c1',
          containerName: 'web',
          names: ['web', 'www'],
          group: 'web',
        },
      ],
      attachErrors: [],
      certNotBeforeMs: 0,
      certNotAfterMs: 0,
    });
    t.true(
      await until(() => msgs.some((m) => m.peers.some((p) => p.name === 'h1' && p.endpoints.some((e) => e.ip === ip)))),
      "h1's endpoint, reported to A, is in h2's watch on B",
    );
    t.log(`endpoint reported to A -> in the watch on B after ${Date.now() - t0} ms`);
    const bd = admin(b.addr);
    t.teardown(() => bd.close());
    const hosts = (await unary<{ hosts: HostInfo[] }>(bd, 'listHosts', {})).hosts;
    const h1AtB = hosts.find((h) => h.name === 'h1')!;
    t.is(h1AtB.state, 'up', 'h1, reporting to A, is up at B');
    t.is(Number(h1AtB.endpoints), 1);
    t.is(h1AtB.tunnels[0]?.bfdState, 'up');
    // its DNS names travel with it: B's watch and B's coordctl names
    t.deepEqual(
      msgs
        .flatMap((m) => m.peers.filter((p) => p.name === 'h1').flatMap((p) => p.endpoints.map((e) => e.names)))
        .at(-1),
      ['web', 'www'],
    );
    const named = (
      await unary<{ names: { name: string; holders: { host: string }[] }[] }>(bd, 'listNames', { network: '' })
    ).names;
    t.deepEqual(
      named.map((n) => `${n.name}@${n.holders.map((h) => h.host).join(',')}`),
      ['web@h1', 'www@h1'],
    );
    // its policy group too; a rule made through A is in the watch on B and in B's list
    t.is(
      msgs
        .flatMap((m) => m.peers.filter((p) => p.name === 'h1').flatMap((p) => p.endpoints.map((e) => e.group)))
        .at(-1),
      'web',
    );
    const ad = admin(a.addr);
    t.teardown(() => ad.close());
    const rule = await unary<{ id: string }>(ad, 'addPolicyRule', {
      network: 'default',
      rule: { id: '', action: 'allow', from: 'web', to: 'db', proto: 'tcp', portMin: 5432, portMax: 5432 },
    });
    t.true(
      await until(() => msgs.some((m) => m.networks.some((n) => n.rules.some((r) => r.id === rule.id)))),
      'the rule, added through A, is in the watch on B',
    );
    const listed = await unary<{ networks: { rules: { id: string }[] }[] }>(bd, 'listPolicy', { network: 'default' });
    t.deepEqual(
      listed.networks[0]!.rules.map((r) => r.id),
      [rule.id],
    );
    // the MAC is h1's everywhere: h2 claiming it through B is refused there
    await unary(agentClient(b.addr), 'reportStatus', {
      name: 'h2',
      credential: h2.credential,
      tunnels: [],
      endpoints: [
        {
          network: 'default',
          host: 'h2',
          mac: '02:00:00:00:00:05',
          ip: msgs.flatMap((m) => m.slices)[0]!.cidr.replace(/\.0\/\d+$/, '.9'),
          containerId: 'c2',
          containerName: 'x',
          group: '',
        },
      ],
      attachErrors: [],
      certNotBeforeMs: 0,
      certNotAfterMs: 0,
    });
    const h2AtB = (await unary<{ hosts: HostInfo[] }>(bd, 'listHosts', {})).hosts.find((h) => h.name === 'h2')!;
    t.regex(h2AtB.attachErrors[0]?.reason ?? '', /already h1's/);
    // a coordinator stopped cleanly lets go of its lease: join through A names A alone at once
    const joinAt = async () => {
      const ad = admin(a.addr);
      const r = await unary<{ coordinator: string }>(ad, 'joinHost', { name: 'h9', ttlSeconds: 0 });
      ad.close();
      return r.coordinator;
    };
    t.is(await joinAt(), `${a.addr},${b.addr}`);
    await b.stop();
    t.is(await joinAt(), a.addr, 'B is no longer listed');
  },
);

serial(
  'TLS on etcd: the CA and admin credentials are in etcd (keys sealed); B signs and checks the identities A made',
  async (t) => {
    const args = ['--store', 'etcd', '--etcd-endpoints', etcd!.endpoint, '--etcd-prefix', '/pki/'];
    const a = await startCoordinator({ tls: true, args: [...args, '--network-cidr', '198.18.64.0/18'] });
    const bDir = tempDir('gmcb');
    const dir = tempDir('gmfo');
    t.teardown(async () => {
      await a.kill9();
      removeDir(a.dataDir);
      removeDir(bDir);
      removeDir(dir);
    });
    const noKey = await t.throwsAsync(startCoordinator({ tls: true, dataDir: bDir, args }));
    t.regex(noKey!.message, /the CA in the store is sealed: copy the secrets key file/);
    fs.writeFileSync(`${bDir}/other.key`, `${'ab'.repeat(32)}\n`, { mode: 0o644 });
    const openKey = await t.throwsAsync(
      startCoordinator({ tls: true, dataDir: bDir, args: [...args, '--secrets-key-file', `${bDir}/other.key`] }),
    );
    t.regex(openKey!.message, /is open to others \(mode 644\): chmod 600/);
    fs.chmodSync(`${bDir}/other.key`, 0o600);
    const wrongKey = await t.throwsAsync(
      startCoordinator({ tls: true, dataDir: bDir, args: [...args, '--secrets-key-file', `${bDir}/other.key`] }),
    );
    t.regex(wrongKey!.message, /sealed with another secrets key/);
    fs.copyFileSync(`${a.dataDir}/secrets.key`, `${bDir}/secrets.key`);
    fs.chmodSync(`${bDir}/secrets.key`, 0o600);
    const b = await startCoordinator({ tls: true, dataDir: bDir, args });
    t.teardown(() => b.stop());
    for (const f of ['ca.crt', 'admin.crt', 'admin.key'])
      t.is(fs.readFileSync(`${bDir}/pki/${f}`, 'utf8'), fs.readFileSync(`${a.dataDir}/pki/${f}`, 'utf8'), f);
    t.false(fs.existsSync(`${bDir}/pki/ca.key`), "the CA's key is not written to B's disk");
    const probe = new EtcdStore({ endpoints: [etcd!.endpoint], prefix: '/pki/' });
    const stored = (await probe.secrets.get('pki'))!;
    probe.close();
    t.false(stored.includes('PRIVATE KEY'), 'no private key in etcd in the clear');
    // coordctl with A's admin certificate, at B
    const ctl = await cli(BIN.coordctl, ['--coordinator', a.addr, ...a.ctlArgs, 'join', 'h1', '-o', 'json']);
    t.is(ctl.exitCode, 0, ctl.stderr);
    const j = JSON.parse(ctl.stdout) as { token: string; caHash: string; command: string };
    t.regex(j.command, new RegExp(`--coordinator ${a.addr},${b.addr} `), 'join names every coordinator serving');
    const snaps: Snapshot[] = [];
    const client = new CoordinatorClient({
      coordinator: `${a.addr},${b.addr}`,
      name: 'h1',
      token: j.token,
      underlayIp: '198.18.0.11',
      stateDir: dir,
      version: 't',
      log: silentLogger,
      onSnapshot: (s) => snaps.push(s),
      backoffMinMs: 100,
      tls: { caHash: j.caHash },
    });
    client.start();
    t.teardown(() => client.stop());
    t.true(await until(() => snaps.length > 0 && client.connected, 10_000), 'admitted through A over TLS');
    await a.kill9();
    t.true(
      await until(() => client.connected && client.address === b.addr, 10_000),
      'the certificate A signed is taken by B (mutual TLS)',
    );
    const hosts = await cli(BIN.coordctl, ['--coordinator', b.addr, ...a.ctlArgs, 'hosts', '-o', 'json']);
    t.is(hosts.exitCode, 0, hosts.stderr);
    t.regex(hosts.stdout, /"h1"/);
  },
);

serial(
  'TLS to etcd (--etcd-ca/--etcd-cert/--etcd-key): served with the client certificate; without it, a clear error',
  async (t) => {
    const secure = await EtcdMember.start({ tls: true });
    t.teardown(() => secure.remove());
    const c = secure.clientTls!;
    const base = [
      '--store',
      'etcd',
      '--etcd-endpoints',
      secure.endpoint,
      '--etcd-prefix',
      '/tls/',
      '--etcd-timeout',
      '2s',
    ];
    const coord = await startCoordinator({
      args: [...base, '--etcd-ca', c.ca, '--etcd-cert', c.cert, '--etcd-key', c.key],
    });
    t.teardown(async () => {
      await coord.stop();
      removeDir(coord.dataDir);
    });
    const a = admin(coord.addr);
    t.teardown(() => a.close());
    const j = await unary<{ token: string }>(a, 'joinHost', { name: 'h1', ttlSeconds: 0 });
    t.regex(j.token, /^[a-z0-9]{6}\./, 'a write through etcd over mutual TLS');
    const noCert = await t.throwsAsync(startCoordinator({ args: [...base, '--etcd-ca', c.ca] }));
    t.regex(noCert!.message, /etcd unavailable/);
    const noTls = await t.throwsAsync(
      startCoordinator({
        args: [
          '--store',
          'etcd',
          '--etcd-endpoints',
          secure.endpoint.replace('https', 'http'),
          '--etcd-prefix',
          '/tls/',
          '--etcd-timeout',
          '2s',
        ],
      }),
    );
    t.regex(noTls!.message, /etcd unavailable/);
  },
);
