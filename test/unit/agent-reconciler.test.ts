// The reconcile loop against a fake OVS at the driver boundary.
import test from 'ava';
import { Reconciler } from '../../agent/bridge/reconciler.js';
import { FakeOvsDriver, fakeLinks as links } from '../helpers/fakes.js';
import type { Snapshot } from '../../agent/model.js';
import { silentLogger } from '../../common/log.js';

const snap = (peers: string[]): Snapshot => ({
  revision: peers.length,
  host: 'h1',
  underlayIp: '198.18.0.11',
  networks: [{ name: 'default', cidr: '198.18.64.0/18', hostPrefixLen: 24, greKey: 1, mtu: 0 }],
  slices: [{ network: 'default', cidr: '198.18.64.0/24' }],
  peers: peers.map((ip, i) => ({ name: `p${i}`, underlayIp: ip, slices: [], endpoints: [] })),
});

function make(ovs: FakeOvsDriver) {
  return new Reconciler({
    ovs,
    links,
    params: { bridge: 'gremesh0', datapath: 'netdev', underlayMtu: 1500 },
    log: silentLogger,
    resyncMs: 60_000,
    probeMs: 60_000,
  });
}

test('no snapshot, no action: the agent never touches OVS before it knows the desired state', async (t) => {
  const ovs = new FakeOvsDriver();
  t.is(await make(ovs).pass(), undefined);
  t.is(ovs.transactions.length, 0);
});

test('first pass: one transaction builds everything; the next pass changes nothing', async (t) => {
  const ovs = new FakeOvsDriver();
  const r = make(ovs);
  r.setSnapshot(snap(['198.18.0.12', '198.18.0.13']));
  await r.nextPass();
  t.is(ovs.transactions.length, 1, 'one OVSDB transaction per pass');
  t.deepEqual(ovs.state.interfaces.map((i) => i.name).sort(), ['gmgw1', 'gre-c612000c', 'gre-c612000d']);
  t.is(ovs.flowSets.length, 1);
  const p = await r.pass();
  t.is(p!.changedPorts, 0);
  t.false(p!.flowsReplaced, 'unchanged flows are not rewritten');
  t.is(ovs.transactions.length, 1);
  r.stop();
});

test('a peer leaving removes exactly its tunnel', async (t) => {
  const ovs = new FakeOvsDriver();
  const r = make(ovs);
  r.setSnapshot(snap(['198.18.0.12', '198.18.0.13']));
  await r.nextPass();
  r.setSnapshot(snap(['198.18.0.12']));
  await r.nextPass();
  t.deepEqual(ovs.transactions.at(-1), [{ op: 'delete-port', bridge: 'gremesh0', port: 'gre-c612000d' }]);
  r.stop();
});

test('a failing driver is retried, and the pass succeeds once OVS is back', async (t) => {
  const ovs = new FakeOvsDriver();
  let fail = 2;
  const real = ovs.observe.bind(ovs);
  ovs.observe = async () => {
    if (fail-- > 0) throw new Error('db.sock: connection refused');
    return real();
  };
  const r = make(ovs);
  r.setSnapshot(snap(['198.18.0.12']));
  const end = Date.now() + 5000;
  while (!r.lastPass && Date.now() < end) await new Promise((res) => setTimeout(res, 20));
  t.truthy(r.lastPass);
  t.is(ovs.state.interfaces.length, 2);
  r.stop();
});

test('markDirtyAndWait waits for a pass that starts after the call, even while one is running', async (t) => {
  const ovs = new FakeOvsDriver();
  let release: () => void = () => {};
  const gate = new Promise<void>((r) => {
    release = r;
  });
  let passes = 0;
  const realObserve = ovs.observe.bind(ovs);
  ovs.observe = async () => {
    passes++;
    if (passes === 1) await gate;
    return realObserve();
  };
  const r = make(ovs);
  r.setSnapshot(snap(['198.18.0.12'])); // pass 1 starts and blocks in observe
  let done = false;
  const w = r.markDirtyAndWait('port added').then(() => {
    done = true;
  });
  await new Promise((res) => setTimeout(res, 20));
  release();
  await r.nextPass();
  await w;
  t.true(done);
  t.true(passes >= 3, `a second pass ran after the request (passes observed: ${passes})`);
  r.stop();
});

test('a peer leaves: one transaction deletes its port, and only its flows change (one bundle of the delta, by port number)', async (t) => {
  const ovs = new FakeOvsDriver();
  const r = make(ovs);
  r.setSnapshot(snap(['198.18.0.12', '198.18.0.13']));
  await r.nextPass();
  t.is(ovs.flowSets.length, 1, 'the first pass installs the whole table');
  const gone = ovs.state.interfaces.find((i) => i.name === 'gre-c612000d')!.ofport;
  t.true(
    ovs.flowSets[0]!.some((f) => f.includes(`in_port=${gone},`)),
    'flows name ports by number',
  );
  r.setSnapshot(snap(['198.18.0.12']));
  await r.nextPass();
  t.deepEqual(ovs.transactions.at(-1), [{ op: 'delete-port', bridge: 'gremesh0', port: 'gre-c612000d' }]);
  t.is(ovs.flowSets.length, 1, 'no full replace');
  const u = ovs.flowUpdates.at(-1)!;
  t.true(u.remove.length > 0 && u.remove.every((k) => !k.includes('actions=') && !k.includes('cookie=')));
  t.true(
    u.remove.some((k) => k.includes(`in_port=${gone}`)),
    'the gone tunnel’s classify flow is deleted',
  );
  t.true(
    u.add.every((f) => !f.includes(`output:${gone}`)),
    'nothing added points at the gone port',
  );
  r.stop();
});

test('portsForwarding resolves once a pass installed the flows of the new port at its number, not before', async (t) => {
  const ovs = new FakeOvsDriver();
  const r = make(ovs);
  r.setSnapshot(snap(['198.18.0.12']));
  await r.nextPass();
  await ovs.apply([
    {
      op: 'add-port',
      bridge: 'gremesh0',
      port: 'gmaaaaaaaaaaa',
      iface: {
        externalIds: { 'gremesh-network': 'default', 'gremesh-ip': '198.18.64.2', 'gremesh-mac': '0a:58:c6:12:40:02' },
      },
    },
  ]);
  const ofport = (await ovs.observe()).interfaces.find((i) => i.name === 'gmaaaaaaaaaaa')!.ofport;
  t.true(ofport > 0);
  await r.portsForwarding(new Map([['gmaaaaaaaaaaa', ofport]]));
  t.true(
    ovs.flowUpdates.some((u) => u.add.some((f) => f.includes(`in_port=${ofport},`))),
    'the flows of that port were sent',
  );
  t.is(r.lastPass!.ofports.get('gmaaaaaaaaaaa'), ofport);
  // a number the bridge never had: not satisfied by any pass, released by the timeout
  const t0 = Date.now();
  await r.portsForwarding(new Map([['gmaaaaaaaaaaa', ofport + 100]]), 300);
  t.true(Date.now() - t0 >= 290, 'waited for the timeout');
  // a port without a number: nothing to wait for
  await r.portsForwarding(new Map([['gmbbbbbbbbbbb', -1]]));
  r.stop();
});
