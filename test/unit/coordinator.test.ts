// Coordinator logic on a MemoryStore with a fake clock.
import test from 'ava';
import { Coordinator, type Change } from '../../coordinator/coordinator.js';
import { CoordError } from '../../coordinator/errors.js';
import { MemoryStore } from '../../coordinator/memory-store.js';

async function setup(cidr = '198.18.64.0/22') {
  let now = 1_000_000;
  const changes: Change[] = [];
  const c = await Coordinator.create(new MemoryStore(), { now: () => now, downAfterMs: 30_000 });
  c.onChange((x) => changes.push(x));
  await c.init({ name: 'default', cidr, hostPrefixLen: 24, mtu: 0 });
  const admit = async (name: string, ip: string) =>
    c.register({ name, token: (await c.joinHost(name)).token, credential: '', underlayIp: ip, agentVersion: 't' });
  return {
    c,
    changes,
    admit,
    advance: (ms: number) => {
      now += ms;
    },
  };
}

const code = async (f: () => unknown) => {
  try {
    await f();
  } catch (e) {
    return (e as CoordError).code;
  }
  return 'OK';
};

test('init creates the default network once', async (t) => {
  const { c } = await setup();
  await c.init({ name: 'default', cidr: '198.18.64.0/22', hostPrefixLen: 24, mtu: 0 });
  t.deepEqual(
    c.networks().map((n) => [n.name, n.greKey]),
    [['default', 1]],
  );
});

test('register with a token admits the host with one slice per network; the revision grows', async (t) => {
  const { c, admit, changes } = await setup();
  const r0 = c.revision();
  await admit('h1', '198.18.0.11');
  await admit('h2', '198.18.0.12');
  t.deepEqual(c.slicesOf('h1'), [{ network: 'default', cidr: '198.18.64.0/24' }]);
  t.deepEqual(c.slicesOf('h2'), [{ network: 'default', cidr: '198.18.65.0/24' }]);
  t.true(c.revision() > r0);
  t.deepEqual(changes.at(-1)!.upserts, ['h2']);
  t.deepEqual(c.peer('h1')!.underlayIp, '198.18.0.11');
});

test('tokens: reused, revoked, expired, other host, unknown, malformed are refused and change nothing', async (t) => {
  const { c, advance } = await setup();
  const reg = (name: string, token: string, ip = '198.18.0.20') =>
    code(() => c.register({ name, token, credential: '', underlayIp: ip, agentVersion: '' }));
  const tk = (await c.joinHost('h1')).token;
  t.is(await reg('h1', tk, '198.18.0.11'), 'OK');
  const rev = c.revision();
  t.is(await reg('h1', tk, '198.18.0.11'), 'UNAUTHENTICATED'); // reused
  const other = (await c.joinHost('h2')).token;
  t.is(await reg('h3', other), 'PERMISSION_DENIED');
  const rv = (await c.joinHost('h4')).token;
  await c.revokeToken(rv.split('.')[0]!);
  t.is(await reg('h4', rv), 'UNAUTHENTICATED');
  const short = (await c.joinHost('h5', 60)).token;
  advance(61_000);
  t.is(await reg('h5', short), 'UNAUTHENTICATED');
  t.is(await reg('h6', 'abcdef.0123456789abcdef'), 'UNAUTHENTICATED');
  t.is(await reg('h6', 'garbage'), 'UNAUTHENTICATED');
  t.is(await reg('h6', ''), 'UNAUTHENTICATED');
  t.is(c.revision(), rev);
  t.deepEqual(c.hostNames(), ['h1']);
  t.is((await c.tokens()).find((x) => x.host === 'h5')!.state, 'expired');
});

test('bad input: names, underlay IPs; a duplicate underlay IP is refused', async (t) => {
  const { c, admit } = await setup();
  t.is(await code(() => c.joinHost('Not_A_Label')), 'INVALID_ARGUMENT');
  await admit('h1', '198.18.0.11');
  const tk = (await c.joinHost('h2')).token;
  t.is(
    await code(() =>
      c.register({ name: 'h2', token: tk, credential: '', underlayIp: '198.18.0.11', agentVersion: '' }),
    ),
    'ALREADY_EXISTS',
  );
  t.is(
    await code(() => c.register({ name: 'h2', token: tk, credential: '', underlayIp: '1.2.3', agentVersion: '' })),
    'INVALID_ARGUMENT',
  );
  t.is(
    await code(() =>
      c.register({ name: 'h2', token: tk, credential: '', underlayIp: '198.18.0.12', agentVersion: '' }),
    ),
    'OK',
    'the token was not consumed by the failures',
  );
});

test('a full network is RESOURCE_EXHAUSTED naming network and capacity; nothing half-made', async (t) => {
  const { c, admit } = await setup('198.18.64.0/23'); // 2 slices
  await admit('h1', '198.18.0.11');
  await admit('h2', '198.18.0.12');
  const err = (await t.throwsAsync(admit('h3', '198.18.0.13'))) as CoordError;
  t.is(err.code, 'RESOURCE_EXHAUSTED');
  t.regex(err.message, /network default \(198\.18\.64\.0\/23\) is full: all 2 \/24 slices/);
  t.deepEqual(c.hostNames(), ['h1', 'h2']);
});

