import test from 'ava';
import {
  cidrContains,
  cidrsOverlap,
  formatCidr,
  formatIp,
  ipHex,
  isDnsLabel,
  macFromIp,
  parseCidr,
  parseIp,
  subnetAt,
  subnetIndex,
} from '../../common/ipv4.js';

test('parseIp accepts dotted quads and rejects everything else', (t) => {
  t.is(parseIp('198.18.0.1'), 0xc6120001);
  t.is(parseIp('0.0.0.0'), 0);
  t.is(parseIp('255.255.255.255'), 0xffffffff);
  for (const bad of ['256.1.1.1', '1.2.3', '1.2.3.4.5', '01.2.3.4', 'a.b.c.d', '', '::1', '1.2.3.-4'])
    t.is(parseIp(bad), undefined, bad);
});

test('formatIp is the inverse of parseIp', (t) => {
  for (const s of ['198.18.0.1', '10.0.0.255', '255.255.255.255', '0.0.0.0']) t.is(formatIp(parseIp(s)!), s);
});

test('parseCidr requires a network address and a prefix up to 32', (t) => {
  t.deepEqual(parseCidr('198.18.0.0/15'), { base: 0xc6120000, prefix: 15 });
  t.is(parseCidr('198.18.0.1/24'), undefined);
  t.is(parseCidr('198.18.0.0/33'), undefined);
  t.is(parseCidr('198.18.0.0'), undefined);
  t.is(parseCidr('fd00::/64'), undefined);
});

test('subnets: the i-th slice, its index, containment and overlap', (t) => {
  const net = parseCidr('198.18.64.0/18')!;
  const s3 = subnetAt(net, 24, 3);
  t.is(formatCidr(s3), '198.18.67.0/24');
  t.is(subnetIndex(net, s3), 3);
  t.true(cidrContains(net, parseIp('198.18.127.255')!));
  t.false(cidrContains(net, parseIp('198.18.128.0')!));
  t.true(cidrsOverlap(parseCidr('10.0.0.0/8')!, parseCidr('10.1.0.0/16')!));
  t.false(cidrsOverlap(parseCidr('10.0.0.0/16')!, parseCidr('10.1.0.0/16')!));
});

test('ipHex and macFromIp', (t) => {
  t.is(ipHex(parseIp('198.18.0.2')!), 'c6120002');
  t.is(macFromIp(parseIp('198.18.65.7')!), '0a:58:c6:12:41:07');
});

test('isDnsLabel', (t) => {
  for (const ok of ['h1', 'host-1', 'a', 'a'.repeat(63)]) t.true(isDnsLabel(ok), ok);
  for (const bad of ['', '-a', 'a-', 'A', 'a_b', 'a.b', 'a'.repeat(64)]) t.false(isDnsLabel(bad), bad);
});
