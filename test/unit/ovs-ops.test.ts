// Typed OVS operations into RFC 7047 transactions, flow deltas, and the JSON-RPC framing.
import test from 'ava';
import { toTransaction, type OvsOp } from '../../agent/ovs/ops.js';
import { resolvePortNames } from '../../agent/ovs/driver.js';
import { AGENT_COOKIE, act, flow, flowDelta, flowIdentity, flowKey, type Flow } from '../../agent/ovs/flows/flow.js';
import { renderActions, renderFlow, renderKey, renderMatch } from '../../agent/ovs/flows/render.js';
import { JsonSplitter } from '../../agent/ovs/ovsdb/jsonrpc.js';
import { applyUpdates, type Table } from '../../agent/ovs/ovsdb/client.js';
import { containerIds, parseBinding } from '../../agent/ovs/ids.js';

const none = { bridgeExists: () => false, portUuid: () => undefined };

test('a new bridge and a port on it: rows by named-uuid, the bridge hung on Open_vSwitch, the port on the bridge', (t) => {
  const ops: OvsOp[] = [
    {
      op: 'ensure-bridge',
      bridge: 'gremesh0',
      datapath: 'netdev',
      failMode: 'secure',
      protocols: ['OpenFlow14'],
      externalIds: { 'gremesh-owner': 'agent' },
    },
    {
      op: 'add-port',
      bridge: 'gremesh0',
      port: 'gre-c612000c',
      iface: { type: 'gre', options: { remote_ip: '198.18.0.12', key: 'flow' }, bfd: { enable: 'true' } },
    },
  ];
  const txn = toTransaction(ops, none) as Record<string, unknown>[];
  t.deepEqual(
    txn.map((o) => `${o.op} ${o.table}`),
    [
      'insert Interface',
      'insert Port',
      'insert Bridge',
      'mutate Open_vSwitch',
      'insert Interface',
      'insert Port',
      'mutate Bridge',
    ],
  );
  t.deepEqual((txn[2]!.row as Record<string, unknown>).protocols, ['set', ['OpenFlow14']]);
  t.deepEqual((txn[4]!.row as Record<string, unknown>).options, [
    'map',
    [
      ['key', 'flow'],
      ['remote_ip', '198.18.0.12'],
    ],
  ]);
  t.deepEqual(txn[6]!.mutations, [['ports', 'insert', ['set', [['named-uuid', txn[5]!['uuid-name']]]]]]);
});

test('an existing port is set, not added again (may-exist); external_ids merge key by key; a port that is gone is no error (if-exists)', (t) => {
  const db = { bridgeExists: () => true, portUuid: (n: string) => (n === 'gm1' ? 'u-1' : undefined) };
  const txn = toTransaction(
    [
      { op: 'add-port', bridge: 'gremesh0', port: 'gm1', iface: { externalIds: { 'gremesh-ip': '198.18.64.5' } } },
      { op: 'delete-port', bridge: 'gremesh0', port: 'gm1' },
      { op: 'delete-port', bridge: 'gremesh0', port: 'gone' },
    ],
    db,
  ) as Record<string, unknown>[];
  t.deepEqual(
    txn.map((o) => `${o.op} ${o.table}`),
    ['mutate Interface', 'mutate Bridge'],
  );
  t.deepEqual(txn[0]!.mutations, [
    ['external_ids', 'delete', ['set', ['gremesh-ip']]],
    ['external_ids', 'insert', ['map', [['gremesh-ip', '198.18.64.5']]]],
  ]);
  t.deepEqual(txn[1]!.mutations, [['ports', 'delete', ['set', [['uuid', 'u-1']]]]]);
});

test('flow deltas: delete_strict by table, priority and match; add what is new or changed; nothing for nothing', (t) => {
  const a = flow('classify', 100, { inPort: 3 }, [act.load('NXM_NX_REG6', 1), act.resubmit('portSecurity')]);
  const b = flow('forward', 100, { reg6: 1, dlDst: '0a:58:c6:12:40:05' }, [act.output(4)]);
  const b2 = flow('forward', 100, { reg6: 1, dlDst: '0a:58:c6:12:40:05' }, [act.output(7)]);
  t.is(renderFlow(a), 'cookie=0x67726d,table=0,priority=100,in_port=3,actions=load:1->NXM_NX_REG6[],resubmit(,10)');
  t.is(renderFlow(b), 'cookie=0x67726d,table=20,priority=100,reg6=1,dl_dst=0a:58:c6:12:40:05,actions=output:4');
  t.is(renderFlow(b2), 'cookie=0x67726d,table=20,priority=100,reg6=1,dl_dst=0a:58:c6:12:40:05,actions=output:7');
  const text = (d: { remove: Flow[]; add: Flow[] }) => ({
    remove: d.remove.map(renderKey),
    add: d.add.map(renderFlow),
  });
  t.is(renderKey(a), 'table=0,priority=100,in_port=3');
  t.deepEqual(text(flowDelta([a, b], [a, b])), { remove: [], add: [] });
  t.deepEqual(text(flowDelta([a, b], [b])), { remove: ['table=0,priority=100,in_port=3'], add: [] });
  t.deepEqual(
    text(flowDelta([a, b], [a, b2])),
    { remove: [], add: [renderFlow(b2)] },
    'a changed action is an add over the same match',
  );
  const [r] = resolvePortNames(
    [flow('classify', 0, { inPort: 'gre-c612000c' }, [act.output('gm0123456789a'), act.output('unknown')])],
    new Map([
      ['gre-c612000c', 3],
      ['gm0123456789a', 9],
    ]),
  );
  t.is(`${renderMatch(r!.match)},actions=${renderActions(r!.actions)}`, 'in_port=3,actions=output:9,output:unknown');
});

