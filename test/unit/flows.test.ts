import test from 'ava';
import { computeFlows } from '../../agent/bridge/desired.js';
import { act, flow, flowIdentity, flowKey, resolvePorts, type Flow } from '../../agent/ovs/flows/flow.js';
import { PRIORITY, REG_DST_GROUP, REG_SRC_GROUP, TABLES, TABLE_NAMES } from '../../agent/ovs/flows/pipeline.js';
import { renderFlow, renderKey } from '../../agent/ovs/flows/render.js';
import { encodeFlowMod, flowMod } from '../../agent/ovs/openflow/codec.js';
import { parseFlow } from '../../agent/ovs/openflow/parse-text.js';
import { FLOW_SCENARIOS } from '../helpers/flow-fixtures.js';
import { GOLDEN_FLOWS } from '../helpers/flows-golden.js';

const scenarios = Object.entries(FLOW_SCENARIOS);
const typed = (name: string) => {
  const sc = FLOW_SCENARIOS[name]!;
  return computeFlows(sc.s, sc.d, sc.locals, sc.present);
};
/** the delete_strict key as the text-era driver cut it out of a flow line */
const oldKey = (line: string) =>
  line
    .replace(/,actions=.*$/, '')
    .split(',')
    .filter((f) => !f.startsWith('cookie='))
    .join(',');

test('render(computeFlows) is, line for line, the text the agent wrote before flows were typed (by name and by number)', (t) => {
  for (const [name, sc] of scenarios) {
    const flows = typed(name);
    t.deepEqual(flows.map(renderFlow), GOLDEN_FLOWS[name], name);
    t.deepEqual(resolvePorts(flows, sc.ofports).map(renderFlow), GOLDEN_FLOWS[`${name}/resolved`], `${name} resolved`);
  }
});

test('the scenarios make every kind of flow the pipeline has', (t) => {
  const kinds = new Set(
    scenarios.flatMap(([name]) =>
      typed(name).map((f) => `${f.table}/${f.priority}/${Object.keys(f.match).sort().join('+')}`),
    ),
  );
  for (const k of [
    'classify/100/inPort',
    'classify/100/inPort+tunId',
    'portSecurity/100/dlSrc+inPort',
    'portSecurity/100/dlSrc+ethType+inPort+nwSrc',
    'portSecurity/100/arpSha+arpSpa+dlSrc+ethType+inPort',
    'forward/110/arpOp+arpTpa+ethType+reg6+reg7',
    'forward/100/dlDst+reg6',
    'forward/90/dlDst+reg6+reg7',
    'forward/50/dlDst+dlDstMask+reg6+reg7',
    'forward/40/reg6+reg7',
    'classify/0/',
    'portSecurity/0/',
    'forward/0/',
  ])
    t.true(kinds.has(k), k);
});

test('a typed flow encodes to the very bytes its old text did (add and delete_strict)', (t) => {
  let n = 0;
  for (const [name, sc] of scenarios) {
    const flows = resolvePorts(typed(name), sc.ofports);
    const lines = GOLDEN_FLOWS[`${name}/resolved`]!;
    flows.forEach((f, i) => {
      t.deepEqual(flowMod(f, 'add', i + 1), encodeFlowMod(parseFlow(lines[i]!), 'add', i + 1), lines[i]);
      t.deepEqual(
        flowMod(f, 'delete_strict', i + 1),
        encodeFlowMod(parseFlow(oldKey(lines[i]!)), 'delete_strict', i + 1),
        oldKey(lines[i]!),
      );
      n++;
    });
  }
  t.true(n > 100, `${n} flows compared`);
});

test('a flow the encoder cannot send is refused: a port by name, a bad MAC, an ARP field without arp', (t) => {
  t.throws(() => flowMod(flow('classify', 100, { inPort: 'gmaaaaaaaaaaa' }), 'add', 1), { message: /not resolved/ });
  t.throws(() => flowMod(flow('forward', 100, {}, [act.output('gre-c612000c')]), 'add', 1), {
    message: /not resolved/,
  });
  t.throws(() => flowMod(flow('forward', 100, { dlDst: 'zz' }), 'add', 1), { message: /not a MAC/ });
  t.throws(() => flowMod(flow('forward', 100, { arpTpa: '1.2.3.4' }), 'add', 1), { message: /without ip\/arp/ });
  t.throws(() => flowMod(flow('forward', 100, {}, [act.load('NXM_OF_ARP_OP', 0x1ffff)]), 'add', 1), {
    message: /too large/,
  });
});

