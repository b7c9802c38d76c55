// EtcdStore against a real etcd (Debian's etcd-server 3.4) on loopback: the Store contract,
// two stores (two coordinators) allocating at once, and etcd away.
import test from 'ava';
import { EtcdStore, StoreUnavailable } from '../../coordinator/etcd-store.js';
import { N, H, storeContract } from '../helpers/store-contract.js';
import type { Store } from '../../coordinator/store.js';
import { ETCD_BIN, EtcdMember } from '../helpers/etcd.js';

const serial = ETCD_BIN ? test.serial : test.skip;
let etcd: EtcdMember | undefined;
let endpoint = '';

test.before(async () => {
  if (!ETCD_BIN) return;
  etcd = await EtcdMember.start();
  endpoint = etcd.endpoint;
});
test.after.always(async () => {
  await etcd?.remove();
});

let prefixes = 0;
const open = (prefix = `/c${++prefixes}/`, timeoutMs = 5000): EtcdStore =>
  new EtcdStore({ endpoints: [endpoint], prefix, timeoutMs });

storeContract(serial, 'EtcdStore', async () => open());

serial('EtcdStore: state is etcd’s: a second store (another coordinator) reads what the first wrote', async (t) => {
  const prefix = `/c${++prefixes}/`;
  const a = open(prefix);
  const b = open(prefix);
  await b.tx((x) => x.networks()); // b has read the prefix before a writes
  await a.tx((x) => {
    x.putNetwork(N);
    x.setMeta('revision', '9');
  });
  // (fn may run more than once: assert on what it returns)
  const seen = await b.tx((x) => ({ networks: x.networks(), revision: x.meta('revision') }));
  t.deepEqual(seen.networks, [N], 'b sees a’s write, although it had read the prefix before');
  t.is(seen.revision, '9');
  a.close();
  b.close();
});

/** one allocation as the coordinator makes it: the lowest free slice of the network for a new host */
const admit = (st: Store, host: string, ip: string) =>
  st.tx((x) => {
    x.putHost(H(host, ip));
    const taken = new Set(x.slices('default').map((s) => s.idx));
    let idx = 0;
    while (taken.has(idx)) idx++;
    x.putSlice({ network: 'default', idx, host, lastHost: host, releasedMs: null });
    return idx;
  });

serial('EtcdStore: two coordinators admitting 100 hosts at once: no slice, underlay IP or GRE key twice', async (t) => {
  const prefix = `/c${++prefixes}/`;
  const a = open(prefix);
  const b = open(prefix);
  await a.tx((x) => x.putNetwork(N));
  const idxs = await Promise.all(
    Array.from({ length: 100 }, (_, i) =>
      admit(i % 2 ? a : b, `h${i}`, `198.18.${1 + Math.floor(i / 200)}.${i % 200}`),
    ),
  );
  t.is(new Set(idxs).size, 100, 'every host its own slice');
  t.log(`${a.conflicts + b.conflicts} transactions ran again after the other coordinator had written first`);
  const after = await a.tx((x) => ({ hosts: x.hosts().length, idx: x.slices('default').map((s) => s.idx) }));
  t.is(after.hosts, 100);
  t.deepEqual(
    after.idx,
    Array.from({ length: 100 }, (_, i) => i),
  );
  // GRE keys: each coordinator creates networks with the next free key, at once
  const keys = await Promise.all(
    Array.from({ length: 20 }, (_, i) =>
      (i % 2 ? a : b).tx((x) => {
        const greKey = Math.max(0, ...x.networks().map((n) => n.greKey)) + 1;
        x.putNetwork({ ...N, name: `n${i}`, cidr: `198.19.${i}.0/24`, greKey });
        return greKey;
      }),
    ),
  );
  t.is(new Set(keys).size, 20, 'no GRE key twice');
  a.close();
  b.close();
});

serial('EtcdStore: etcd away: a clear error and nothing written; back: it works again', async (t) => {
  const st = open(undefined, 1000);
  await st.tx((x) => x.putNetwork(N));
  await etcd!.kill();
  const err = await t.throwsAsync(
    st.tx((x) => x.putHost(H('a', '198.18.0.11'))),
    { instanceOf: StoreUnavailable },
  );
  t.regex(err!.message, /^etcd unavailable: /);
  await etcd!.run();
  const again = open(undefined, 5000);
  await again.tx((x) => x.setMeta('x', '1'));
  t.deepEqual(await st.tx((x) => x.hosts()), [], 'the failed write left nothing');
  st.close();
  again.close();
});

serial(
  'EtcdStore: a refusal on a copy that lags is checked against etcd (a token issued by another coordinator a moment ago)',
  async (t) => {
    const prefix = `/c${++prefixes}/`;
    const a = open(prefix);
    const b = open(prefix);
    t.teardown(() => {
      a.close();
      b.close();
    });
    await b.tx((x) => x.tokens()); // b's copy: no token yet (and no watch brings it in)
    await a.tx((x) =>
      x.putToken({ id: 'tk1', secretHash: 'h', host: 'h1', expiresMs: 1, state: 'valid', createdMs: 1 }),
    );
    const used = await b.tx((x) => {
      const tok = x.token('tk1');
      if (!tok) throw new Error('unknown join token tk1');
      x.putToken({ ...tok, state: 'used' });
      return tok.id;
    });
    t.is(used, 'tk1', 'b read again and found it');
    // on a current copy a refusal stands
    await t.throwsAsync(
      b.tx((x) => {
        if (!x.token('nope')) throw new Error('unknown join token nope');
      }),
      { message: 'unknown join token nope' },
    );
  },
);
