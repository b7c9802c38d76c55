import test from 'ava';
import { parseOvsState } from '../../agent/ovs/ovsdb/rows.js';
import { applyWatchMessage, type WatchMessage } from '../../agent/control-plane/snapshot.js';
import { nextBackoff } from '../../common/backoff.js';
import { resolveAgentConfig } from '../../agent/config.js';

test('parseOvsState: bridges, ports and interfaces from one ovs-vsctl JSON call', (t) => {
  const out = [
    JSON.stringify({
      headings: ['_uuid', 'name', 'datapath_type', 'fail_mode', 'protocols', 'external_ids', 'ports'],
      data: [
        [
          ['uuid', 'b1'],
          'gremesh0',
          'netdev',
          'secure',
          ['set', ['OpenFlow10', 'OpenFlow14']],
          ['map', [['gremesh-owner', 'agent']]],
          [
            'set',
            [
              ['uuid', 'p1'],
              ['uuid', 'p2'],
            ],
          ],
        ],
      ],
    }),
    JSON.stringify({
      headings: ['_uuid', 'name', 'interfaces', 'external_ids'],
      data: [
        [['uuid', 'p1'], 'gre-c612000c', ['uuid', 'i1'], ['map', []]],
        [['uuid', 'p2'], 'ep1', ['uuid', 'i2'], ['map', []]],
      ],
    }),
    JSON.stringify({
      headings: [
        '_uuid',
        'name',
        'type',
        'ofport',
        'options',
        'external_ids',
        'bfd_status',
        'mac_in_use',
        'mtu',
        'error',
      ],
      data: [
        [
          ['uuid', 'i1'],
          'gre-c612000c',
          'gre',
          3,
          [
            'map',
            [
              ['remote_ip', '198.18.0.12'],
              ['key', 'flow'],
            ],
          ],
          ['map', [['gremesh-owner', 'agent']]],
          [
            'map',
            [
              ['state', 'up'],
              ['forwarding', 'true'],
            ],
          ],
          'aa:bb:cc:dd:ee:ff',
          ['set', []],
          ['set', []],
        ],
        [
          ['uuid', 'i2'],
          'ep1',
          '',
          4,
          ['map', []],
          ['map', [['gremesh-network', 'default']]],
          ['map', []],
          '0a:58:c6:12:40:0a',
          1458,
          ['set', []],
        ],
        [
          ['uuid', 'i3'],
          'orphan',
          '',
          ['set', []],
          ['map', []],
          ['map', []],
          ['map', []],
          ['set', []],
          ['set', []],
          'could not open',
        ],
      ],
    }),
  ].join('\n');
  const s = parseOvsState(out);
  t.deepEqual(s.bridges[0]!.protocols, ['OpenFlow10', 'OpenFlow14']);
  const gre = s.interfaces.find((i) => i.name === 'gre-c612000c')!;
  t.is(gre.bridge, 'gremesh0');
  t.is(gre.ofport, 3);
  t.is(gre.options.remote_ip, '198.18.0.12');
  t.is(gre.bfdStatus.state, 'up');
  const o = s.interfaces.find((i) => i.name === 'orphan')!;
  t.is(o.bridge, undefined);
  t.is(o.ofport, -1);
  t.is(o.error, 'could not open');
  t.throws(() => parseOvsState('{"headings":[],"data":[]}'));
});

const msg = (m: Partial<WatchMessage>): WatchMessage => ({
  revision: 1,
  host: 'h1',
  underlayIp: '198.18.0.11',
  full: true,
  baseRevision: 0,
  networks: [],
  slices: [],
  peers: [],
  removedPeers: [],
  ...m,
});
const peer = (name: string) => ({ name, underlayIp: '198.18.0.1', slices: [], endpoints: [] });

test('applyWatchMessage: full replaces, delta applies on its base, a gap asks for a resync', (t) => {
  const a = applyWatchMessage(undefined, msg({ revision: 5, peers: [peer('h3'), peer('h2')] }));
  t.not(a, 'resync');
  const s = a as Exclude<typeof a, 'resync'>;
  t.deepEqual(
    s.peers.map((p) => p.name),
    ['h2', 'h3'],
  );
  const b = applyWatchMessage(
    s,
    msg({ revision: 7, full: false, baseRevision: 5, peers: [peer('h4')], removedPeers: ['h2'] }),
  );
  t.deepEqual(
    (b as typeof s).peers.map((p) => p.name),
    ['h3', 'h4'],
  );
  t.is(applyWatchMessage(s, msg({ revision: 9, full: false, baseRevision: 6 })), 'resync');
  t.is(applyWatchMessage(undefined, msg({ revision: 9, full: false, baseRevision: 6 })), 'resync');
});

test('backoff doubles, is capped and jittered', (t) => {
  t.is(
    nextBackoff(200, 200, 5000, () => 0.5),
    400,
  );
  t.is(
    nextBackoff(4000, 200, 5000, () => 0.5),
    5000,
  );
  t.is(
    nextBackoff(5000, 200, 5000, () => 0),
    4000,
  );
  t.is(
    nextBackoff(5000, 200, 5000, () => 1),
    6000,
  );
});

test('agent config: required flags and one-line errors', (t) => {
  const ok = resolveAgentConfig(
    {},
    { coordinator: '198.18.0.2:7420', name: 'h1', 'join-token': 'abcdef.0123456789abcdef' },
  );
  t.is(ok.bridge, 'gremesh0');
  t.is(ok.datapath, 'system');
  t.is(resolveAgentConfig({ GREMESH_DATAPATH: 'netdev' }, { coordinator: 'c:1', name: 'h1' }).datapath, 'netdev');
  t.throws(() => resolveAgentConfig({}, { name: 'h1' }), { message: /--coordinator/ });
  t.throws(() => resolveAgentConfig({}, { coordinator: 'c:1' }), { message: /--name is required/ });
  t.throws(() => resolveAgentConfig({}, { coordinator: 'c:1', name: 'h1', 'join-token': 'x' }), {
    message: /--join-token/,
  });
  t.throws(() => resolveAgentConfig({}, { coordinator: 'c:1', name: 'h1', datapath: 'dpdk' }), {
    message: /--datapath/,
  });
  t.throws(() => resolveAgentConfig({}, { coordinator: 'c:1', name: 'h1', bridge: 'a-very-long-bridge-name' }), {
    message: /--bridge/,
  });
  t.throws(() => resolveAgentConfig({}, { coordinator: 'c:1', name: 'h1', 'underlay-ip': '1.2.3' }), {
    message: /--underlay-ip/,
  });
});
