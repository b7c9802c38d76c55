// The native OpenFlow writer against a real ovs-vswitchd: the same flows installed with
// ovs-ofctl on one bridge and natively on another must read back identically
// (ovs-ofctl dump-flows), deletions too; a bundle the switch refuses changes nothing.
import test from 'ava';
import { isRoot } from '../helpers/cli.js';
import { labUp, type TestLab } from '../helpers/lab.js';
import { computeDesired, computeFlows } from '../../agent/bridge/desired.js';
import { resolvePortNames } from '../../agent/ovs/driver.js';
import { act, flow, type Flow } from '../../agent/ovs/flows/flow.js';
import { renderFlow, renderKey } from '../../agent/ovs/flows/render.js';
import { OpenflowConnection } from '../../agent/ovs/openflow/connection.js';
import { silentLogger } from '../../common/log.js';
import type { LocalPort, Snapshot } from '../../agent/model.js';

const serial = isRoot ? test.serial : test.skip;
let lab: TestLab;
const mgmt = (br: string) => `${lab.dir}/h1/ovs/${br}.mgmt`;
const ofctl = (args: string[], input?: string) =>
  lab.exec('h1', ['ovs-ofctl', '-O', 'OpenFlow14', ...args], input === undefined ? {} : { input });
const dump = async (br: string) =>
  (await ofctl(['--no-stats', 'dump-flows', `unix:${mgmt(br)}`])).stdout
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith('OFPST_FLOW'))
    .sort();

/** every kind of flow computeFlows writes: 2 networks, gateways, containers, 3 peers with endpoints */
function realisticFlows(): Flow[] {
  const s: Snapshot = {
    revision: 7,
    host: 'h1',
    underlayIp: '198.18.0.11',
    networks: [
      { name: 'default', cidr: '198.18.64.0/18', hostPrefixLen: 24, greKey: 1, mtu: 0 },
      { name: 'blue', cidr: '198.19.0.0/16', hostPrefixLen: 24, greKey: 2, mtu: 0 },
    ],
    slices: [
      { network: 'default', cidr: '198.18.64.0/24' },
      { network: 'blue', cidr: '198.19.1.0/24' },
    ],
    peers: [2, 3, 4].map((i) => ({
      name: `h${i}`,
      underlayIp: `198.18.0.${10 + i}`,
      slices: [{ network: 'default', cidr: `198.18.${63 + i}.0/24` }],
      endpoints: [
        {
          network: 'default',
          host: `h${i}`,
          mac: `0a:58:c6:12:${(63 + i).toString(16)}:02`,
          ip: `198.18.${63 + i}.2`,
          containerId: '',
        },
        { network: 'blue', host: `h${i}`, mac: `0a:58:c6:13:0${i}:05`, ip: `198.19.${i}.5`, containerId: '' },
      ],
    })),
  };
  const d = computeDesired(s, { bridge: 'gremesh0', datapath: 'netdev', underlayMtu: 1500 });
  const locals: LocalPort[] = [
    ...d.gateways.map((g) => ({
      port: g.port,
      network: g.network,
      ip: g.ip,
      mac: g.mac,
      gateway: true,
      containerId: '',
    })),
    {
      port: 'gmaaaaaaaaaaa',
      network: 'default',
      ip: '198.18.64.2',
      mac: '0a:58:c6:12:40:02',
      gateway: false,
      containerId: 'a',
    },
    {
      port: 'gmbbbbbbbbbbb',
      network: 'blue',
      ip: '198.19.1.9',
      mac: '0a:58:c6:13:01:09',
      gateway: false,
      containerId: 'b',
    },
  ];
  const ports = [...d.tunnels.map((t) => t.port), ...locals.map((l) => l.port)];
  const ofports = new Map(ports.map((p, i) => [p, 10 + i]));
  return resolvePortNames(computeFlows(s, d, locals, new Set(d.tunnels.map((t) => t.port))), ofports);
}

test.before(async () => {
  if (!isRoot) return;
  lab = await labUp(1);
  for (const br of ['gmof-a', 'gmof-b'])
    await lab.exec('h1', [
      'ovs-vsctl',
      'add-br',
      br,
      '--',
      'set',
      'bridge',
      br,
      'datapath_type=netdev',
      'fail_mode=secure',
      'protocols=OpenFlow10,OpenFlow13,OpenFlow14',
    ]);
});
test.after.always(async () => {
  if (lab) await lab.down();
});

serial(
  'native bundles install exactly what ovs-ofctl installs; deletions too; a refused bundle changes nothing',
  async (t) => {
    const flows = realisticFlows();
    t.true(flows.length > 30, `${flows.length} flows`);
    const conn = new OpenflowConnection({ socket: mgmt('gmof-b'), log: silentLogger, onReconnect: () => {} });
    conn.start();
    try {
      for (let i = 0; i < 100 && !conn.connected; i++) await new Promise((r) => setTimeout(r, 20));
      t.true(conn.connected, 'HELLO at OpenFlow 1.4');
      await ofctl(['--bundle', 'add-flows', `unix:${mgmt('gmof-a')}`, '-'], `${flows.map(renderFlow).join('\n')}\n`);
      await conn.updateFlows([], flows);
      const a = await dump('gmof-a');
      t.is(a.length, flows.length);
      t.deepEqual(await dump('gmof-b'), a, 'same flows, same matches, same actions');

      // a delta: three flows go, one changes its actions, one is new
      const gone = [flows[0]!, flows[5]!, flows[flows.length - 2]!];
      const changed: Flow = { ...flows[3]!, actions: [] };
      const added = flow('forward', 90, { reg7: 0, reg6: 1, dlDst: '0a:58:00:00:00:77' }, [
        act.setTunnel(1),
        act.output(10),
      ]);
      const lines = [
        ...gone.map((k) => `delete_strict ${renderKey(k)}`),
        `add ${renderFlow(changed)}`,
        `add ${renderFlow(added)}`,
      ];
      await ofctl(['--bundle', 'add-flows', `unix:${mgmt('gmof-a')}`, '-'], `${lines.join('\n')}\n`);
      await conn.updateFlows(gone, [changed, added]);
      const a2 = await dump('gmof-a');
      t.is(a2.length, flows.length - 3 + 1);
      t.deepEqual(await dump('gmof-b'), a2, 'the same delta gives the same table');

      // a port number beyond OVS's range is refused by the switch: the whole bundle is discarded
      const fresh = flow('forward', 90, { reg7: 0, reg6: 1, dlDst: '0a:58:00:00:00:78' }, [act.output(11)]);
      const bad = flow('forward', 80, { reg6: 1, dlDst: '0a:58:00:00:00:79' }, [act.output(70000)]);
      await t.throwsAsync(conn.updateFlows([added], [fresh, bad]), { message: /refused|not committed/ });
      t.deepEqual(await dump('gmof-b'), a2, 'nothing of the refused bundle applied');
      // the connection is still good afterwards
      await conn.updateFlows([], [fresh]);
      t.is((await dump('gmof-b')).length, a2.length + 1);
      // a flow the writer cannot encode (a port still by name) is an error before anything is sent
      await t.throwsAsync(conn.updateFlows([], [flow('classify', 1, { inPort: 'gmnosuchport' })]), {
        message: /not resolved/,
      });
    } finally {
      conn.stop();
    }
  },
);
