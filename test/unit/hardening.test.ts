// Hardening: what one host or one image can do to others' screens and to the coordinator.
import test from 'ava';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { lateInLife, renewAt } from '../../common/renewal.js';
import { certWarnings } from '../../coordinator/trace-format.js';
import { finishKeySwap } from '../../agent/control-plane/coordinator-client.js';
import { tlsFiles } from '../../agent/control-plane/tls.js';
import { printable } from '../../common/text.js';
import { planAttachment } from '../../agent/docker/attachment.js';
import { allocate, bind } from '../../agent/docker/ipam.js';
import { computeDesired, computeFlows } from '../../agent/bridge/desired.js';
import { renderFlow } from '../../agent/ovs/flows/render.js';
import { Coordinator } from '../../coordinator/coordinator.js';
import { MemoryStore } from '../../coordinator/memory-store.js';
import { RateLimiter } from '../../coordinator/rate-limit.js';
import { MAX_WATCH_PER_HOST, WatchHub } from '../../coordinator/watch-hub.js';
import { ownLabels } from '../../agent/docker/runtime.js';

const snap = {
  revision: 1,
  host: 'h1',
  underlayIp: '198.18.0.11',
  networks: [{ name: 'default', cidr: '198.18.64.0/18', hostPrefixLen: 24, greKey: 1, mtu: 0 }],
  slices: [{ network: 'default', cidr: '198.18.64.0/24' }],
  peers: [],
};
const c = { id: 'c'.repeat(64), name: 'x', pid: 1, networkMode: 'none', labels: {} };
const ep = (host: string, mac: string, ip: string) => ({ network: 'default', host, mac, ip, containerId: `id-${mac}` });

test('printable: control characters escaped (C0, DEL, C1), length capped', (t) => {
  t.is(printable('ok\x1b[31mred\x07\x7f\x9b'), 'ok\\x1b[31mred\\x07\\x7f\\x9b');
  t.is(printable('a'.repeat(300), 10), `${'a'.repeat(10)}...`);
  t.is(printable('plain text'), 'plain text');
});

test('a label value reaches an error message escaped and short: no terminal sequence, no huge report', (t) => {
  const r = planAttachment(c, { network: '\x1b]0;pwned\x07' + 'n'.repeat(10_000) }, snap, {}, 1500);
  const e = (r as { error: string }).error;
  // eslint-disable-next-line no-control-regex -- control characters are what this is about
  t.false(/[\x00-\x1f\x7f-\x9f]/.test(e), e);
  t.true(e.length < 200, `${e.length} characters`);
  t.regex(e, /^unknown network "\\x1b\]0;pwned\\x07n+\.\.\."/);
  const mac = planAttachment(c, { network: 'default', mac: '\x9b2J' }, snap, {}, 1500);
  t.regex((mac as { error: string }).error, /gremesh\.mac "\\x9b2J"/);
});

test('the coordinator keeps attach errors printable and bounded, whatever an agent sends', async (t) => {
  const co = await Coordinator.create(new MemoryStore());
  await co.init({ name: 'default', cidr: '198.18.64.0/22', hostPrefixLen: 24, mtu: 0 });
  await co.register({
    name: 'h1',
    token: (await co.joinHost('h1')).token,
    credential: '',
    underlayIp: '198.18.0.11',
    agentVersion: '',
  });
  await co.reportStatus('h1', {
    tunnels: [],
    endpoints: [],
    attachErrors: Array.from({ length: 5000 }, (_, i) => ({
      container: `c${i}\x1b[2J`,
      reason: `\x1b[31m${'r'.repeat(1000)}`,
    })),
  });
  const errs = co.host('h1').attachErrors;
  t.is(errs.length, 1000);
  t.is(errs[0]!.container, 'c0\\x1b[2J');
  // eslint-disable-next-line no-control-regex -- control characters are what this is about
  t.false(errs.some((e) => /[\x00-\x1f]/.test(e.reason + e.container)));
  t.true(
    errs.every((e) => e.reason.length < 300),
    'cut at 256 characters (escapes add a few)',
  );
});

test('labels from the image are not the container’s: an image cannot pick its network or MAC', (t) => {
  const image = { 'gremesh.network': 'default', 'gremesh.mac': '0a:00:00:00:00:01', maintainer: 'x' };
  // what Docker shows for `docker run IMAGE`: the image's labels merged in
  t.deepEqual(ownLabels({ ...image }, image), { maintainer: 'x' });
  // `--label gremesh.network=blue` over the image's: the container's own choice
  t.deepEqual(ownLabels({ ...image, 'gremesh.network': 'blue' }, image), {
    'gremesh.network': 'blue',
    maintainer: 'x',
  });
  // the same value as the image's counts as the image's (documented)
  t.deepEqual(ownLabels({ 'gremesh.network': 'default' }, image), {});
  t.deepEqual(ownLabels({ 'gremesh.network': 'default' }, {}), { 'gremesh.network': 'default' });
});

