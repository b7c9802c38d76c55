// Policy: the rule vocabulary (common/policy.ts), the coordinator's rules (kept on the
// network record, on memory and SQLite), and the flows an agent writes for them: linear
// in endpoints + groups + rules, never endpoints x rules.
import test from 'ava';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { checkRule, describeRule, normalizeGroup, parsePortRange } from '../../common/policy.js';
import { computeDesired, computeFlows } from '../../agent/bridge/desired.js';
import { gatewayPorts } from '../helpers/flow-fixtures.js';
import { POLICY_PRIORITY, policyCounts, policyStepOf, portMasks } from '../../agent/bridge/policy-flows.js';
import { renderFlow } from '../../agent/ovs/flows/render.js';
import type { LocalPort, Snapshot } from '../../agent/model.js';
import { applyWatchMessage } from '../../agent/control-plane/snapshot.js';
import { Coordinator } from '../../coordinator/coordinator.js';
import { outcome } from '../helpers/outcome.js';
import { MemoryStore } from '../../coordinator/memory-store.js';
import { SqliteStore } from '../../coordinator/sqlite-store.js';
import { ruleFromFlags } from '../../coordinator/cli/commands/policy.js';
import type { PolicyRule } from '../../common/policy.js';

const rule = (o: Partial<PolicyRule> = {}): Omit<PolicyRule, 'id'> => ({
  action: 'allow',
  from: 'web',
  to: 'db',
  proto: 'tcp',
  portMin: 5432,
  portMax: 5432,
  ...o,
});

test('groups and rules: names normalized, reserved words and bad ranges refused in words', (t) => {
  t.is(normalizeGroup(' Web '), 'web');
  t.is(normalizeGroup('any'), undefined);
  t.is(normalizeGroup('a b'), undefined);
  t.is(normalizeGroup('x'.repeat(64)), undefined);
  t.deepEqual(parsePortRange('8000-8100'), { min: 8000, max: 8100 });
  for (const bad of ['0', '70000', '9-3', 'x', '1-2-3']) t.is(parsePortRange(bad), undefined, bad);
  t.deepEqual((checkRule(rule({ from: 'WEB' })) as { rule: PolicyRule }).rule.from, 'web');
  t.regex(checkRule(rule({ to: 'outside' })).problem!, /not egress/);
  t.regex(checkRule(rule({ proto: 'icmp' })).problem!, /--port needs --proto tcp or udp/);
  t.regex(checkRule(rule({ proto: 'sctp' as 'tcp' })).problem!, /--proto must be/);
  t.regex(checkRule(rule({ from: 'bad group!' })).problem!, /no group name/);
  t.is(describeRule(rule({ portMax: 5433 })), 'allow web -> db tcp/5432-5433');
  t.throws(() => ruleFromFlags('allow', { network: 'n', from: 'a', to: 'b', port: '99999' }), { message: /--port/ });
});

test('port ranges split into the fewest value/mask pieces, covering exactly the range', (t) => {
  t.deepEqual(portMasks(80, 80), [{ value: 80, mask: 0xffff }]);
  t.deepEqual(portMasks(1, 65535).length, 16);
  for (const [lo, hi] of [
    [1000, 1999],
    [8000, 8100],
    [1, 65535],
    [443, 445],
  ] as const) {
    const pieces = portMasks(lo, hi);
    const covered = new Set<number>();
    for (const p of pieces) for (let v = 0; v <= 0xffff; v++) if ((v & p.mask) === p.value) covered.add(v);
    t.is(covered.size, hi - lo + 1, `${lo}-${hi}`);
    t.true([...covered].every((v) => v >= lo && v <= hi));
  }
});

async function coordinatorOn(store: MemoryStore | SqliteStore) {
  const c = await Coordinator.create(store, { now: () => 1_000_000 });
  await c.init({ name: 'default', cidr: '198.18.64.0/18', hostPrefixLen: 24, mtu: 0 });
  return c;
}
const code = outcome;

