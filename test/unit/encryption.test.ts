// Encryption between hosts: the vocabulary, the coordinator's keys and rotations, the
// agent's keys, UAPI text, peers diff, rules, and the bridge's fail-closed tunnels.
import test from 'ava';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { execFileSync } from 'node:child_process';
import {
  checkTunnelCidr,
  checkTunnelIps,
  isWireguardKey,
  keyFromHex,
  keyToHex,
  tunnelIpOf,
} from '../../common/wireguard.js';
import { Coordinator } from '../../coordinator/coordinator.js';
import { outcome } from '../helpers/outcome.js';
import { MemoryStore } from '../../coordinator/memory-store.js';
import { SqliteStore } from '../../coordinator/sqlite-store.js';
import { KeyFile, keyDecision, newKey, publicKeyOf } from '../../agent/wireguard/keys.js';
import { parseGet, renderSet } from '../../agent/wireguard/uapi.js';
import { desiredWgPeers, diffWgPeers, KEEPALIVE_S } from '../../agent/wireguard/peers.js';
import { LOCAL_PREF, PREF_FROM_WG, PREF_TO_WG, ruleChanges, transportBatch } from '../../agent/wireguard/transport.js';
import { computeDesired, containerMtu, tunnelMtu } from '../../agent/bridge/desired.js';
import { applyWatchMessage } from '../../agent/control-plane/snapshot.js';
import { computeNftRuleset } from '../../agent/net/nat.js';
import type { Snapshot } from '../../agent/model.js';

const code = outcome;

test('vocabulary: keys, tunnel IPs from the underlay low bits, collisions said', (t) => {
  const k = newKey(0);
  t.true(isWireguardKey(k.publicKey) && isWireguardKey(k.privateKey));
  t.false(isWireguardKey('abc='));
  t.false(isWireguardKey(Buffer.alloc(31).toString('base64')));
  t.is(keyFromHex(keyToHex(k.publicKey)), k.publicKey);
  t.is(tunnelIpOf('198.18.0.11', '198.19.240.0/22'), '198.19.240.11');
  t.is(tunnelIpOf('10.1.7.9', '100.64.0.0/16'), '100.64.7.9');
  t.is(tunnelIpOf('10.1.0.0', '100.64.0.0/16'), undefined, 'host part all zero');
  t.is(checkTunnelCidr('100.64.0.0/16'), undefined);
  t.regex(checkTunnelCidr('100.64.0.1/16')!, /no host bits/);
  t.regex(checkTunnelCidr('100.64.0.0/31')!, /\/8 to \/30/);
  t.is(
    checkTunnelIps(
      [
        { name: 'a', underlayIp: '10.0.0.1' },
        { name: 'b', underlayIp: '10.0.0.2' },
      ],
      '100.64.0.0/16',
    ),
    undefined,
  );
  t.regex(
    checkTunnelIps(
      [
        { name: 'a', underlayIp: '10.0.0.1' },
        { name: 'b', underlayIp: '10.9.0.1' },
      ],
      '100.64.0.0/16',
    )!,
    /hosts a and b would share tunnel IP 100\.64\.0\.1/,
  );
  t.regex(
    checkTunnelIps([], '198.18.0.0/16', [{ name: 'default', cidr: '198.18.64.0/18' }])!,
    /overlaps network default/,
  );
});

test('agent keys: the public half matches wg pubkey; the file is 0600; a rotation past the key asks for a new one', (t) => {
  const k = newKey(3);
  t.is(publicKeyOf(k.privateKey), k.publicKey);
  try {
    t.is(
      execFileSync('wg', ['pubkey'], { input: k.privateKey + '\n' })
        .toString()
        .trim(),
      k.publicKey,
      'as wg computes it',
    );
  } catch {
    t.log('wg not installed: compared with node:crypto only');
  }
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'gm-wg-'));
  const f = new KeyFile(`${dir}/wireguard.key`);
  t.is(f.read(), undefined);
  f.write(k);
  t.deepEqual(f.read(), k);
  t.is(fs.statSync(`${dir}/wireguard.key`).mode & 0o777, 0o600);
  fs.writeFileSync(`${dir}/wireguard.key`, '{"privateKey":"x"}');
  t.is(f.read(), undefined, 'an unreadable key file is no key');
  fs.rmSync(dir, { recursive: true });
  t.is(keyDecision(undefined, 0), 'new');
  t.is(keyDecision(k, 3), 'keep');
  t.is(keyDecision(k, 4), 'new');
});