test('a first start that died between creating the default network and marking the store starts next time', async (t) => {
  const store = new MemoryStore();
  const a = await Coordinator.create(store);
  await a.createNetwork('default', '198.18.64.0/22', 24, 0); // the first commit of init, then the crash
  const b = await Coordinator.create(store);
  await t.notThrowsAsync(() => b.init({ name: 'default', cidr: '198.18.64.0/22', hostPrefixLen: 24, mtu: 0 }));
  t.deepEqual(
    b.networks().map((n) => n.name),
    ['default'],
  );
});

test('MACs: no unicast flow for a MAC two peers claim or for a group address; a taken gremesh.mac is refused', (t) => {
  const s = {
    ...snap,
    peers: [
      {
        name: 'h2',
        underlayIp: '198.18.0.12',
        slices: [],
        endpoints: [
          ep('h2', '0a:00:00:00:00:22', '198.18.65.2'),
          ep('h2', '0a:00:00:00:00:99', '198.18.65.3'),
          ep('h2', '01:00:5e:00:00:01', '198.18.65.4'),
        ],
      },
      { name: 'h3', underlayIp: '198.18.0.13', slices: [], endpoints: [ep('h3', '0a:00:00:00:00:99', '198.18.66.3')] },
    ],
  };
  const d = computeDesired(s, { bridge: 'gremesh0', datapath: 'netdev', underlayMtu: 1500 });
  const flows = computeFlows(s, d, [], new Set(d.tunnels.map((x) => x.port))).map(renderFlow);
  t.true(
    flows.some((f) => f.includes('dl_dst=0a:00:00:00:00:22,')),
    'a MAC one peer claims: its flow',
  );
  t.false(
    flows.some((f) => f.includes('dl_dst=0a:00:00:00:00:99,')),
    'claimed by h2 and h3: no unicast flow to either',
  );
  t.false(
    flows.some((f) => f.includes('dl_dst=01:00:5e:00:00:01,')),
    'a group address is never unicast',
  );
  const taken = planAttachment(c, { network: 'default', mac: '0a:00:00:00:00:22' }, s, {}, 1500);
  t.regex((taken as { error: string }).error, /gremesh\.mac 0a:00:00:00:00:22 is in use on h2/);
  const local = planAttachment(
    c,
    { network: 'default', mac: '0a:00:00:00:00:44' },
    s,
    {},
    1500,
    (network, mac) => network === 'default' && mac === '0a:00:00:00:00:44',
  );
  t.regex((local as { error: string }).error, /in use by another container on this host/);
  t.false('error' in planAttachment(c, { network: 'default', mac: '0a:00:00:00:00:45' }, s, {}, 1500));
});