test('coordinator: rules are added once, listed, deleted; isolation set; bad input refused and nothing changed', async (t) => {
  const c = await coordinatorOn(new MemoryStore());
  const rev = c.revision();
  const r1 = await c.addPolicyRule('default', rule());
  t.is(r1.id, 'r1');
  t.is((await c.addPolicyRule('default', rule({ from: 'WEB' }))).id, 'r1', 'the same rule is one rule');
  const r2 = await c.addPolicyRule('default', rule({ action: 'deny', from: 'any', proto: '', portMin: 0, portMax: 0 }));
  t.is(r2.id, 'r2');
  t.is(c.revision(), rev + 2);
  t.regex(await code(() => c.addPolicyRule('nope', rule())), /^NOT_FOUND: no network named "nope"/);
  t.regex(await code(() => c.addPolicyRule('default', rule({ to: 'outside' }))), /^INVALID_ARGUMENT/);
  t.regex(
    await code(() => c.updateNetwork('default', 'walls')),
    /^INVALID_ARGUMENT: --isolation must be none or groups/,
  );
  t.is(c.revision(), rev + 2, 'refusals change nothing');
  t.is((await c.updateNetwork('default', 'groups')).isolation, 'groups');
  t.deepEqual(
    c.listPolicy('').map((p) => [p.network, p.isolation, p.rules.map((r) => r.id)]),
    [['default', 'groups', ['r1', 'r2']]],
  );
  t.deepEqual(c.networks()[0]!.rules.length, 2, 'agents get the rules with the network');
  await c.deletePolicyRule('r1');
  t.regex(await code(() => c.deletePolicyRule('r1')), /^NOT_FOUND: no policy rule "r1"/);
  t.is((await c.addPolicyRule('default', rule())).id, 'r3', 'ids are never reused');
  const kinds = c.events.since(0).filter((e) => e.kind === 'policy-changed');
  t.deepEqual(
    kinds.map((e) => e.detail),
    [
      'default: r1 allow web -> db tcp/5432 added',
      'default: r2 deny any -> db added',
      'default: isolation groups',
      'default: r1 allow web -> db tcp/5432 deleted',
      'default: r3 allow web -> db tcp/5432 added',
    ],
  );
  t.regex(await code(() => c.createNetwork('n2', '198.19.0.0/16', 24, 0, 'walls')), /^INVALID_ARGUMENT/);
  t.is((await c.createNetwork('n2', '198.19.0.0/16', 24, 0, 'groups')).isolation, 'groups');
});

test('coordinator on SQLite: isolation and rules survive a restart (and an old database gains the column)', async (t) => {
  const f = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'gmpol-')), 'c.db');
  const a = new SqliteStore(f);
  const c = await coordinatorOn(a);
  await c.updateNetwork('default', 'groups');
  await c.addPolicyRule('default', rule({ proto: 'udp', portMin: 53, portMax: 53 }));
  a.close();
  const b = new SqliteStore(f);
  const d = await Coordinator.create(b, { now: () => 2_000_000 });
  t.deepEqual(d.listPolicy('default')[0], {
    network: 'default',
    isolation: 'groups',
    rules: [{ id: 'r1', ...rule({ proto: 'udp', portMin: 53, portMax: 53 }) }],
  });
  b.close();
});

// ------------------------------------------------------------------ flows