test('UAPI: get parsed, set rendered (removals first, allowed IPs replaced, keepalive)', (t) => {
  const a = newKey(0);
  const b = newKey(0);
  const get = [
    `private_key=${keyToHex(a.privateKey)}`,
    'listen_port=51820',
    `public_key=${keyToHex(b.publicKey)}`,
    'endpoint=198.18.0.12:51820',
    'allowed_ip=198.19.240.12/32',
    'last_handshake_time_sec=1700000000',
    'last_handshake_time_nsec=500000000',
    'rx_bytes=10',
    'tx_bytes=20',
    'persistent_keepalive_interval=25',
    'errno=0',
    '',
    '',
  ].join('\n');
  const g = parseGet(get);
  t.is(g.errno, 0);
  t.is(g.listenPort, 51820);
  t.deepEqual(g.peers, [
    {
      publicKey: b.publicKey,
      endpoint: '198.18.0.12:51820',
      allowedIps: ['198.19.240.12/32'],
      lastHandshakeMs: 1700000000500,
      rxBytes: 10,
      txBytes: 20,
      persistentKeepalive: 25,
    },
  ]);
  t.is(
    renderSet({
      privateKey: a.privateKey,
      removePeers: [b.publicKey],
      peers: [{ publicKey: a.publicKey, endpoint: '1.2.3.4:5', allowedIps: ['9.9.9.9/32'], persistentKeepalive: 25 }],
    }),
    `set=1\nprivate_key=${keyToHex(a.privateKey)}\npublic_key=${keyToHex(b.publicKey)}\nremove=true\npublic_key=${keyToHex(a.publicKey)}\nendpoint=1.2.3.4:5\nreplace_allowed_ips=true\nallowed_ip=9.9.9.9/32\npersistent_keepalive_interval=25\n\n`,
  );
});

test('peers: one per peer host with a key, its tunnel IP the only allowed IP; changed in place, a gone key removed', (t) => {
  const k1 = newKey(0).publicKey;
  const k2 = newKey(0).publicKey;
  const peers = [
    {
      name: 'h2',
      underlayIp: '198.18.0.12',
      slices: [],
      endpoints: [],
      wireguard: { publicKey: k1, port: 51820, tunnelIp: '198.19.240.12' },
    },
    { name: 'h3', underlayIp: '198.18.0.13', slices: [], endpoints: [] },
  ];
  const want = desiredWgPeers(peers, 'h1');
  t.deepEqual(want, [
    {
      publicKey: k1,
      endpoint: '198.18.0.12:51820',
      allowedIps: ['198.19.240.12/32'],
      persistentKeepalive: KEEPALIVE_S,
      host: 'h2',
    },
  ]);
  const cur = [
    {
      publicKey: k1,
      endpoint: '198.18.0.12:51820',
      allowedIps: ['198.19.240.12/32'],
      lastHandshakeMs: 1,
      rxBytes: 0,
      txBytes: 0,
      persistentKeepalive: KEEPALIVE_S,
    },
  ];
  t.is(diffWgPeers(cur, want), undefined, 'converged: nothing');
  // h2 rotated: the old key goes and the new one comes, in one set
  const rotated = desiredWgPeers([{ ...peers[0]!, wireguard: { ...peers[0]!.wireguard!, publicKey: k2 } }], 'h1');
  t.deepEqual(diffWgPeers(cur, rotated), {
    removePeers: [k1],
    peers: [
      {
        publicKey: k2,
        endpoint: '198.18.0.12:51820',
        allowedIps: ['198.19.240.12/32'],
        persistentKeepalive: KEEPALIVE_S,
      },
    ],
  });
  t.deepEqual(diffWgPeers(cur, []), { removePeers: [k1] });
});

