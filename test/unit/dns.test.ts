import test from 'ava';
import {
  answerAddresses,
  buildAnswer,
  buildQuery,
  parseQuery,
  RCODE,
  replyHeader,
  TYPE,
  withId,
  type Question,
} from '../../agent/dns/codec.js';
import { buildNameTable, decide, MAX_ANSWERS } from '../../agent/dns/names.js';
import { hostUpstreams, parseUpstreams, resolvConfServers } from '../../agent/dns/upstreams.js';
import { takeToken } from '../../agent/dns/resolver.js';
import { acceptedNames, containerDnsNames, normalizeDnsName } from '../../common/dns-names.js';
import { computeNftRuleset } from '../../agent/net/nat.js';
import { dnsRule } from '../../agent/bridge/trace.js';
import { computeNames } from '../../coordinator/names.js';
import { resolveEnd } from '../../coordinator/trace.js';
import { resolveAgentConfig } from '../../agent/config.js';
import type { LocalPort, Snapshot } from '../../agent/model.js';

const q = (m: Buffer) => parseQuery(m) as Question;

test('codec: a query reads back lowercased; responses, several questions and compression in a question are refused', (t) => {
  const m = buildQuery(0x1234, 'Web.Example');
  const r = q(m);
  t.is(r.id, 0x1234);
  t.is(r.name, 'web.example');
  t.is(r.type, TYPE.A);
  t.is(r.end, m.length);
  t.like(parseQuery(Buffer.alloc(5)), { error: 'shorter than a header' });
  const resp = Buffer.from(m);
  resp[2] = 0x81;
  t.like(parseQuery(resp), { error: 'a response, not a query', id: 0x1234 });
  const two = Buffer.from(m);
  two.writeUInt16BE(2, 4);
  t.like(parseQuery(two), { error: 'not exactly one question' });
  const ptr = Buffer.concat([m.subarray(0, 12), Buffer.from([0xc0, 0x0c, 0, 1, 0, 1])]);
  t.like(parseQuery(ptr), { error: 'bad label' });
  t.like(parseQuery(m.subarray(0, m.length - 2)), { error: 'question runs past the end' });
});

test('codec: an answer echoes the question, sets QR AA RA and the query’s RD, TTL 0, A records in order', (t) => {
  const m = buildQuery(7, 'api');
  const a = buildAnswer(m, q(m), RCODE.NOERROR, ['198.18.65.3', '198.18.66.2']);
  t.deepEqual(replyHeader(a), { id: 7, rcode: 0 });
  t.is(a.readUInt16BE(2) & 0x8580, 0x8580, 'QR, AA, RD, RA');
  t.deepEqual(answerAddresses(a), ['198.18.65.3', '198.18.66.2']);
  t.is(a.readUInt32BE(m.length + 6), 0, 'TTL 0: no client cache outlives a container');
  const nx = buildAnswer(m, q(m), RCODE.NXDOMAIN, []);
  t.deepEqual(replyHeader(nx), { id: 7, rcode: RCODE.NXDOMAIN });
  t.is(nx.readUInt16BE(6), 0);
  t.is(withId(a, 99).readUInt16BE(0), 99);
  t.is(a.readUInt16BE(0), 7, 'withId copies');
});

test('names: container name, hostname and aliases, lowercased, each once; Docker’s id defaults left out; invalid ones said', (t) => {
  const id = 'a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f9';
  t.deepEqual(
    containerDnsNames({ id, name: 'Web', hostname: id.slice(0, 12), aliases: ['www', id.slice(0, 12), 'web'] }),
    {
      names: ['web', 'www'],
      invalid: [],
    },
  );
  t.deepEqual(containerDnsNames({ id, name: 'bad_name', hostname: 'ok.example', aliases: ['-x', 'a'.repeat(64)] }), {
    names: ['ok.example'],
    invalid: ['bad_name', '-x', 'a'.repeat(64)],
  });
  t.is(containerDnsNames({ id, name: 'n', aliases: Array.from({ length: 40 }, (_, i) => `a${i}`) }).names.length, 16);
  t.is(normalizeDnsName('Db.Local.'), 'db.local');
  t.is(normalizeDnsName(`${'a.'.repeat(127)}ab`), undefined, 'over 253 characters');
  t.deepEqual(acceptedNames(['A', 'a', 'bad_one', 'x'.repeat(70), 'ok']), ['a', 'ok']);
  t.deepEqual(acceptedNames(undefined), []);
});