test('re-register with the credential keeps the slices; a wrong credential is refused', async (t) => {
  const { c, admit } = await setup();
  const { credential } = await admit('h1', '198.18.0.11');
  const before = c.slicesOf('h1');
  t.is(
    (await c.register({ name: 'h1', token: '', credential, underlayIp: '198.18.0.11', agentVersion: 't' })).credential,
    credential,
  );
  t.deepEqual(c.slicesOf('h1'), before);
  t.is(
    await code(() =>
      c.register({ name: 'h1', token: '', credential: 'f'.repeat(64), underlayIp: '198.18.0.11', agentVersion: 't' }),
    ),
    'UNAUTHENTICATED',
  );
});

test('leave: slices quarantined, reused only when no never-used slice is left; a re-join gets its slice back', async (t) => {
  const { c, admit } = await setup(); // 4 slices
  await admit('h1', '198.18.0.11'); // .64
  await admit('h2', '198.18.0.12'); // .65
  await c.removeHost('h1');
  t.false(c.hasHost('h1'));
  await admit('h3', '198.18.0.13');
  t.is(c.slicesOf('h3')[0]!.cidr, '198.18.66.0/24', 'never-used first');
  await admit('h1', '198.18.0.11');
  t.is(c.slicesOf('h1')[0]!.cidr, '198.18.64.0/24', 're-join gets its slice back');
  await c.removeHost('h2');
  await admit('h4', '198.18.0.14');
  t.is(c.slicesOf('h4')[0]!.cidr, '198.18.67.0/24');
  await admit('h5', '198.18.0.15');
  t.is(c.slicesOf('h5')[0]!.cidr, '198.18.65.0/24', 'quarantined slice reused once nothing else is left');
  t.is(await code(() => c.removeHost('nope')), 'NOT_FOUND');
});

test('leave revokes the host’s unused tokens', async (t) => {
  const { c, admit } = await setup();
  await admit('h1', '198.18.0.11');
  await c.joinHost('h1');
  await c.removeHost('h1');
  t.true((await c.tokens()).filter((x) => x.host === 'h1').every((x) => x.state !== 'valid'));
});

test('networks: create allocates for every admitted host; overlap, duplicates, bad prefix refused; delete needs no containers', async (t) => {
  const { c, admit, changes } = await setup();
  await admit('h1', '198.18.0.11');
  await admit('h2', '198.18.0.12');
  const n = await c.createNetwork('blue', '198.19.0.0/16', 24, 1400);
  t.is(n.greKey, 2);
  t.deepEqual(changes.at(-1)!.upserts.sort(), ['h1', 'h2']);
  t.is(c.slicesOf('h1').length, 2);
  t.is(await code(() => c.createNetwork('blue', '198.20.0.0/16', 24, 0)), 'ALREADY_EXISTS');
  t.is(await code(() => c.createNetwork('red', '198.19.128.0/17', 24, 0)), 'INVALID_ARGUMENT');
  t.is(await code(() => c.createNetwork('red', '198.20.0.0/16', 16, 0)), 'INVALID_ARGUMENT');
  t.is(await code(() => c.createNetwork('red', '198.20.0.0/31', 30, 0)), 'INVALID_ARGUMENT');
  t.is(await code(() => c.createNetwork('tiny', '198.20.0.0/24', 25, 0)), 'OK');
  t.is(await code(() => c.createNetwork('tinier', '198.21.0.0/26', 27, 0)), 'OK');
  const h1 = c.slicesOf('h1').find((s) => s.network === 'blue')!;
  const cred = (
    await c.register({
      name: 'h1',
      token: (await c.joinHost('h1')).token,
      credential: '',
      underlayIp: '198.18.0.11',
      agentVersion: '',
    })
  ).credential;
  void cred;
  await c.reportStatus('h1', {
    tunnels: [],
    attachErrors: [],
    endpoints: [
      { network: 'blue', host: 'h1', mac: '0a:58:c6:13:00:02', ip: h1.cidr.replace(/0\/24$/, '2'), containerId: 'c1' },
    ],
  });
  t.is(await code(() => c.deleteNetwork('blue')), 'FAILED_PRECONDITION');
  await c.reportStatus('h1', { tunnels: [], attachErrors: [], endpoints: [] });
  t.is(await code(() => c.deleteNetwork('blue')), 'OK');
  t.is(await code(() => c.deleteNetwork('blue')), 'NOT_FOUND');
  t.false(c.slicesOf('h1').some((s) => s.network === 'blue'));
  // a deleted network's GRE key is never handed out again (a host cut off may still carry it)
  const keys = c.networks().map((x) => x.greKey);
  const green = await c.createNetwork('green', '198.22.0.0/16', 24, 0);
  // no network may hold an underlay address: a host's, or (given) the coordinator's
  const e = await code(() => c.createNetwork('under', '198.18.0.0/24', 28, 0));
  t.is(e, 'INVALID_ARGUMENT');
  await t.throwsAsync(() => c.createNetwork('under', '198.18.0.0/24', 28, 0), {
    message: /host h1's underlay IP 198\.18\.0\.11 is inside network under \(198\.18\.0\.0\/24\)/,
  });
  t.false([...keys, n.greKey].includes(green.greKey), `green got key ${green.greKey}, blue had ${n.greKey}`);
});