const N_GROUPS = 10;
function policedSnapshot(endpoints: number, rules: number): { s: Snapshot; locals: LocalPort[] } {
  const rs: PolicyRule[] = Array.from({ length: rules }, (_, i) => ({
    id: `r${i + 1}`,
    action: i % 5 === 0 ? 'deny' : 'allow',
    from: `g${i % N_GROUPS}`,
    to: `g${(i + 1) % N_GROUPS}`,
    proto: 'tcp',
    portMin: 1000 + i,
    portMax: 1000 + i,
  }));
  const s: Snapshot = {
    revision: 1,
    host: 'h1',
    underlayIp: '198.18.0.11',
    networks: [
      { name: 'default', cidr: '198.18.64.0/18', hostPrefixLen: 24, greKey: 1, mtu: 0, isolation: 'groups', rules: rs },
    ],
    slices: [{ network: 'default', cidr: '198.18.64.0/24' }],
    peers: Array.from({ length: 9 }, (_, p) => ({
      name: `h${p + 2}`,
      underlayIp: `198.18.0.${12 + p}`,
      slices: [],
      endpoints: Array.from({ length: Math.floor(endpoints / 10) }, (_, i) => ({
        network: 'default',
        host: `h${p + 2}`,
        mac: `0a:58:c6:12:${(65 + p).toString(16)}:${(i + 2).toString(16).padStart(2, '0')}`,
        ip: `198.18.${65 + p}.${i + 2}`,
        containerId: '',
        group: `g${i % N_GROUPS}`,
      })),
    })),
  };
  const d = computeDesired(s, { bridge: 'gremesh0', datapath: 'netdev', underlayMtu: 1500 });
  const locals: LocalPort[] = [
    ...gatewayPorts(d),
    ...Array.from({ length: Math.floor(endpoints / 10) }, (_, i) => ({
      port: `gm${i}`,
      network: 'default',
      ip: `198.18.64.${i + 2}`,
      mac: `0a:58:c6:12:40:${(i + 2).toString(16).padStart(2, '0')}`,
      gateway: false,
      containerId: `c${i}`,
      group: `g${i % N_GROUPS}`,
    })),
  ];
  return { s, locals };
}
const flowsOf = (endpoints: number, rules: number) => {
  const { s, locals } = policedSnapshot(endpoints, rules);
  const tunnels = new Set(
    computeDesired(s, { bridge: 'gremesh0', datapath: 'netdev', underlayMtu: 1500 }).tunnels.map((x) => x.port),
  );
  return computeFlows(
    s,
    computeDesired(s, { bridge: 'gremesh0', datapath: 'netdev', underlayMtu: 1500 }),
    locals,
    tunnels,
  );
};

test('policy flows grow with endpoints + rules, not endpoints x rules', (t) => {
  const base = flowsOf(1000, 0).length;
  const withRules = flowsOf(1000, 100).length;
  const moreEndpoints = flowsOf(2000, 100).length - flowsOf(1000, 100).length;
  const plainMore = flowsOf(2000, 0).length - base;
  t.is(withRules - base, 100, 'one flow per single-port rule');
  t.is(moreEndpoints, plainMore, 'rules add nothing per endpoint');
  t.log(`1000 endpoints: ${base} flows without rules, ${withRules} with 100 rules`);
});

test('policy flows: a policed network sends local deliveries through conntrack and rules; trace names the rule', (t) => {
  const { s, locals } = policedSnapshot(20, 2);
  const d = computeDesired(s, { bridge: 'gremesh0', datapath: 'netdev', underlayMtu: 1500 });
  const text = computeFlows(s, d, locals, new Set(d.tunnels.map((x) => x.port))).map(renderFlow);
  const has = (re: RegExp) =>
    t.true(
      text.some((l) => re.test(l)),
      `${re}`,
    );
  has(/table=20,priority=100,reg6=1,dl_dst=0a:58:c6:12:40:02,actions=load:16->NXM_NX_REG3\[\],resubmit\(,30\)/);
  has(/table=50,priority=100,reg6=1,dl_dst=0a:58:c6:12:40:02,actions=output:gm0/);
  has(/table=30,priority=100,reg6=1,ip,nw_src=198\.18\.65\.2,actions=load:16->NXM_NX_REG2\[\],ct\(zone=1,table=40\)/);
  has(/table=40,priority=40000,.*reg2=16,reg3=17,.*tp_dst=1000,ct_state=\+trk\+new,actions=drop/);
  has(
    /table=40,priority=20001,.*reg2=17,reg3=18,.*tp_dst=1001,ct_state=\+trk\+new,actions=ct\(commit,zone=1\),resubmit\(,50\)/,
  );
  has(/table=40,priority=1,reg6=1,ip,actions=drop/);
  // the sending side commits IP to remote endpoints, so replies come back established
  has(
    /table=20,priority=91,reg7=0,reg6=1,dl_dst=0a:58:c6:12:41:02,ip,actions=ct\(commit,zone=1\),set_field:1->tun_id,output:/,
  );
  const net = s.networks[0]!;
  t.regex(
    policyStepOf({ isolation: 'groups', rules: net.rules! }, POLICY_PRIORITY.allow + 1)!,
    /^rule r2 \(allow g1 -> g2 tcp\/1001\): allowed$/,
  );
  t.regex(policyStepOf({ isolation: 'groups', rules: net.rules! }, POLICY_PRIORITY.deny)!, /^rule r1 .*dropped$/);
  t.regex(policyStepOf({ isolation: 'groups', rules: [] }, POLICY_PRIORITY.default)!, /isolation groups\): dropped/);
  // a network without isolation or rules keeps the plain pipeline: no conntrack at all
  const plain = { ...s, networks: [{ ...net, isolation: undefined, rules: undefined }] };
  t.false(
    computeFlows(plain, d, locals, new Set())
      .map(renderFlow)
      .some((l) => l.includes('ct(')),
  );
});