const snap = (peers: Snapshot['peers']): Snapshot => ({
  revision: 1,
  host: 'h1',
  underlayIp: '198.18.0.11',
  networks: [],
  slices: [],
  peers,
});
const ep = (network: string, ip: string, names: string[]) => ({
  network,
  host: 'h2',
  mac: '02:00:00:00:00:01',
  ip,
  containerId: ip,
  names,
});
const local = (network: string, ip: string, names: string[], gateway = false): LocalPort => ({
  port: `gm${ip}`,
  network,
  ip,
  mac: '02:00:00:00:00:02',
  gateway,
  containerId: ip,
  names,
});

test('names table: per network, this host’s ports and every peer’s endpoints; an alias answers all, rotated; AAAA answers none', (t) => {
  const table = buildNameTable(
    snap([
      {
        name: 'h2',
        underlayIp: '',
        slices: [],
        endpoints: [ep('default', '198.18.65.10', ['api']), ep('blue', '198.19.1.2', ['b'])],
      },
      { name: 'h3', underlayIp: '', slices: [], endpoints: [ep('default', '198.18.66.2', ['api', 'api2'])] },
    ]),
    [local('default', '198.18.64.9', ['web']), local('default', '198.18.64.1', ['gw'], true)],
  );
  const ask = (network: string, name: string, type: number = TYPE.A, turn = 0) =>
    decide(table, network, q(buildQuery(1, name, type)), turn);
  t.deepEqual(ask('default', 'web'), { answer: true, rcode: 0, addresses: ['198.18.64.9'] });
  t.deepEqual(ask('default', 'API', TYPE.A, 0), { answer: true, rcode: 0, addresses: ['198.18.65.10', '198.18.66.2'] });
  t.deepEqual(ask('default', 'api', TYPE.A, 1), { answer: true, rcode: 0, addresses: ['198.18.66.2', '198.18.65.10'] });
  t.deepEqual(ask('default', 'api', TYPE.AAAA), { answer: true, rcode: 0, addresses: [] }, 'the name exists, no IPv6');
  t.deepEqual(ask('default', 'b'), { answer: false }, 'blue’s name is not default’s: forwarded');
  t.deepEqual(ask('blue', 'b'), { answer: true, rcode: 0, addresses: ['198.19.1.2'] });
  t.deepEqual(ask('default', 'gw'), { answer: false }, 'gateways have no name');
  t.deepEqual(ask('default', 'outside.example'), { answer: false });
  const many = buildNameTable(
    snap([
      {
        name: 'h2',
        underlayIp: '',
        slices: [],
        endpoints: Array.from({ length: 40 }, (_, i) => ep('default', `198.18.65.${i + 2}`, ['many'])),
      },
    ]),
    [],
  );
  const d = decide(many, 'default', q(buildQuery(1, 'many')), 0);
  t.true(d.answer && d.addresses.length === MAX_ANSWERS, 'a 512-byte UDP reply at most');
});

test('upstreams: --dns-upstream checked; resolv.conf read as Docker does (no loopback; systemd-resolved’s list behind its stub)', (t) => {
  t.deepEqual(parseUpstreams('198.51.100.53, 198.51.100.54:5353'), [
    { ip: '198.51.100.53', port: 53 },
    { ip: '198.51.100.54', port: 5353 },
  ]);
  t.regex(parseUpstreams('dns.example') as string, /IPv4\[:PORT\]/);
  t.regex(parseUpstreams('127.0.0.53') as string, /loopback/);
  t.regex(parseUpstreams('') as string, /at least one/);
  t.deepEqual(resolvConfServers('# x\nnameserver 127.0.0.53\nnameserver 10.0.0.2\nnameserver fd00::1\nsearch a\n'), [
    { ip: '10.0.0.2', port: 53 },
  ]);
  const files: Record<string, string> = {
    '/etc/resolv.conf': 'nameserver 127.0.0.53\noptions edns0\n',
    '/run/systemd/resolve/resolv.conf': 'nameserver 192.0.2.1\n',
  };
  t.deepEqual(
    hostUpstreams((p) => files[p]),
    [{ ip: '192.0.2.1', port: 53 }],
  );
  t.deepEqual(
    hostUpstreams(() => undefined),
    [],
  );
  const base = { coordinator: '127.0.0.1:7420', name: 'h1' };
  t.deepEqual(resolveAgentConfig({}, { ...base, 'dns-upstream': '192.0.2.9' }).dnsUpstream, [
    { ip: '192.0.2.9', port: 53 },
  ]);
  t.is(resolveAgentConfig({}, base).dns, 'on');
  t.throws(() => resolveAgentConfig({}, { ...base, dns: 'maybe' }), { message: /--dns must be on or off/ });
  t.throws(() => resolveAgentConfig({}, { ...base, 'dns-upstream': '1.2.3' }), { message: /--dns-upstream/ });
});

