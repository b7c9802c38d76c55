// Hardening: what one host or one image can do to others' screens and to the coordinator.
import test from 'ava';
import { printable } from '../../common/text.js';
import { planAttachment } from '../../agent/attachment.js';
import { Coordinator } from '../../coordinator/coordinator.js';
import { MemoryStore } from '../../coordinator/memory-store.js';
import { ownLabels } from '../../agent/container-runtime.js';

const snap = {
  revision: 1,
  host: 'h1',
  underlayIp: '198.18.0.11',
  networks: [{ name: 'default', cidr: '198.18.64.0/18', hostPrefixLen: 24, greKey: 1, mtu: 0 }],
  slices: [{ network: 'default', cidr: '198.18.64.0/24' }],
  peers: [],
};
const c = { id: 'c'.repeat(64), name: 'x', pid: 1, networkMode: 'none', labels: {} };

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
  const co = new Coordinator(new MemoryStore());
  co.init({ name: 'default', cidr: '198.18.64.0/22', hostPrefixLen: 24, mtu: 0 });
  await co.register({
    name: 'h1',
    token: co.joinHost('h1').token,
    credential: '',
    underlayIp: '198.18.0.11',
    agentVersion: '',
  });
  co.reportStatus('h1', {
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