test('transport rules: from WireGuard before the local table, to WireGuard from the veth; idempotent', (t) => {
  const fresh = [
    { priority: 0, table: 'local' },
    { priority: 32766, table: 'main' },
  ];
  const c = ruleChanges(fresh, 'wg0');
  t.deepEqual(c.add, [
    ['pref', String(LOCAL_PREF), 'lookup', 'local'],
    ['pref', String(PREF_FROM_WG), 'iif', 'wg0', 'lookup', '7402'],
    ['pref', String(PREF_TO_WG), 'iif', 'gremesh-wgk', 'lookup', '7401'],
  ]);
  t.deepEqual(c.del, [['pref', '0', 'lookup', 'local']]);
  const done = [
    { priority: PREF_FROM_WG, iif: 'wg0', table: '7402' },
    { priority: LOCAL_PREF, table: 'local' },
    { priority: PREF_TO_WG, iif: 'gremesh-wgk', table: '7401' },
    { priority: 32766, table: 'main' },
  ];
  t.deepEqual(ruleChanges(done, 'wg0'), { add: [], del: [] });
  const batch = transportBatch(
    { device: 'wg0', tunnelIp: '198.19.240.11', tunnelCidr: '198.19.240.0/22', mtu: 1500 },
    22,
    '02:00:00:00:00:01',
    c,
  );
  t.regex(batch, /^addr replace 198\.19\.240\.11\/22 dev gremesh-wgbr$/m);
  t.regex(batch, /^rule add pref 10 iif wg0 lookup 7402$/m);
  t.regex(batch, /^rule del pref 0 lookup local$/m);
  t.regex(batch, /^route replace 198\.19\.240\.0\/22 dev wg0 table 7401$/m);
  t.regex(batch, /^neigh replace 198\.19\.240\.11 lladdr 02:00:00:00:00:01 dev gremesh-wgk nud permanent\n$/m);
  t.true(
    batch.indexOf('rule add pref 20 lookup local') < batch.indexOf('rule del pref 0'),
    'local moved before it goes',
  );
});

const snap = (encrypted: boolean): Snapshot => ({
  revision: 1,
  host: 'h1',
  underlayIp: '198.18.0.11',
  networks: [{ name: 'default', cidr: '198.18.64.0/18', hostPrefixLen: 24, greKey: 1, mtu: 0 }],
  slices: [{ network: 'default', cidr: '198.18.64.0/24' }],
  peers: [
    {
      name: 'h2',
      underlayIp: '198.18.0.12',
      slices: [],
      endpoints: [],
      wireguard: { publicKey: newKey(0).publicKey, port: 51820, tunnelIp: '198.19.240.12' },
    },
    { name: 'h3', underlayIp: '198.18.0.13', slices: [], endpoints: [] },
  ],
  ...(encrypted
    ? {
        encryption: {
          tunnelIp: '198.19.240.11',
          tunnelCidr: '198.19.240.0/22',
          publicKey: '',
          rotation: 0,
          generation: 0,
        },
      }
    : {}),
});

test('bridge: encrypted GRE goes to tunnel IPs only, only once WireGuard is up (fail closed); MTU less its overhead', (t) => {
  const p = { bridge: 'gremesh0', datapath: 'netdev' as const, underlayMtu: 1500 };
  t.deepEqual(
    computeDesired(snap(false), p).tunnels.map((x) => x.remoteIp),
    ['198.18.0.12', '198.18.0.13'],
  );
  t.deepEqual(
    computeDesired(snap(true), { ...p, wireguardReady: () => false }).tunnels,
    [],
    'WireGuard down: no tunnel',
  );
  t.deepEqual(
    computeDesired(snap(true), { ...p, wireguardReady: () => true }).tunnels.map((x) => [x.peer, x.remoteIp]),
    [['h2', '198.19.240.12']],
    'up: to tunnel IPs, and a peer without a key has none',
  );
  t.is(computeDesired(snap(true), { ...p, wireguardReady: () => true }).mtu.default, 1398);
  t.is(containerMtu(0, tunnelMtu(snap(false), 1500)), 1458);
  // a mode this agent does not know fails closed: encrypted, with no tunnel IP (no tunnel)
  const m = applyWatchMessage(undefined, {
    revision: 1,
    host: 'h1',
    underlayIp: '198.18.0.11',
    full: true,
    baseRevision: 0,
    networks: [],
    slices: [],
    peers: [],
    removedPeers: [],
    encryption: 'quantum',
  });
  t.like(m, { encryption: { tunnelIp: '' } });
});

async function coordinator(encrypted = true) {
  const c = await Coordinator.create(new MemoryStore(), {
    now: () => 1_000_000,
    ...(encrypted ? { encryption: 'wireguard' as const, tunnelCidr: '198.19.240.0/22' } : {}),
  });
  await c.init({ name: 'default', cidr: '198.18.64.0/18', hostPrefixLen: 24, mtu: 0 });
  for (const [name, ip] of [
    ['h1', '198.18.0.11'],
    ['h2', '198.18.0.12'],
    ['h3', '198.18.0.13'],
  ] as const)
    await c.register({
      name,
      token: (await c.joinHost(name)).token,
      credential: '',
      underlayIp: ip,
      agentVersion: 't',
    });
  return c;
}

