// The native OpenFlow writer against a real ovs-vswitchd: the same flows installed with
// ovs-ofctl on one bridge and natively on another must read back identically
// (ovs-ofctl dump-flows), deletions too; a bundle the switch refuses changes nothing.
// Besides what computeFlows writes, hand-made flows of the policy vocabulary (reg2/reg3,
// nw_proto, tp_dst masked and not, ct_state, ct with and without commit and table).
import test from 'ava';
import { isRoot } from '../helpers/cli.js';
import { labUp, type TestLab } from '../helpers/lab.js';
import { computeDesired, computeFlows } from '../../agent/bridge/desired.js';
import { gatewayPorts } from '../helpers/flow-fixtures.js';
import { resolvePortNames } from '../../agent/ovs/driver.js';
import { act, flow, type Flow } from '../../agent/ovs/flows/flow.js';
import { REG_DST_GROUP, REG_SRC_GROUP } from '../../agent/ovs/flows/pipeline.js';
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
    ...gatewayPorts(d),
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

/** the policy vocabulary by hand, for network key 1 in conntrack zone 5 */
function policyFlows(): Flow[] {
  const ip = { reg6: 1, ethType: 'ip' } as const;
  const fresh = { ...ip, ctState: { on: ['trk', 'new'] } } as const;
  const commit = [act.ct({ commit: true, zone: 5 }), act.resubmit('deliver')];
  return [
    flow('forward', 101, { reg6: 1, dlDst: '0a:58:c6:12:40:0a' }, [
      act.load(REG_DST_GROUP, 17),
      act.resubmit('policy'),
    ]),
    flow('policy', 100, { ...ip, nwSrc: '198.18.64.11' }, [
      act.load(REG_SRC_GROUP, 16),
      act.ct({ commit: false, zone: 5, table: 'policyRules' }),
    ]),
    flow('policy', 50, ip, [act.load(REG_SRC_GROUP, 2), act.ct({ commit: false, zone: 5, table: 'policyRules' })]),
    flow('policy', 10, { reg6: 1 }, [act.resubmit('deliver')]),
    flow('policyRules', 64000, { ...ip, ctState: { on: ['trk', 'est'] } }, [act.resubmit('deliver')]),
    flow('policyRules', 64000, { ...ip, ctState: { on: ['trk', 'rel'] } }, [act.resubmit('deliver')]),
    flow('policyRules', 63000, { ...ip, ctState: { on: ['trk', 'inv'] } }),
    flow('policyRules', 20001, { ...fresh, reg2: 16, reg3: 17, ipProto: 6, tpDst: 0x1f90, tpDstMask: 0xfff0 }, commit),
    flow('policyRules', 20002, { ...fresh, reg3: 17, ipProto: 6, tpDst: 22 }, commit),
    flow('policyRules', 20003, { ...fresh, reg2: 2, ipProto: 17, tpDst: 53 }, commit),
    flow('policyRules', 20004, { ...fresh, ipProto: 17, tpDst: 0x100, tpDstMask: 0xff00 }, []),
    flow('policyRules', 20005, { ...ip, ipProto: 1, ctState: { on: ['trk', 'new'], off: ['est', 'rpl'] } }, [
      act.ct({ commit: true, zone: 5, table: 'deliver' }),
    ]),
    flow('policyRules', 1, ip, commit),
    flow('deliver', 100, { reg6: 1, dlDst: '0a:58:c6:12:40:0a' }, [act.output(12)]),
  ];
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
    const policy = policyFlows();
    const flows = [...realisticFlows(), ...policy];
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
      // the policy flows are there as themselves (OVS prints them its own way: tcp, +est+trk, table before zone)
      const b = (await dump('gmof-b')).join('\n');
      for (const s of [
        'ct_state=+new+trk,tcp,reg2=0x10,reg3=0x11,reg6=0x1,tp_dst=0x1f90/0xfff0 actions=ct(commit,zone=5),resubmit(,50)',
        'ct_state=+new+trk,tcp,reg3=0x11,reg6=0x1,tp_dst=22 actions=ct(commit,zone=5),resubmit(,50)',
        'ct_state=+new+trk,udp,reg2=0x2,reg6=0x1,tp_dst=53 actions=ct(commit,zone=5),resubmit(,50)',
        'ct_state=+new+trk,udp,reg6=0x1,tp_dst=0x100/0xff00 actions=drop',
        'ct_state=+new-est-rpl+trk,icmp,reg6=0x1 actions=ct(commit,table=50,zone=5)',
        'ct_state=+est+trk,ip,reg6=0x1 actions=resubmit(,50)',
        'ct_state=+inv+trk,ip,reg6=0x1 actions=drop',
        'ip,reg6=0x1,nw_src=198.18.64.11 actions=load:0x10->NXM_NX_REG2[],ct(table=40,zone=5)',
        'reg6=0x1,dl_dst=0a:58:c6:12:40:0a actions=load:0x11->NXM_NX_REG3[],resubmit(,30)',
      ])
        t.true(b.includes(s), s);

      // a delta: three flows go, one changes its actions, one is new; of the policy flows one
      // goes (masked tp_dst and ct_state: delete_strict must name the same masks) and one changes
      const gone = [flows[0]!, flows[5]!, flows[flows.length - 2]!, policy[7]!];
      const changed: Flow = { ...flows[3]!, actions: [] };
      const changedCt: Flow = { ...policy[1]!, actions: [act.ct({ commit: true, zone: 6, table: 'policyRules' })] };
      const added = flow('forward', 90, { reg7: 0, reg6: 1, dlDst: '0a:58:00:00:00:77' }, [
        act.setTunnel(1),
        act.output(10),
      ]);
      const lines = [
        ...gone.map((k) => `delete_strict ${renderKey(k)}`),
        `add ${renderFlow(changed)}`,
        `add ${renderFlow(changedCt)}`,
        `add ${renderFlow(added)}`,
      ];
      await ofctl(['--bundle', 'add-flows', `unix:${mgmt('gmof-a')}`, '-'], `${lines.join('\n')}\n`);
      await conn.updateFlows(gone, [changed, changedCt, added]);
      const a2 = await dump('gmof-a');
      t.is(a2.length, flows.length - 4 + 1);
      t.false(a2.join('\n').includes('tp_dst=0x1f90/0xfff0'), 'the masked flow went');
      t.true(a2.join('\n').includes('ct(commit,table=40,zone=6)'), 'the ct flow changed');
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
      // ct without ip in the match, or committing an invalid packet: the switch refuses them
      // (OFPBAC_MATCH_INCONSISTENT), so the writer refuses them before sending
      const inconsistent = [
        flow('policy', 1, { reg6: 1 }, [act.ct({ commit: false, zone: 5, table: 'policyRules' })]),
        flow('policyRules', 2, { reg6: 1, ethType: 'ip', ctState: { on: ['trk', 'inv'] } }, [
          act.ct({ commit: true, zone: 5 }),
        ]),
      ];
      for (const f of inconsistent) {
        const r = await lab.exec(
          'h1',
          ['ovs-ofctl', '-O', 'OpenFlow14', 'add-flow', `unix:${mgmt('gmof-a')}`, renderFlow(f)],
          { reject: false },
        );
        t.not(r.exitCode, 0, renderFlow(f));
        t.regex(r.stderr, /MATCH_INCONSISTENT/, renderFlow(f));
        await t.throwsAsync(conn.updateFlows([], [f]), { message: /ct action without ip|\+inv/ });
      }
      t.is((await dump('gmof-b')).length, a2.length + 1, 'nothing of them applied');
    } finally {
      conn.stop();
    }
  },
);
