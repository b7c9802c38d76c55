// The Store contract, one suite for every implementation (memory, SQLite, etcd): written
// against the Store, which is asynchronous for all of them. (Assertions inside fn are
// fine here: a single store never has to run fn twice.)
import type { ExecutionContext } from 'ava';
import { StoreConflict } from '../../coordinator/errors.js';
import type { Store } from '../../coordinator/store.js';

export const N = { name: 'default', cidr: '198.18.64.0/18', hostPrefixLen: 24, greKey: 1, mtu: 0, createdMs: 1 };
export const H = (name: string, ip: string) => ({
  name,
  underlayIp: ip,
  credentialHash: 'h',
  agentVersion: 'v',
  joinedMs: 1,
  certFingerprint: 'AA:BB',
  keyFingerprint: 'CC:DD',
});

/** how a suite registers a test: ava's test, test.serial or test.skip */
type Register = (title: string, fn: (t: ExecutionContext) => Promise<void>) => void;

export function storeContract(test: Register, name: string, make: () => Promise<Store>): void {
  test(`${name}: round-trips every record`, async (t) => {
    const st = await make();
    await st.tx((x) => {
      x.setMeta('revision', '7');
      x.putNetwork(N);
      x.putHost(H('a', '198.18.0.11'));
      x.putSlice({ network: 'default', idx: 0, host: 'a', lastHost: 'a', releasedMs: null });
      x.putToken({ id: 'abc123', secretHash: 's', host: 'a', expiresMs: 9, state: 'valid', createdMs: 1 });
    });
    await st.tx((x) => {
      t.is(x.meta('revision'), '7');
      t.deepEqual(x.networks(), [N]);
      t.deepEqual(x.host('a'), H('a', '198.18.0.11'));
      t.deepEqual(x.slices('default'), [{ network: 'default', idx: 0, host: 'a', lastHost: 'a', releasedMs: null }]);
      t.is(x.token('abc123')!.state, 'valid');
      t.is(x.host('zz'), undefined);
    });
    st.close();
  });

  test(`${name}: a throwing transaction leaves nothing behind`, async (t) => {
    const st = await make();
    await st.tx((x) => x.putNetwork(N));
    await t.throwsAsync(
      st.tx((x) => {
        x.putHost(H('a', '198.18.0.11'));
        throw new Error('boom');
      }),
      { message: 'boom' },
    );
    await st.tx((x) => t.deepEqual(x.hosts(), []));
    st.close();
  });

  test(`${name}: uniqueness (underlay IP, slice per host, GRE key) raises StoreConflict`, async (t) => {
    const st = await make();
    await st.tx((x) => {
      x.putNetwork(N);
      x.putHost(H('a', '198.18.0.11'));
      x.putSlice({ network: 'default', idx: 0, host: 'a', lastHost: 'a', releasedMs: null });
    });
    await t.throwsAsync(
      st.tx((x) => x.putHost(H('b', '198.18.0.11'))),
      { instanceOf: StoreConflict },
    );
    await t.throwsAsync(
      st.tx((x) => x.putSlice({ network: 'default', idx: 1, host: 'a', lastHost: 'a', releasedMs: null })),
      { instanceOf: StoreConflict },
    );
    await t.throwsAsync(
      st.tx((x) => x.putNetwork({ ...N, name: 'other', cidr: '198.19.0.0/16' })),
      { instanceOf: StoreConflict },
    );
    await st.tx((x) => x.putSlice({ network: 'default', idx: 0, host: null, lastHost: 'a', releasedMs: 5 }));
    await st.tx((x) => x.putSlice({ network: 'default', idx: 1, host: 'a', lastHost: 'a', releasedMs: null }));
    await st.tx((x) => t.is(x.slices().filter((s) => s.host === 'a').length, 1));
    st.close();
  });

  test(`${name}: deleting a network removes its slices`, async (t) => {
    const st = await make();
    await st.tx((x) => {
      x.putNetwork(N);
      x.putSlice({ network: 'default', idx: 0, host: 'a', lastHost: 'a', releasedMs: null });
    });
    await st.tx((x) => x.deleteNetwork('default'));
    await st.tx((x) => {
      t.deepEqual(x.slices(), []);
      t.deepEqual(x.networks(), []);
    });
    st.close();
  });
}