test('coordinator: a host publishes its own key; bad, duplicate and unencrypted refused; peers get key and tunnel IP', async (t) => {
  const c = await coordinator();
  const k1 = newKey(0).publicKey;
  t.is(c.wireguardOf('h1')?.tunnelIp, '198.19.240.11');
  t.is(c.peer('h1')?.wireguard, undefined, 'no key yet: no WireGuard peer');
  t.is(await code(() => c.setWireguardKey('h1', k1, 51820, 0)), 'OK');
  const rev = c.revision();
  t.is(await code(() => c.setWireguardKey('h1', k1, 51820, 0)), 'OK');
  t.is(c.revision(), rev, 'the same key again changes nothing');
  t.deepEqual(c.peer('h1')?.wireguard, { publicKey: k1, port: 51820, tunnelIp: '198.19.240.11' });
  t.regex(await code(() => c.setWireguardKey('h2', k1, 51820, 0)), /INVALID_ARGUMENT: .*already host h1's/);
  t.regex(
    await code(() => c.setWireguardKey('h2', 'not-a-key', 51820, 0)),
    /INVALID_ARGUMENT: .*not a WireGuard public key/,
  );
  t.regex(await code(() => c.setWireguardKey('h2', newKey(0).publicKey, 0, 0)), /INVALID_ARGUMENT: .*port/);
  t.is(c.peer('h2')?.wireguard, undefined, 'nothing half-made');
  const plain = await coordinator(false);
  t.regex(await code(() => plain.setWireguardKey('h1', k1, 51820, 0)), /FAILED_PRECONDITION/);
  t.is(plain.wireguardOf('h1'), undefined);
  t.regex(
    await code(() => c.createNetwork('inner', '198.19.240.0/24', 26, 0)),
    /INVALID_ARGUMENT: the tunnel CIDR 198\.19\.240\.0\/22 overlaps network inner/,
  );
  // a host whose underlay low bits collide with another's is refused at join
  t.regex(
    await code(async () =>
      c.register({
        name: 'h9',
        token: (await c.joinHost('h9')).token,
        credential: '',
        underlayIp: '10.0.0.11',
        agentVersion: 't',
      }),
    ),
    /INVALID_ARGUMENT: hosts h1 and h9 would share tunnel IP 198\.19\.240\.11/,
  );
});

test('coordinator: rotate-keys goes one host at a time; each starts when the one before published', async (t) => {
  const c = await coordinator();
  for (const h of ['h1', 'h2', 'h3']) await c.setWireguardKey(h, newKey(0).publicKey, 51820, 0);
  t.deepEqual(await c.rotateKeys(''), ['h1', 'h2', 'h3']);
  const asked = () => ['h1', 'h2', 'h3'].map((h) => c.wireguardOf(h)!.rotation);
  t.deepEqual(asked(), [1, 0, 0], 'h1 first');
  await c.setWireguardKey('h1', newKey(1).publicKey, 51820, 1);
  t.deepEqual(asked(), [1, 1, 0], 'then h2');
  await c.setWireguardKey('h2', newKey(1).publicKey, 51820, 1);
  await c.setWireguardKey('h3', newKey(1).publicKey, 51820, 1);
  t.deepEqual(asked(), [1, 1, 1]);
  t.regex(await code(() => c.rotateKeys('nope')), /NOT_FOUND/);
});

test('kernel datapath with encryption: the host takes GRE only from the WireGuard device', (t) => {
  t.regex(computeNftRuleset([], [], false, undefined, 'gremesh-wg'), /meta l4proto gre iifname != "gremesh-wg" drop/);
  t.notRegex(computeNftRuleset([], [], false), /l4proto gre iifname !=/);
});

test('coordinator: keys persist on SQLite across a restart', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'gm-enc-'));
  const o = { now: () => 1_000_000, encryption: 'wireguard' as const, tunnelCidr: '198.19.240.0/22' };
  const a = await Coordinator.create(new SqliteStore(`${dir}/db.sqlite`), o);
  await a.init({ name: 'default', cidr: '198.18.64.0/18', hostPrefixLen: 24, mtu: 0 });
  await a.register({
    name: 'h1',
    token: (await a.joinHost('h1')).token,
    credential: '',
    underlayIp: '198.18.0.11',
    agentVersion: 't',
  });
  const k = newKey(0).publicKey;
  await a.setWireguardKey('h1', k, 51820, 0);
  const b = await Coordinator.create(new SqliteStore(`${dir}/db.sqlite`), o);
  t.is(b.peer('h1')?.wireguard?.publicKey, k);
  fs.rmSync(dir, { recursive: true });
});
