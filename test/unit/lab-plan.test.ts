import test from 'ava';
import {
  computePlan,
  hostEnv,
  hostPaths,
  interfaceNames,
  labIdFrom,
  longestSocketPath,
  validateHostCount,
  validatePrefix,
  MAX_HOSTS,
  TEST_PREFIX,
  DEFAULT_PREFIX,
  etcdArgs,
  etcdEndpoints,
  validateControlPlane,
} from '../../deploy/lab/plan.js';

test('host count must be 1..32', (t) => {
  t.is(validateHostCount(1), undefined);
  t.is(validateHostCount(MAX_HOSTS), undefined);
  for (const bad of [0, -1, 33, 2.5, Number.NaN]) t.truthy(validateHostCount(bad), String(bad));
  t.throws(() => computePlan('abcd', 0), { instanceOf: RangeError });
});

test('plan: outside, ctl and N hosts with distinct underlay addresses in 198.18.0.0/24', (t) => {
  const p = computePlan('1a2b', 32);
  t.is(p.nodes.length, 34);
  const ips = p.nodes.map((n) => n.ip);
  t.is(new Set(ips).size, ips.length);
  for (const ip of ips) t.regex(ip, /^198\.18\.0\.\d+$/);
  t.is(p.nodes.find((n) => n.name === 'h1')!.ip, '198.18.0.11');
  t.is(p.nodes.find((n) => n.name === 'out')!.ip, '198.18.0.254');
  t.is(new Set(p.nodes.map((n) => n.ns)).size, 34);
  t.true(p.nodes.every((n) => n.ns.startsWith('gml-1a2b-')));
});

test('test labs carry their own namespace prefix; a bad prefix is refused', (t) => {
  const p = computePlan('1a2b', 2, TEST_PREFIX);
  t.true(p.nodes.every((n) => n.ns.startsWith('gmt-1a2b-')));
  t.is(p.switchNs, 'gmt-1a2b-sw');
  t.is(validatePrefix('gml'), undefined);
  for (const bad of ['', 'g', 'GML', 'gm-l', 'waytoolongprefix', '1ab']) t.truthy(validatePrefix(bad), bad);
  t.throws(() => computePlan('1a2b', 2, 'Bad-'), { instanceOf: RangeError });
});

test('every interface name fits 15 characters', (t) => {
  for (const name of interfaceNames(computePlan('ffff', 32))) t.true(name.length <= 15, name);
});

test('lab id is 4 hex digits', (t) => {
  t.is(labIdFrom(new Uint8Array([0x0a, 0xff])), '0aff');
  t.throws(() => computePlan('xyz1', 3));
});

test('host env points docker and OVS clients at the host daemons', (t) => {
  const p = computePlan('1a2b', 2);
  const h2 = p.nodes.find((n) => n.name === 'h2')!;
  const env = hostEnv('/tmp/lab', h2);
  t.is(env.DOCKER_HOST, `unix://${hostPaths('/tmp/lab', 'h2').dockerSock}`);
  t.is(env.OVS_RUNDIR, '/tmp/lab/h2/ovs');
  t.false('DOCKER_HOST' in hostEnv('/tmp/lab', p.nodes[0]!));
});

test('socket paths under the default dir stay within the unix limit', (t) => {
  t.true(longestSocketPath('/run/gremesh-lab', 'h32') < 100);
  t.true(longestSocketPath(`/tmp/${'x'.repeat(80)}`, 'h32') > 100);
});

test('control plane: etcd members and coordinators get namespaces and addresses of their own', (t) => {
  const p = computePlan('1a2b', 2, DEFAULT_PREFIX, { etcd: 3, coordinators: 2 });
  const by = (role: string) => p.nodes.filter((n) => n.role === role).map((n) => `${n.name}@${n.ip}`);
  t.deepEqual(by('etcd'), ['e1@198.18.0.3', 'e2@198.18.0.4', 'e3@198.18.0.5']);
  t.deepEqual(by('ctl'), ['ctl@198.18.0.2', 'ctl2@198.18.0.8']);
  t.deepEqual(by('host'), ['h1@198.18.0.11', 'h2@198.18.0.12']);
  t.is(new Set(p.nodes.map((n) => n.ip)).size, p.nodes.length, 'no address twice');
  t.is(etcdEndpoints(p), 'http://198.18.0.3:2379,http://198.18.0.4:2379,http://198.18.0.5:2379');
  const args = etcdArgs(
    p,
    p.nodes.find((n) => n.name === 'e2')!,
    '/d',
  );
  t.true(args.includes('--listen-client-urls=http://198.18.0.4:2379'));
  t.true(
    args.includes('--initial-cluster=e1=http://198.18.0.3:2380,e2=http://198.18.0.4:2380,e3=http://198.18.0.5:2380'),
  );
  t.is(etcdEndpoints(computePlan('1a2b', 2)), '');
});

test('control plane: bad sizes are refused with the reason', (t) => {
  t.regex(validateControlPlane(2, 1)!, /--etcd must be one of 0, 1, 3, 5/);
  t.regex(validateControlPlane(3, 4)!, /--coordinators must be a whole number from 1 to 3/);
  t.regex(validateControlPlane(0, 2)!, /needs --etcd/);
  t.is(validateControlPlane(3, 2), undefined);
  t.throws(() => computePlan('1a2b', 2, DEFAULT_PREFIX, { etcd: 2, coordinators: 1 }), { instanceOf: RangeError });
});
