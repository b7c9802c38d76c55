import test from 'ava';
import { computeFlows } from '../../agent/bridge/desired.js';
import { act, flow, resolvePorts } from '../../agent/ovs/flows/flow.js';
import { PRIORITY, TABLES, TABLE_NAMES } from '../../agent/ovs/flows/pipeline.js';
import { renderFlow } from '../../agent/ovs/flows/render.js';
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

test('the pipeline names its tables once: numbers, printed names, priorities', (t) => {
  t.deepEqual(TABLES, { classify: 0, portSecurity: 10, forward: 20 });
  t.deepEqual(TABLE_NAMES, { 0: 'classify', 10: 'port security', 20: 'forward' });
  t.is(PRIORITY.miss, 0);
  t.true(PRIORITY.arpResponder > PRIORITY.port && PRIORITY.port > PRIORITY.remoteMac);
  t.true(PRIORITY.remoteMac > PRIORITY.flood && PRIORITY.flood > PRIORITY.unknownUnicast);
});