/** the policy vocabulary: reg2/reg3, nw_proto, tp_dst (masked), ct_state, ct */
const POLICY_FLOWS: [Flow, string][] = [
  [
    flow('forward', 100, { reg6: 1, dlDst: '0a:58:c6:12:40:02' }, [
      act.load(REG_DST_GROUP, 17),
      act.resubmit('policy'),
    ]),
    'table=20,priority=100,reg6=1,dl_dst=0a:58:c6:12:40:02,actions=load:17->NXM_NX_REG3[],resubmit(,30)',
  ],
  [
    flow('policy', 100, { reg6: 1, ethType: 'ip', nwSrc: '198.18.64.2' }, [
      act.load(REG_SRC_GROUP, 16),
      act.ct({ commit: false, zone: 1, table: 'policyRules' }),
    ]),
    'table=30,priority=100,reg6=1,ip,nw_src=198.18.64.2,actions=load:16->NXM_NX_REG2[],ct(zone=1,table=40)',
  ],
  [
    flow('policyRules', 64000, { reg6: 1, ethType: 'ip', ctState: { on: ['est', 'trk'] } }, [act.resubmit('deliver')]),
    'table=40,priority=64000,reg6=1,ip,ct_state=+trk+est,actions=resubmit(,50)',
  ],
  [
    flow('policyRules', 63000, { reg6: 1, ethType: 'ip', ctState: { on: ['trk', 'inv'] } }),
    'table=40,priority=63000,reg6=1,ip,ct_state=+trk+inv,actions=drop',
  ],
  [
    flow(
      'policyRules',
      20001,
      {
        reg6: 1,
        reg2: 16,
        reg3: 17,
        ethType: 'ip',
        ipProto: 6,
        tpDst: 0x1f90,
        tpDstMask: 0xfff0,
        ctState: { on: ['new', 'trk'], off: ['est'] },
      },
      [act.ct({ commit: true, zone: 1 }), act.resubmit('deliver')],
    ),
    'table=40,priority=20001,reg6=1,reg2=16,reg3=17,ip,nw_proto=6,tp_dst=0x1f90/0xfff0,ct_state=+trk+new-est,actions=ct(commit,zone=1),resubmit(,50)',
  ],
  [
    flow('policyRules', 20002, { reg6: 1, reg3: 3, ethType: 'ip', ipProto: 17, tpDst: 53, ctState: { on: ['trk'] } }, [
      act.ct({ commit: true, zone: 1, table: 'deliver' }),
    ]),
    'table=40,priority=20002,reg6=1,reg3=3,ip,nw_proto=17,tp_dst=53,ct_state=+trk,actions=ct(commit,zone=1,table=50)',
  ],
  [
    flow('policyRules', 20003, { reg6: 1, ethType: 'ip', ipProto: 1, ctState: { on: ['trk', 'new'] } }, []),
    'table=40,priority=20003,reg6=1,ip,nw_proto=1,ct_state=+trk+new,actions=drop',
  ],
  [
    flow('deliver', 100, { reg6: 1, dlDst: '0a:58:c6:12:40:02' }, [act.output(12)]),
    'table=50,priority=100,reg6=1,dl_dst=0a:58:c6:12:40:02,actions=output:12',
  ],
];

test('the policy vocabulary renders as ovs-ofctl text, and that text parses back to the very same bytes', (t) => {
  for (const [f, text] of POLICY_FLOWS) {
    t.is(renderFlow(f), `cookie=0x67726d,${text}`);
    t.deepEqual(encodeFlowMod(parseFlow(renderFlow(f)), 'add', 3), flowMod(f, 'add', 3), text);
    t.deepEqual(encodeFlowMod(parseFlow(renderKey(f)), 'delete_strict', 4), flowMod(f, 'delete_strict', 4), text);
  }
});