test('endpoints outside the host’s slice or with a bad MAC are refused; a change bumps the revision', async (t) => {
  const { c, admit } = await setup();
  const { credential } = await admit('h1', '198.18.0.11');
  const ep = (ip: string, mac = '0a:58:c6:12:40:05') => ({ network: 'default', host: 'h1', mac, ip, containerId: 'x' });
  t.is(
    await code(() => c.reportStatus('h1', { tunnels: [], attachErrors: [], endpoints: [ep('198.18.65.5')] })),
    'INVALID_ARGUMENT',
  );
  t.is(
    await code(() => c.reportStatus('h1', { tunnels: [], attachErrors: [], endpoints: [ep('198.18.64.5', 'zz')] })),
    'INVALID_ARGUMENT',
  );
  t.is(await code(() => c.reportStatus('ghost', { tunnels: [], attachErrors: [], endpoints: [] })), 'NOT_FOUND');
  t.is(await code(() => c.authenticate('h1', 'bad')), 'UNAUTHENTICATED');
  t.is(await code(() => c.authenticate('h1', credential)), 'OK');
  const r = c.revision();
  await c.reportStatus('h1', { tunnels: [], attachErrors: [], endpoints: [ep('198.18.64.5')] });
  t.is(c.revision(), r + 1);
  await c.reportStatus('h1', { tunnels: [], attachErrors: [], endpoints: [ep('198.18.64.5')] });
  t.is(c.revision(), r + 1, 'no change, no new revision');
  t.is(c.peer('h1')!.endpoints.length, 1);
});

test('host state: up while seen recently, down after the window, still a peer', async (t) => {
  const { c, admit, advance } = await setup();
  await admit('h1', '198.18.0.11');
  t.is(c.host('h1').state, 'up');
  advance(31_000);
  t.is(c.host('h1').state, 'down');
  t.truthy(c.peer('h1'));
});

test('the underlay stays outside every overlay: a host inside a network, a network over the coordinator, refused in one line', async (t) => {
  const { admit } = await setup();
  t.is(await code(() => admit('h9', '198.18.64.7')), 'INVALID_ARGUMENT');
  await t.throwsAsync(admit('h9', '198.18.64.7'), {
    message: /host h9's underlay IP 198\.18\.64\.7 is inside network default \(198\.18\.64\.0\/22\)/,
  });
  const c = await Coordinator.create(new MemoryStore(), { ownAddresses: ['10.0.0.5'] });
  await t.throwsAsync(() => c.createNetwork('office', '10.0.0.0/24', 28, 0), {
    message: /the coordinator's address 10\.0\.0\.5 is inside network office/,
  });
  t.is(await code(() => c.createNetwork('office', '10.1.0.0/24', 28, 0)), 'OK');
});

test('a used join token signs nothing for another key; revoking a used token says it changes nothing', async (t) => {
  let signed = 0;
  const c = await Coordinator.create(new MemoryStore(), {
    signCsr: async (csr) => {
      signed++;
      return `CERT[${csr}]`;
    },
    fingerprintOf: (pem) => ({ cert: `${pem}#${signed}`, key: pem.slice('CERT['.length, -1) }),
    csrKeyFingerprint: async (csr) => csr,
  });
  await c.init({ name: 'default', cidr: '198.18.64.0/22', hostPrefixLen: 24, mtu: 0 });
  const { token } = await c.joinHost('h5');
  const reg = (csr: string) =>
    c.register({
      name: 'h5',
      token,
      credential: '',
      underlayIp: '198.18.0.15',
      agentVersion: 't',
      csr: `x BEGIN CERTIFICATE REQUEST ${csr}`,
    });
  await reg('keyA');
  t.is(signed, 1);
  await reg('keyA'); // the first reply was lost: the same key gets a certificate again
  t.is(signed, 2);
  t.is(await code(() => reg('keyB')), 'UNAUTHENTICATED');
  t.is(signed, 2, 'nothing signed for the other key');
  const id = token.split('.')[0]!;
  t.is(await code(() => c.revokeToken(id)), 'FAILED_PRECONDITION');
  await t.throwsAsync(() => c.revokeToken(id), {
    message: /already used by host h5: revoking it changes nothing; to cut the host off: coordctl leave h5/,
  });
  const other = (await c.joinHost('h6')).token.split('.')[0]!;
  await c.revokeToken(other);
  await c.revokeToken(other); // again: it is revoked, fine
  t.is((await c.tokens()).find((x) => x.id === other)!.state, 'revoked');
});
