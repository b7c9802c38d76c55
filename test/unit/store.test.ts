// One suite, every Store implementation.
import test from 'ava';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { MemoryStore } from '../../coordinator/memory-store.js';
import { SqliteStore } from '../../coordinator/sqlite-store.js';
import { StoreConflict } from '../../coordinator/errors.js';
import type { Store } from '../../coordinator/store.js';

const tmp = () => path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'gmstore-')), 'c.db');
const impls: [string, () => Store][] = [
  ['MemoryStore', () => new MemoryStore()],
  ['SqliteStore', () => new SqliteStore(tmp())],
];
const N = { name: 'default', cidr: '198.18.64.0/18', hostPrefixLen: 24, greKey: 1, mtu: 0, createdMs: 1 };
const H = (name: string, ip: string) => ({
  name,
  underlayIp: ip,
  credentialHash: 'h',
  agentVersion: 'v',
  joinedMs: 1,
  certFingerprint: 'AA:BB',
  keyFingerprint: 'CC:DD',
});

for (const [name, make] of impls) {
  test(`${name}: round-trips every record`, (t) => {
    const st = make();
    st.tx((x) => {
      x.setMeta('revision', '7');
      x.putNetwork(N);
      x.putHost(H('a', '198.18.0.11'));
      x.putSlice({ network: 'default', idx: 0, host: 'a', lastHost: 'a', releasedMs: null });
      x.putToken({ id: 'abc123', secretHash: 's', host: 'a', expiresMs: 9, state: 'valid', createdMs: 1 });
    });
    st.tx((x) => {
      t.is(x.meta('revision'), '7');
      t.deepEqual(x.networks(), [N]);
      t.deepEqual(x.host('a'), H('a', '198.18.0.11'));
      t.deepEqual(x.slices('default'), [{ network: 'default', idx: 0, host: 'a', lastHost: 'a', releasedMs: null }]);
      t.is(x.token('abc123')!.state, 'valid');
      t.is(x.host('zz'), undefined);
    });
    st.close();
  });

  test(`${name}: a throwing transaction leaves nothing behind`, (t) => {
    const st = make();
    st.tx((x) => x.putNetwork(N));
    t.throws(
      () =>
        st.tx((x) => {
          x.putHost(H('a', '198.18.0.11'));
          throw new Error('boom');
        }),
      { message: 'boom' },
    );
    st.tx((x) => t.deepEqual(x.hosts(), []));
    st.close();
  });

  test(`${name}: uniqueness (underlay IP, slice per host, GRE key) raises StoreConflict`, (t) => {
    const st = make();
    st.tx((x) => {
      x.putNetwork(N);
      x.putHost(H('a', '198.18.0.11'));
      x.putSlice({ network: 'default', idx: 0, host: 'a', lastHost: 'a', releasedMs: null });
    });
    t.throws(() => st.tx((x) => x.putHost(H('b', '198.18.0.11'))), { instanceOf: StoreConflict });
    t.throws(
      () => st.tx((x) => x.putSlice({ network: 'default', idx: 1, host: 'a', lastHost: 'a', releasedMs: null })),
      { instanceOf: StoreConflict },
    );
    t.throws(() => st.tx((x) => x.putNetwork({ ...N, name: 'other', cidr: '198.19.0.0/16' })), {
      instanceOf: StoreConflict,
    });
    st.tx((x) => x.putSlice({ network: 'default', idx: 0, host: null, lastHost: 'a', releasedMs: 5 }));
    st.tx((x) => x.putSlice({ network: 'default', idx: 1, host: 'a', lastHost: 'a', releasedMs: null }));
    st.tx((x) => t.is(x.slices().filter((s) => s.host === 'a').length, 1));
    st.close();
  });

  test(`${name}: deleting a network removes its slices`, (t) => {
    const st = make();
    st.tx((x) => {
      x.putNetwork(N);
      x.putSlice({ network: 'default', idx: 0, host: 'a', lastHost: 'a', releasedMs: null });
    });
    st.tx((x) => x.deleteNetwork('default'));
    st.tx((x) => {
      t.deepEqual(x.slices(), []);
      t.deepEqual(x.networks(), []);
    });
    st.close();
  });
}

test('SqliteStore: state survives reopening the file', (t) => {
  const f = tmp();
  const a = new SqliteStore(f);
  a.tx((x) => {
    x.putNetwork(N);
    x.setMeta('revision', '3');
  });
  a.close();
  const b = new SqliteStore(f);
  b.tx((x) => {
    t.is(x.meta('revision'), '3');
    t.is(x.networks().length, 1);
  });
  b.close();
});