test('policy metrics: packets per rule and verdict from dump-flows lines (registers in hex, as OVS prints them)', (t) => {
  const { s } = policedSnapshot(20, 2);
  const lines = [
    ' cookie=0x67726d, duration=1s, table=40, n_packets=7, n_bytes=1, priority=20001,ct_state=+new+trk,tcp,reg2=0x11,reg3=0x12,reg6=0x1,tp_dst=1001 actions=ct(commit,zone=1),resubmit(,50)',
    ' cookie=0x67726d, duration=1s, table=40, n_packets=3, n_bytes=1, priority=1,ip,reg6=0x1 actions=drop',
    ' cookie=0x67726d, duration=1s, table=40, n_packets=2, n_bytes=1, priority=1,ip,reg6=0x9 actions=drop',
  ];
  t.deepEqual(policyCounts(lines, s), [
    { network: 'default', rule: 'r2', verdict: 'allowed', packets: 7 },
    { network: 'default', rule: 'default', verdict: 'dropped', packets: 3 },
  ]);
});

test('policed networks: IP by unknown unicast is committed, IP broadcast/multicast is dropped with isolation groups; an unreadable rule denies all', (t) => {
  const { s, locals } = policedSnapshot(20, 2);
  const d = computeDesired(s, { bridge: 'gremesh0', datapath: 'netdev', underlayMtu: 1500 });
  const text = computeFlows(s, d, locals, new Set(d.tunnels.map((x) => x.port))).map(renderFlow);
  t.true(
    text.some((l) => /table=20,priority=41,reg7=0,reg6=1,ip,actions=ct\(commit,zone=1\),set_field:1->tun_id/.test(l)),
  );
  t.true(
    text.some((l) => /table=20,priority=51,reg6=1,dl_dst=01:00:00:00:00:00\/01:00:00:00:00:00,ip,actions=drop/.test(l)),
  );
  const m = applyWatchMessage(undefined, {
    revision: 1,
    host: 'h1',
    underlayIp: '198.18.0.11',
    full: true,
    baseRevision: 0,
    networks: [
      {
        name: 'n',
        cidr: '198.18.64.0/18',
        hostPrefixLen: 24,
        greKey: 1,
        mtu: 0,
        isolation: 'walls',
        rules: [
          { id: 'r1', action: 'allow', from: 'a', to: 'b', proto: 'tcp', portMin: 1, portMax: 1 },
          { id: 'r2', action: 'quarantine', from: 'a', to: 'b', proto: '', portMin: 0, portMax: 0 },
        ],
      },
    ],
    slices: [],
    peers: [],
    removedPeers: [],
  });
  const net = (m as Snapshot).networks[0]!;
  t.is(net.isolation, 'groups', 'an isolation this agent does not know: groups');
  t.deepEqual(
    net.rules!.map((r) => `${r.id} ${describeRule(r)}`),
    ['unreadable deny any -> any', 'r1 allow a -> b tcp/1'],
  );
});

test('coordinator: policy on a network whose GRE key is past 16 bits (its conntrack zone) is refused', async (t) => {
  const store = new MemoryStore();
  const c = await coordinatorOn(store);
  await store.tx((x) => x.putNetwork({ ...x.network('default')!, greKey: 70000 }));
  const d = await Coordinator.create(store, { now: () => 1 });
  t.regex(await code(() => d.addPolicyRule('default', rule())), /^FAILED_PRECONDITION: .*GRE key 70000/);
  t.regex(await code(() => d.updateNetwork('default', 'groups')), /^FAILED_PRECONDITION/);
  t.truthy(c);
});