test('flow deltas are structural: equal values built apart are the same flow; a key ignores cookie and actions', (t) => {
  const mk = (port: number, cookie = AGENT_COOKIE) => ({
    ...flow('forward', 90, { reg7: 0, reg6: 1, dlDst: '0a:58:c6:12:41:0a' }, [act.setTunnel(1), act.output(port)]),
    cookie,
  });
  t.deepEqual(flowDelta([mk(5)], [mk(5)]), { remove: [], add: [] }, 'no identity, only values');
  t.is(flowKey(mk(5)), flowKey(mk(6, 7n)));
  t.not(flowIdentity(mk(5)), flowIdentity(mk(6)));
  t.not(flowIdentity(mk(5)), flowIdentity(mk(5, 7n)), 'another cookie is another flow');
  const d = flowDelta([mk(5), mk(5)], []);
  t.is(d.remove.length, 1, 'one delete per key');
  // the same match fields given in another order are one key
  const x = flow('portSecurity', 100, { inPort: 4, dlSrc: '0a:00:00:00:00:01', ethType: 'ip', nwSrc: '10.0.0.1' });
  const y = flow('portSecurity', 100, { nwSrc: '10.0.0.1', ethType: 'ip', dlSrc: '0a:00:00:00:00:01', inPort: 4 });
  t.is(flowKey(x), flowKey(y));
  t.not(flowKey(x), flowKey({ ...x, table: 'forward' }));
  t.not(flowKey(x), flowKey({ ...x, priority: 99 }));
  t.not(flowKey(x), flowKey({ ...x, match: { ...x.match, inPort: 5 } }));
  t.not(flowKey(x), flowKey({ ...x, match: { ...x.match, inPort: '4' } }), 'a port name is not its number');
});

test('JSON-RPC framing: back-to-back texts, split anywhere, braces inside strings', (t) => {
  const s = new JsonSplitter();
  const text = '{"id":1,"result":{"a":"}{\\"x"}}{"method":"update","params":["m",{"T":{}}],"id":null}';
  const got: unknown[] = [];
  for (let i = 0; i < text.length; i += 7) got.push(...s.push(text.slice(i, i + 7)));
  t.deepEqual(got, [
    { id: 1, result: { a: '}{"x' } },
    { method: 'update', params: ['m', { T: {} }], id: null },
  ]);
  t.throws(() => new JsonSplitter().push('x{}'));
});

test('monitor updates: insert, modify (new values), delete', (t) => {
  const replica = new Map<string, Table>();
  applyUpdates(replica, { Interface: { u1: { new: { name: 'gm1', ofport: -1 } } } });
  applyUpdates(replica, { Interface: { u1: { old: { ofport: -1 }, new: { name: 'gm1', ofport: 5 } } } });
  t.deepEqual(replica.get('Interface')!.get('u1'), { _uuid: 'u1', name: 'gm1', ofport: 5 });
  applyUpdates(replica, { Interface: { u1: { old: { name: 'gm1', ofport: 5 } } } });
  t.is(replica.get('Interface')!.size, 0);
});

test('external_ids: what the agent writes on a container port reads back as its binding; malformed ones are not bindings', (t) => {
  const ids = containerIds({
    containerId: 'c1',
    network: 'default',
    ip: '198.18.64.5',
    mac: '0a:58:c6:12:40:05',
    pid: 42,
    name: 'web',
    names: ['web', 'www'],
  });
  t.is(ids['gremesh-names'], 'web,www');
  t.deepEqual(parseBinding(ids), {
    containerId: 'c1',
    network: 'default',
    ip: '198.18.64.5',
    mac: '0a:58:c6:12:40:05',
    name: 'web',
    names: ['web', 'www'],
  });
  t.deepEqual(
    parseBinding({ ...ids, 'gremesh-names': 'ok,Bad_Name,,x' })?.names,
    ['ok', 'x'],
    'only valid names read back',
  );
  t.is(parseBinding({ ...ids, 'gremesh-mac': 'nope' }), undefined);
  t.deepEqual(
    parseBinding({ 'gremesh-network': 'n', 'gremesh-ip': '10.0.0.1', 'gremesh-mac': '02:00:00:00:00:01' }),
    {
      containerId: '',
      network: 'n',
      ip: '10.0.0.1',
      mac: '02:00:00:00:00:01',
      name: '',
      names: [],
    },
    'a port plugged by another tool counts too',
  );
});
