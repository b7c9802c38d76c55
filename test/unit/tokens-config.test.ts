import test from 'ava';
import { hashSecret, newToken, parseToken, secretMatches, TOKEN_RE } from '../../coordinator/tokens.js';
import { parseDuration, resolveConfig, DEFAULTS } from '../../coordinator/config.js';
import { checkNetworkSpec, checkUnderlayIp } from '../../coordinator/validate.js';

test('tokens have the documented format and verify against their hash only', (t) => {
  const tk = newToken();
  t.regex(tk.token, TOKEN_RE);
  t.deepEqual(parseToken(tk.token), { id: tk.id, secret: tk.secret });
  t.true(secretMatches(tk.secret, hashSecret(tk.secret)));
  t.false(secretMatches('x'.repeat(16), hashSecret(tk.secret)));
  for (const bad of ['', 'abc.def', 'ABCDEF.0123456789abcdef', 'abcdef0123456789abcdef', 'abcdef.0123456789abcde'])
    t.is(parseToken(bad), undefined, bad);
});

test('durations', (t) => {
  t.is(parseDuration('90'), 90);
  t.is(parseDuration('15m'), 900);
  t.is(parseDuration('24h'), 86400);
  t.is(parseDuration('1x'), undefined);
});

test('config precedence: defaults < file < env < flags', (t) => {
  t.deepEqual(resolveConfig({}, {}, {}), { ...DEFAULTS, advertise: DEFAULTS.listen });
  const c = resolveConfig(
    { dataDir: '/f', listen: '1.2.3.4:1' },
    { GREMESH_DATA_DIR: '/e', GREMESH_DOWN_AFTER: '1m' },
    { 'data-dir': '/flag' },
  );
  t.is(c.dataDir, '/flag');
  t.is(c.listen, '1.2.3.4:1');
  t.is(c.downAfterS, 60);
  t.throws(() => resolveConfig({ nope: 1 }, {}, {}), { message: /unknown key "nope"/ });
  t.throws(() => resolveConfig({}, {}, { listen: 'nowhere' }), { message: /--listen/ });
  t.throws(() => resolveConfig({}, {}, { 'host-prefix-len': '12' }), { message: /must be longer/ });
  t.throws(() => resolveConfig({}, { GREMESH_HOST_PREFIX_LEN: 'x' }, {}), { message: /GREMESH_HOST_PREFIX_LEN/ });
});

test('network spec validation', (t) => {
  t.is(checkNetworkSpec('198.18.64.0/18', 24, 0, []), undefined);
  t.regex(checkNetworkSpec('fd00::/64', 80, 0, [])!, /IPv6/);
  t.regex(checkNetworkSpec('198.18.64.1/18', 24, 0, [])!, /not an IPv4 network/);
  t.regex(checkNetworkSpec('198.18.64.0/24', 24, 0, [])!, /must be longer/);
  t.regex(checkNetworkSpec('198.18.64.0/18', 24, 100, [])!, /MTU/);
  t.regex(checkNetworkSpec('198.18.64.0/18', 24, 0, [{ name: 'x', cidr: '198.18.0.0/16' }])!, /overlaps network x/);
  t.is(checkUnderlayIp('198.18.0.1'), undefined);
  t.truthy(checkUnderlayIp('127.0.0.1'));
  t.truthy(checkUnderlayIp('300.1.1.1'));
});

test('--etcd-timeout: a duration, 1s..60s, 5s unless given', (t) => {
  const etcd = { store: 'etcd', 'etcd-endpoints': 'http://127.0.0.1:2379' };
  t.is(resolveConfig({}, {}, etcd).etcdTimeoutS, 5);
  t.is(resolveConfig({}, {}, { ...etcd, 'etcd-timeout': '2s' }).etcdTimeoutS, 2);
  t.is(resolveConfig({}, { GREMESH_ETCD_TIMEOUT: '1m' }, etcd).etcdTimeoutS, 60);
  t.throws(() => resolveConfig({}, {}, { ...etcd, 'etcd-timeout': 'soon' }), { message: /is not a duration/ });
  t.throws(() => resolveConfig({}, {}, { ...etcd, 'etcd-timeout': '0s' }), {
    message: /--etcd-timeout must be 1s\.\.60s/,
  });
  t.throws(() => resolveConfig({}, {}, { ...etcd, 'etcd-timeout': '2m' }), {
    message: /--etcd-timeout must be 1s\.\.60s/,
  });
});