test('ct_state keys: the same flags in any order are one key; set, clear, commit and table make another', (t) => {
  const rule = (ctState: { on: ('trk' | 'new' | 'est')[]; off?: ('trk' | 'new' | 'est')[] }, commit = true) =>
    flow('policyRules', 1, { reg6: 1, ethType: 'ip', ctState }, [act.ct({ commit, zone: 1 })]);
  const a = rule({ on: ['trk', 'new'], off: ['est'] });
  t.is(flowKey(a), flowKey(rule({ on: ['new', 'trk', 'new'], off: ['est'] })));
  t.is(flowIdentity(a), flowIdentity(rule({ on: ['new', 'trk'], off: ['est'] })));
  t.is(renderKey(a), renderKey(rule({ on: ['new', 'trk'], off: ['est'] })));
  t.is(flowKey(rule({ on: ['trk'] })), flowKey(rule({ on: ['trk'], off: [] })));
  t.not(flowKey(a), flowKey(rule({ on: ['trk', 'new'] })));
  t.not(flowKey(a), flowKey(rule({ on: ['trk', 'new', 'est'] })));
  t.is(flowKey(a), flowKey(rule({ on: ['trk', 'new'], off: ['est'] }, false)), 'actions are not the key');
  t.not(flowIdentity(a), flowIdentity(rule({ on: ['trk', 'new'], off: ['est'] }, false)));
  const ct = (c: Parameters<typeof act.ct>[0]) => flowIdentity(flow('policy', 1, { ethType: 'ip' }, [act.ct(c)]));
  t.not(ct({ commit: false, zone: 1 }), ct({ commit: false, zone: 1, table: 'policyRules' }));
  t.not(ct({ commit: false, zone: 1 }), ct({ commit: false, zone: 2 }));
  const tp = (m: number | undefined) =>
    flowKey(
      flow('policyRules', 1, { ethType: 'ip', ipProto: 6, tpDst: 80, ...(m === undefined ? {} : { tpDstMask: m }) }),
    );
  t.not(tp(undefined), tp(0xfff0));
});

test('a policy flow OVS would refuse is refused here: L4 without its protocol, ct without ip, commit of invalid', (t) => {
  const refused: [Flow, RegExp][] = [
    [flow('policyRules', 1, { ipProto: 6 }), /without ip\/arp/],
    [flow('policyRules', 1, { ethType: 'ip', tpDst: 80 }), /tp_dst without nw_proto/],
    [flow('policyRules', 1, { ethType: 'ip', ipProto: 1, tpDst: 80 }), /tp_dst without nw_proto/],
    [flow('policyRules', 1, { ethType: 'ip', ipProto: 6, tpDstMask: 0xff00 }), /mask without tp_dst/],
    [flow('policyRules', 1, { ethType: 'ip', ipProto: 6, tpDst: 0x1234, tpDstMask: 0xff00 }), /outside the mask/],
    [flow('policyRules', 1, { ethType: 'ip', ipProto: 6, tpDst: 65536 }), /out of range/],
    [flow('policyRules', 1, { reg2: -1 }), /out of range/],
    [flow('policyRules', 1, { reg3: 2 ** 32 }), /out of range/],
    [flow('policyRules', 1, { ctState: { on: ['trk'], off: ['trk'] } }), /both set and clear/],
    [flow('policyRules', 1, { ctState: { on: ['trk', 'snat' as never] } }), /not a conntrack flag/],
    [
      flow('policy', 1, { reg6: 1 }, [act.ct({ commit: false, zone: 1, table: 'policyRules' })]),
      /ct action without ip/,
    ],
    [
      flow('policyRules', 1, { ethType: 'ip', ctState: { on: ['trk', 'inv'] } }, [act.ct({ commit: true, zone: 1 })]),
      /\+inv/,
    ],
    [flow('policy', 1, { ethType: 'ip' }, [act.ct({ commit: true, zone: 65536 })]), /ct zone: 65536 is out of range/],
    [flow('policy', 1, { ethType: 'ip' }, [act.load(REG_SRC_GROUP, 2n ** 32n)]), /too large/],
  ];
  for (const [f, re] of refused) t.throws(() => flowMod(f, 'add', 1), { message: re }, renderFlow(f));
  // a ct without commit is fine on an invalid packet (it is how +inv is learnt)
  t.notThrows(() =>
    flowMod(
      flow('policyRules', 1, { ethType: 'ip', ctState: { on: ['trk', 'inv'] } }, [act.ct({ commit: false, zone: 1 })]),
      'add',
      1,
    ),
  );
});

test('the pipeline names its tables once: numbers, printed names, priorities', (t) => {
  t.deepEqual(TABLES, {
    classify: 0,
    portSecurity: 10,
    forward: 20,
    ndReply: 25,
    policy: 30,
    policyRules: 40,
    deliver: 50,
  });
  t.deepEqual(TABLE_NAMES, {
    0: 'classify',
    10: 'port security',
    20: 'forward',
    25: 'neighbour advertisement',
    30: 'policy: source group, conntrack',
    40: 'policy rules',
    50: 'deliver',
  });
  t.is(PRIORITY.miss, 0);
  t.true(PRIORITY.arpResponder > PRIORITY.port && PRIORITY.port > PRIORITY.remoteMac);
  t.true(PRIORITY.remoteMac > PRIORITY.flood && PRIORITY.flood > PRIORITY.unknownUnicast);
});