test('rate limit: a source gets its burst, then its rate', (t) => {
  const b = new Map<string, { tokens: number; at: number }>();
  let passed = 0;
  for (let i = 0; i < 20; i++) if (takeToken(b, '198.18.64.5', 1000, 10, 5)) passed++;
  t.is(passed, 5);
  t.false(takeToken(b, '198.18.64.5', 1050, 10, 5), '50 ms: half a token');
  t.true(takeToken(b, '198.18.64.5', 1100, 10, 5), '100 ms: one');
  t.true(takeToken(b, '198.18.64.6', 1100, 10, 5), 'another source has its own');
});

test('nftables: with names, queries to the upstreams DNAT to the gateway, which only its own port may reach; without, none', (t) => {
  const gws = [
    {
      port: 'gmgw1',
      network: 'default',
      greKey: 1,
      ip: '198.18.64.1',
      prefixLen: 18,
      mac: '0a:58:c6:12:40:01',
      mtu: 1400,
      networkCidr: '198.18.64.0/18',
    },
  ];
  const on = computeNftRuleset(gws, [], false, { upstreams: [{ ip: '198.51.100.1' }, { ip: '198.51.100.2' }] });
  const dnat =
    'iifname "gmgw1" ip saddr 198.18.64.0/18 ip daddr { 198.51.100.1, 198.51.100.2 } meta l4proto { tcp, udp } th dport 53 dnat to 198.18.64.1';
  t.true(on.includes('type nat hook prerouting priority dstnat'));
  t.true(on.includes(dnat));
  const lines = on.split('\n').map((l) => l.trim());
  const refuse = lines.indexOf('ip daddr 198.18.64.1 meta l4proto { tcp, udp } th dport 53 iifname != "gmgw1" drop');
  const accept = lines.indexOf(
    'iifname "gmgw1" ip saddr 198.18.64.0/18 ip daddr 198.18.64.1 meta l4proto { tcp, udp } th dport 53 accept',
  );
  t.true(refuse > 0 && accept > refuse && accept < lines.indexOf('iifname "gmgw*" drop'));
  const off = computeNftRuleset(gws, [], false);
  t.false(off.includes('dport 53'));
  t.false(off.includes('prerouting'));
  // trace reads the rule back, as nft lists one server or a set
  t.is(dnsRule(dnat, 'gmgw1', '198.51.100.2'), dnat);
  const one = dnat.replace('{ 198.51.100.1, 198.51.100.2 }', '198.51.100.1');
  t.is(dnsRule(one, 'gmgw1', '198.51.100.1'), one);
  t.is(dnsRule(one, 'gmgw1', '192.0.2.1'), undefined);
  t.is(dnsRule(one, 'gmgw2', '198.51.100.1'), undefined);
});

test('coordctl names and trace: names per network with their holders; a trace end may be a DNS name', (t) => {
  const e = (host: string, ip: string, name: string, names: string[], network = 'default') => ({
    network,
    host,
    mac: '02:00:00:00:00:01',
    ip,
    containerId: `${name}0123456789`,
    name,
    names,
  });
  const eps = [
    e('h3', '198.18.66.2', 'api1', ['api1', 'api']),
    e('h2', '198.18.65.3', 'api2', ['api2', 'api']),
    e('h2', '198.19.1.2', 'b', ['b'], 'blue'),
  ];
  const all = computeNames(eps);
  t.deepEqual(
    all.map((n) => `${n.network}/${n.name}=${n.holders.map((h) => `${h.ip}@${h.host}`).join(',')}`),
    [
      'blue/b=198.19.1.2@h2',
      'default/api=198.18.65.3@h2,198.18.66.2@h3',
      'default/api1=198.18.66.2@h3',
      'default/api2=198.18.65.3@h2',
    ],
  );
  t.is(computeNames(eps, 'blue').length, 1);
  t.like(resolveEnd('API1', eps, false), { endpoint: { name: 'api1' } });
  t.like(resolveEnd('api', eps, false), { error: '"api" matches 2 containers: api1 on h3, api2 on h2' });
});
