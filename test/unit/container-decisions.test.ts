// The pure decisions of the container side, split out of the container reconciler:
// which container is attached as planned, what goes with containers that are gone, which
// of Docker's endpoints and addresses are stale past the grace, and the ports on the bridge.
import test from 'ava';
import { attachPhases, computeGone, isAttachedAsPlanned } from '../../agent/docker/label-decisions.js';
import {
  computeStaleHolders,
  endpointsGoneFromDocker,
  sweepDue,
  ENDPOINT_GRACE_MS,
  type DockerEndpoint,
} from '../../agent/docker/endpoint-loop.js';
import { reservedNetworkOf } from '../../agent/docker/plugin-backend.js';
import { computeMacHolders, containerPortsOf, endpointPortsOf } from '../../agent/docker/bridge-ports.js';
import type { OvsInterface } from '../../agent/model.js';

const plan = { ip: '198.18.65.2', mac: '02:00:00:00:00:01', network: 'default' };
function port(ids: Record<string, string>, extra: Partial<OvsInterface> = {}): OvsInterface {
  return {
    name: 'gm0',
    bridge: 'gremesh0',
    ofport: 5,
    linkState: 'up',
    mtu: 1458,
    externalIds: { 'gremesh-owner': 'agent', ...ids },
    ...extra,
  } as OvsInterface;
}
const planned = {
  container_id: 'c1',
  'gremesh-ip': plan.ip,
  'gremesh-mac': plan.mac,
  'gremesh-network': plan.network,
  'gremesh-pid': '42',
};

test('attached as planned: port up with the planned address for this run of the container', (t) => {
  t.true(isAttachedAsPlanned(port(planned), plan, 42, false));
  t.false(isAttachedAsPlanned(undefined, plan, 42, false), 'no port');
  t.false(isAttachedAsPlanned(port(planned), plan, 43, false), 'another run of the container');
  t.false(isAttachedAsPlanned(port(planned), { ...plan, ip: '198.18.65.3' }, 42, false), 'another address');
  t.false(isAttachedAsPlanned(port(planned, { ofport: -1 }), plan, 42, false), 'no OpenFlow number');
  t.false(isAttachedAsPlanned(port(planned, { error: 'x' }), plan, 42, false), 'port in error');
  t.false(isAttachedAsPlanned(port(planned, { linkState: 'down' }), plan, 42, false), 'left down');
  t.true(isAttachedAsPlanned(port(planned, { linkState: 'down' }), plan, 42, true), 'raised here: the replica lags');
});

test('gone containers: only container holders are released; by-hand entries of gone containers are forgotten', (t) => {
  const gone = (id: string) => id !== 'alive';
  t.deepEqual(computeGone(['alive', 'dead', 'docker:1:1', 'ep:e1'], ['alive', 'dead2'], gone), {
    release: ['dead'],
    forget: ['dead2'],
  });
});

test('attach phases add up from the start event; missing steps count as zero', (t) => {
  t.deepEqual(attachPhases({ event: 0, inspected: 10, veth: 15, port: 20, flows: 30, up: 31 }), {
    inspect: 10,
    veth: 5,
    port: 5,
    flows: 10,
    up: 1,
  });
  t.deepEqual(attachPhases({ event: 0, inspected: 10 }), { inspect: 10, veth: 0, port: 0, flows: 0, up: 0 });
});

const ep = (id: string, created: number): DockerEndpoint =>
  ({ id, created, dockerNetwork: 'dn', hostIf: 'h', peerIf: 'p', joined: true }) as DockerEndpoint;
const G = ENDPOINT_GRACE_MS;

test('the sweep asks Docker at most once a grace, and only when an endpoint is past it', (t) => {
  const now = 10 * G;
  t.true(sweepDue([ep('a', now - G - 1)], 0, now));
  t.false(sweepDue([ep('a', now - G)], 0, now), 'young endpoint');
  t.false(sweepDue([ep('a', 0)], now - G + 1, now), 'swept within the grace');
  t.false(sweepDue([], 0, now), 'no endpoints');
});

test('endpoints Docker does not list are forgotten only past the grace', (t) => {
  const now = 10 * G;
  const eps = [ep('old', now - G - 1), ep('young', now - 5), ep('listed', 0)];
  t.deepEqual(endpointsGoneFromDocker(eps, new Set(['listed']), now), ['old']);
});

test('stale addresses: Docker reservations past the grace; orphans timed from first sight', (t) => {
  const now = 10 * G;
  const table = {
    default: {
      '198.18.65.2': `docker:${now - G - 1}:1`,
      '198.18.65.3': `docker:${now - 5}:2`,
      '198.18.65.4': 'ep:live',
      '198.18.65.5': 'ep:gone',
      '198.18.65.6': 'c1',
    },
  };
  const has = (id: string) => id === 'live';
  const first = computeStaleHolders(table, has, new Map(), now);
  t.deepEqual(first.stale, [`docker:${now - G - 1}:1`], 'the orphan is new: not stale yet');
  t.deepEqual([...first.orphanSince], [['ep:gone', now]]);
  const later = computeStaleHolders(table, has, first.orphanSince, now + G + 1);
  t.true(later.stale.includes('ep:gone'));
  t.false(later.orphanSince.has('ep:gone'), 'released: no longer timed');
  t.false(later.stale.includes('c1') || later.stale.includes('ep:live'));
});

test('reserved for Docker in exactly one network', (t) => {
  const tbl = { a: { '198.18.65.2': 'docker:1:1', '198.18.65.3': 'ep:x' }, b: { '198.18.65.2': 'c1' } };
  t.is(reservedNetworkOf(tbl, '198.18.65.2'), 'a');
  t.is(reservedNetworkOf(tbl, '198.18.65.3'), undefined);
  t.is(reservedNetworkOf({ a: tbl.a, c: { '198.18.65.2': 'docker:2:2' } }, '198.18.65.2'), undefined, 'ambiguous');
});

test('bridge ports: containers and endpoints apart, owned ones on this bridge only; MAC holders by network', (t) => {
  const c = port(planned);
  const e = port({ ...planned, container_id: 'c2', 'gremesh-endpoint': 'e1' }, { name: 'gm1' });
  const other = port({ ...planned, container_id: 'c3' }, { bridge: 'br-other' });
  const foreign = port({ container_id: 'c4' });
  delete foreign.externalIds['gremesh-owner'];
  const all = [c, e, other, foreign];
  t.deepEqual([...containerPortsOf('gremesh0', all).keys()], ['c1']);
  t.deepEqual([...endpointPortsOf('gremesh0', all).keys()], ['e1']);
  t.deepEqual(computeMacHolders('gremesh0', [c, e, other]).get(`default/${plan.mac}`), ['c1', 'c2']);
});
