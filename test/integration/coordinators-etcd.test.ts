// Coordinators on etcd (--store etcd): two of them on one etcd admit hosts at once through
// gRPC; no slice is handed out twice, and a coordinator started afterwards sees every host.
import test from 'ava';
import * as grpc from '@grpc/grpc-js';
import { admin, agentClient, startCoordinator, unary, removeDir } from '../helpers/coordinator.js';
import { ETCD_BIN, EtcdMember } from '../helpers/etcd.js';
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

/** a token from one coordinator, the registration at another */
async function joinAt(joinAddr: string, registerAddr: string, name: string, ip: string): Promise<void> {
  const a = admin(joinAddr);
  const g = agentClient(registerAddr);
  try {
    const j = await unary<{ token: string }>(a, 'joinHost', { name, ttlSeconds: 0 });
    await unary(g, 'register', { name, token: j.token, credential: '', underlayIp: ip, agentVersion: 't', csr: '' });
  } finally {
    a.close();
    g.close();
  }
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
  const err = await t.throwsAsync<grpc.ServiceError>(unary(a, 'joinHost', { name: 'h2', ttlSeconds: 0 }, 20_000));
  t.is(err!.code, grpc.status.UNAVAILABLE);
  t.regex(err!.details, /^etcd unavailable: /);
  await etcd!.run();
  const tokens = await unary<{ tokens: { host: string }[] }>(a, 'listTokens', {});
  t.deepEqual(
    tokens.tokens.map((x) => x.host),
    ['h1'],
    'the refused write left nothing',
  );
  await unary(a, 'joinHost', { name: 'h2', ttlSeconds: 0 });
});

serial('a host admitted through coordinator A reaches an agent watching coordinator B (B watches etcd)', async (t) => {
  const args = ['--store', 'etcd', '--etcd-endpoints', etcd!.endpoint, '--etcd-prefix', '/fan/'];
  const a = await startCoordinator({ args: [...args, '--network-cidr', '198.18.64.0/18'] });
  const b = await startCoordinator({ args: [...args, '--network-cidr', '198.18.64.0/18'] });
  t.teardown(async () => {
    await a.stop();
    await b.stop();
    removeDir(a.dataDir);
    removeDir(b.dataDir);
  });
  const reg = async (addr: string, name: string, ip: string) => {
    const ad = admin(addr);
    const g = agentClient(addr);
    try {
      const j = await unary<{ token: string }>(ad, 'joinHost', { name, ttlSeconds: 0 });
      return await unary<{ credential: string }>(g, 'register', {
        name,
        token: j.token,
        credential: '',
        underlayIp: ip,
        agentVersion: 't',
        csr: '',
      });
    } finally {
      ad.close();
      g.close();
    }
  };
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
  const until = async (f: () => boolean, ms = 5000) => {
    const end = Date.now() + ms;
    while (!f() && Date.now() < end) await new Promise((r) => setTimeout(r, 10));
    return f();
  };
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
