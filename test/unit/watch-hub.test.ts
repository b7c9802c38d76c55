import test from 'ava';
import { Coordinator } from '../../coordinator/coordinator.js';
import { MemoryStore } from '../../coordinator/memory-store.js';
import { WatchHub, frameField } from '../../coordinator/watch-hub.js';
import { DesiredState } from '../../proto/gen/gremesh/v1/gremesh.js';

async function setup() {
  const c = await Coordinator.create(new MemoryStore());
  await c.init({ name: 'default', cidr: '198.18.64.0/18', hostPrefixLen: 24, mtu: 0 });
  const hub = new WatchHub(c);
  c.onChange((x) => hub.changed(x));
  const admit = async (name: string, ip: string) =>
    c.register({ name, token: (await c.joinHost(name)).token, credential: '', underlayIp: ip, agentVersion: '' });
  return { c, hub, admit };
}

/** A sink that records messages; `hold` keeps the flushed-callbacks back (a stuck agent). */
function sink(hold = false) {
  const msgs: DesiredState[] = [];
  const pending: (() => void)[] = [];
  let gone = false;
  return {
    msgs,
    pending,
    isGone: () => gone,
    s: {
      write: (b: Buffer, cb: () => void) => {
        msgs.push(DesiredState.decode(b));
        if (hold) pending.push(cb);
        else setImmediate(cb);
      },
      gone: () => {
        gone = true;
      },
    },
  };
}
const tick = () => new Promise((r) => setImmediate(r));

test('frameField encodes a length-delimited field', (t) => {
  t.deepEqual([...frameField(6, new Uint8Array([1, 2]))], [0x32, 2, 1, 2]);
  t.is(frameField(6, new Uint8Array(300)).subarray(0, 3).toString('hex'), '32ac02');
});

test('a new stream gets a full snapshot without itself; then deltas with upserts and removals', async (t) => {
  const { c, hub, admit } = await setup();
  await admit('h1', '198.18.0.11');
  await admit('h2', '198.18.0.12');
  const a = sink();
  hub.add('h1', a.s);
  await tick();
  t.is(a.msgs.length, 1);
  t.true(a.msgs[0]!.full);
  t.deepEqual(
    a.msgs[0]!.peers.map((p) => p.name),
    ['h2'],
  );
  t.is(a.msgs[0]!.slices[0]!.cidr, '198.18.64.0/24');
  t.is(a.msgs[0]!.revision, c.revision());
  await admit('h3', '198.18.0.13');
  await tick();
  await tick();
  const d = a.msgs.at(-1)!;
  t.false(d.full);
  t.is(d.baseRevision, a.msgs[0]!.revision);
  t.deepEqual(
    d.peers.map((p) => p.name),
    ['h3'],
  );
  await c.removeHost('h2');
  await tick();
  await tick();
  t.deepEqual(a.msgs.at(-1)!.removedPeers, ['h2']);
  t.deepEqual(a.msgs.at(-1)!.peers, []);
});

test('a stuck stream never delays the others, and gets only the latest state when it drains', async (t) => {
  const { c, hub, admit } = await setup();
  await admit('h1', '198.18.0.11');
  await admit('h2', '198.18.0.12');
  const stuck = sink(true);
  const fast = sink();
  hub.add('h1', stuck.s);
  hub.add('h2', fast.s);
  await tick();
  for (let i = 3; i < 13; i++) {
    await admit(`h${i}`, `198.18.0.${10 + i}`);
    await tick();
    await tick();
  }
  t.is(stuck.msgs.length, 1, 'one message in flight, nothing queued behind it');
  t.is(fast.msgs.at(-1)!.revision, c.revision());
  stuck.pending.shift()!();
  await tick();
  t.is(stuck.msgs.length, 2);
  const last = stuck.msgs[1]!;
  t.is(last.revision, c.revision());
  t.is(last.baseRevision, stuck.msgs[0]!.revision);
  t.is(last.peers.length, 10, 'the delta carries every host added meanwhile');
});

test('the removed host’s own stream is ended', async (t) => {
  const { c, hub, admit } = await setup();
  await admit('h1', '198.18.0.11');
  const a = sink();
  hub.add('h1', a.s);
  await c.removeHost('h1');
  t.true(a.isGone());
  t.false(hub.isConnected('h1'));
});
