// One suite, every Store implementation (etcd's runs in test/integration/etcd-store.test.ts).
import test from 'ava';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { MemoryStore } from '../../coordinator/memory-store.js';
import { SqliteStore } from '../../coordinator/sqlite-store.js';
import { N, storeContract } from '../helpers/store-contract.js';

const tmp = () => path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'gmstore-')), 'c.db');
storeContract(test, 'MemoryStore', async () => new MemoryStore());
storeContract(test, 'SqliteStore', async () => new SqliteStore(tmp()));

test('SqliteStore: state survives reopening the file', async (t) => {
  const f = tmp();
  const a = new SqliteStore(f);
  await a.tx((x) => {
    x.putNetwork(N);
    x.setMeta('revision', '3');
  });
  a.close();
  const b = new SqliteStore(f);
  await b.tx((x) => {
    t.is(x.meta('revision'), '3');
    t.is(x.networks().length, 1);
  });
  b.close();
});
