// The EtcdStore's pure parts: records as etcd keys and back, and how many operations a change takes.
import test from 'ava';
import { diffState, etcdErrorText, prefixEnd, stateFromKvs } from '../../coordinator/etcd-store.js';
import { openSecret, sealSecret } from '../../coordinator/shared-pki.js';
import { MemoryTx, emptyState } from '../../coordinator/memory-store.js';

const kvsOf = (puts: Map<string, string>) => [...puts].map(([key, value]) => ({ key, value }));

test('a network created for 1000 hosts is a few etcd operations (a network’s slices are one record), and reads back the same', (t) => {
  const before = emptyState();
  const tx = new MemoryTx(before);
  for (let i = 0; i < 1000; i++)
    tx.putHost({
      name: `h${i}`,
      underlayIp: `10.0.${i >> 8}.${i & 255}`,
      credentialHash: '',
      agentVersion: 't',
      joinedMs: 1,
      certFingerprint: '',
      keyFingerprint: '',
    });
  const after = structuredClone(before);
  const t2 = new MemoryTx(after);
  t2.putNetwork({ name: 'n', cidr: '10.8.0.0/14', hostPrefixLen: 24, greKey: 7, mtu: 1400, createdMs: 1 });
  for (let i = 0; i < 1000; i++)
    t2.putSlice({ network: 'n', idx: i, host: `h${i}`, lastHost: `h${i}`, releasedMs: null });
  t2.setMeta('revision', '2');
  const d = diffState(before, after);
  t.deepEqual([...d.puts.keys()].sort(), ['meta/revision', 'networks/n', 'slices/n']);
  t.deepEqual([...d.tables].sort(), ['meta', 'networks', 'slices']);
  const back = stateFromKvs(kvsOf(diffState(emptyState(), after).puts));
  t.deepEqual(back, after);
  // one slice released: the network's record again, nothing else
  const later = structuredClone(after);
  new MemoryTx(later).putSlice({ network: 'n', idx: 3, host: null, lastHost: 'h3', releasedMs: 5 });
  t.deepEqual([...diffState(after, later).puts.keys()], ['slices/n']);
  // the network deleted: its slices record goes with it
  const gone = structuredClone(after);
  new MemoryTx(gone).deleteNetwork('n');
  t.deepEqual(diffState(after, gone).deletes.sort(), ['networks/n', 'slices/n']);
});

test('names with slashes and odd characters are keys of their own', (t) => {
  const s = emptyState();
  new MemoryTx(s).setMeta('a/b c', 'x');
  const d = diffState(emptyState(), s);
  t.deepEqual([...d.puts.keys()], ['meta/a%2Fb%20c']);
  t.deepEqual(stateFromKvs(kvsOf(d.puts)), s);
});

test('prefix ranges and error text', (t) => {
  t.deepEqual(prefixEnd(Buffer.from('/g/')), Buffer.from('/g0'));
  t.deepEqual(prefixEnd(Buffer.from([0x61, 0xff])), Buffer.from([0x62]));
  t.regex(
    etcdErrorText(new Error('4 DEADLINE_EXCEEDED: Deadline exceeded\nmore'), 5000),
    /^no answer within 5 s \(a cluster without quorum answers nothing\): 4 DEADLINE/,
  );
  t.is(
    etcdErrorText(new Error('14 UNAVAILABLE: No connection established. Resolution note: x'), 5000),
    '14 UNAVAILABLE: No connection established.',
  );
});

test('sealed secrets open only with the same key and the same binding', (t) => {
  const key = Buffer.alloc(32, 7);
  const sealed = sealSecret(key, 'ca.key:abc', 'PRIVATE');
  t.false(sealed.includes('PRIVATE'));
  t.is(openSecret(key, 'ca.key:abc', sealed), 'PRIVATE');
  t.throws(() => openSecret(Buffer.alloc(32, 8), 'ca.key:abc', sealed));
  t.throws(() => openSecret(key, 'ca.key:abd', sealed), undefined, 'bound to its certificate');
  const raw = Buffer.from(sealed, 'base64');
  raw[raw.length - 1]! ^= 1;
  t.throws(() => openSecret(key, 'ca.key:abc', raw.toString('base64')), undefined, 'a changed byte');
  t.not(sealSecret(key, 'x', 'same'), sealSecret(key, 'x', 'same'), 'a fresh nonce each time');
});