test('the coordinator passes on no group MAC and no MAC another host already reported', async (t) => {
  const co = await Coordinator.create(new MemoryStore());
  await co.init({ name: 'default', cidr: '198.18.64.0/22', hostPrefixLen: 24, mtu: 0 });
  for (const [h, ip] of [
    ['h1', '198.18.0.11'],
    ['h2', '198.18.0.12'],
  ])
    await co.register({
      name: h!,
      token: (await co.joinHost(h!)).token,
      credential: '',
      underlayIp: ip!,
      agentVersion: '',
    });
  const sliceIp = (h: string, n: number) => co.slicesOf(h)[0]!.cidr.replace(/0\/24$/, String(n));
  await co.reportStatus('h1', {
    tunnels: [],
    attachErrors: [],
    endpoints: [ep('h1', '0a:00:00:00:00:11', sliceIp('h1', 2))],
  });
  await co.reportStatus('h2', {
    tunnels: [],
    attachErrors: [],
    endpoints: [
      ep('h2', '0a:00:00:00:00:11', sliceIp('h2', 2)), // h1's
      ep('h2', 'ff:ff:ff:ff:ff:ff', sliceIp('h2', 3)),
      ep('h2', '0a:00:00:00:00:12', sliceIp('h2', 4)),
    ],
  });
  t.deepEqual(
    co.peer('h2')!.endpoints.map((e) => e.mac),
    ['0a:00:00:00:00:12'],
  );
  const why = co
    .host('h2')
    .attachErrors.map((e) => e.reason)
    .join('\n');
  t.regex(why, /0a:00:00:00:00:11 is already h1's/);
  t.regex(why, /ff:ff:ff:ff:ff:ff is not unicast/);
});

test('ReportStatus per host: a burst, then the refill rate; hosts do not share a bucket', (t) => {
  let now = 0;
  const r = new RateLimiter({ perSecond: 10, burst: 50 }, () => now);
  let ok = 0;
  for (let i = 0; i < 80; i++) if (r.take('h1')) ok++;
  t.is(ok, 50, 'the burst');
  t.true(r.take('h2'), 'another host is not slowed by h1');
  now += 1000;
  ok = 0;
  for (let i = 0; i < 80; i++) if (r.take('h1')) ok++;
  t.is(ok, 10, 'then 10 a second');
});

test('Watch streams per host are capped: a new one ends the oldest', (t) => {
  const hub = new WatchHub({
    revision: () => 1,
    networks: () => [],
    hostNames: () => ['h1'],
    peer: () => undefined,
    slicesOf: () => [],
    underlayOf: () => '198.18.0.11',
  });
  const ended: number[] = [];
  const sink = (i: number) => ({
    write: (_b: Buffer, cb: () => void) => cb(),
    gone: () => {},
    superseded: () => ended.push(i),
  });
  for (let i = 0; i < 5; i++) hub.add('h1', sink(i));
  t.is(hub.count(), MAX_WATCH_PER_HOST);
  t.deepEqual(ended, [0, 1, 2], 'the oldest ended first');
  hub.add('h2', sink(9));
  t.is(hub.count(), MAX_WATCH_PER_HOST + 1, 'other hosts are not touched');
});

test('renewal: at 60 % of a certificate’s life; status warns once a third is left, after that', (t) => {
  t.is(renewAt(0, 300), 180);
  t.false(lateInLife(0, 300, 199));
  t.true(lateInLife(0, 300, 200));
  t.false(lateInLife(0, 0, 1000), 'unknown validity: no warning');
  const w = certWarnings(
    [
      { name: 'serving', notBeforeMs: 0, notAfterMs: 300_000 },
      { name: 'admin', notBeforeMs: 0, notAfterMs: 3_000_000 },
    ],
    [
      { name: 'h1', certNotBeforeMs: 0, certNotAfterMs: 300_000 },
      { name: 'h2', certNotBeforeMs: 0, certNotAfterMs: 0 },
    ],
    250_000,
  );
  t.deepEqual(w, [
    "the coordinator's serving certificate has 50 s left (it is issued anew when the coordinator starts: restart it)",
    "host h1's certificate has 50 s left and was not renewed (its agent renews at 60 % of its life)",
  ]);
});

test('a renewal that died halfway is finished (or dropped) at the next start', (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'gmks-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const f = tlsFiles(dir);
  fs.writeFileSync(f.key, 'old key');
  fs.writeFileSync(f.cert, 'old cert');
  fs.writeFileSync(`${f.key}.next`, 'new key');
  finishKeySwap(dir);
  t.is(fs.readFileSync(f.key, 'utf8'), 'old key', 'no certificate came: the new key is dropped');
  t.false(fs.existsSync(`${f.key}.next`));
  fs.writeFileSync(`${f.key}.next`, 'new key');
  fs.writeFileSync(`${f.cert}.next`, 'new cert');
  finishKeySwap(dir);
  t.is(fs.readFileSync(f.key, 'utf8'), 'new key');
  t.is(fs.readFileSync(f.cert, 'utf8'), 'new cert');
  fs.writeFileSync(`${f.cert}.next`, 'newer cert'); // died after moving the key in
  finishKeySwap(dir);
  t.is(fs.readFileSync(f.cert, 'utf8'), 'newer cert');
});

test('an address held from an earlier slice is not kept after the host got another one', (t) => {
  const table = { default: { '198.18.64.7': 'c1', '198.18.65.2': 'c2' } };
  t.deepEqual(
    allocate(table, 'default', '198.18.65.0/24', 'c1'),
    { ip: '198.18.65.3' },
    'a fresh one in the new slice',
  );
  t.deepEqual(allocate(table, 'default', '198.18.65.0/24', 'c2'), { ip: '198.18.65.2' }, 'one inside it is kept');
  const after = bind(table, 'default', '198.18.65.3', 'c1');
  t.false(Object.keys(after.default!).includes('198.18.64.7'), 'the old one is released by the bind');
});
