// EtcdStore: the Store's records in etcd, for several coordinators on one cluster (issue
// 18, first part: the store; docs/ETCD-PLAN.md has the rest). Asynchronous, as etcd is.
//
// A transaction runs fn on this coordinator's copy of the prefix (MemoryStore's Tx, so the
// uniqueness rules are the same code), then commits its writes as ONE etcd Txn that also
// compares the modification revision of a counter key per table it read or wrote
// (PREFIX/rev/<table>). Every write bumps its tables' counters, so two coordinators can
// never both commit on the same view of a table: the second one's compare fails, it
// re-reads the prefix and runs fn again. That is flannel's `If(Version(key)==0) Then
// Put(key)` widened to whole tables: no slice, GRE key, host or token use twice.
import { Etcd3, isRecoverableError, type IOptions, type Lease, type Namespace, type Watcher } from 'etcd3';
import { Backoff } from '../common/backoff.js';
import { CoordError, StoreConflict } from './errors.js';
import { MemoryTx, emptyState, type State } from './memory-store.js';
import type { HostRec, NetworkRec, SliceRec, TokenRec } from './model.js';
import type { CoordinatorMembers, SharedSecrets, SharedSoftState, SharedStore, Store, Tx } from './store.js';

type Table = keyof State;
const TABLES: Table[] = ['meta', 'networks', 'hosts', 'slices', 'tokens'];

/** Which table each Tx method touches. */
const TABLE_OF: Record<keyof Tx, Table> = {
  meta: 'meta',
  setMeta: 'meta',
  networks: 'networks',
  network: 'networks',
  putNetwork: 'networks',
  deleteNetwork: 'networks',
  hosts: 'hosts',
  host: 'hosts',
  putHost: 'hosts',
  deleteHost: 'hosts',
  slices: 'slices',
  putSlice: 'slices',
  tokens: 'tokens',
  token: 'tokens',
  putToken: 'tokens',
};

/** etcd could not be reached, or did not answer (no quorum): nothing was written; callers see UNAVAILABLE */
export class StoreUnavailable extends CoordError {
  constructor(message: string) {
    super('UNAVAILABLE', message);
  }
}

export interface EtcdStoreOptions {
  endpoints: string[];
  /** key prefix (default /gremesh/) */
  prefix?: string;
  /** PEM contents for TLS to etcd */
  tls?: { ca?: Buffer; cert?: Buffer; key?: Buffer };
  /** per call (default 5000 ms): a cluster without quorum answers nothing */
  timeoutMs?: number;
  /** how often fn may be re-run after a conflicting writer (default 50) */
  maxAttempts?: number;
}

/** soft records live this long after their coordinator stopped renewing its lease */
export const SOFT_TTL_S = 15;

/** Pure: the end of the key range of everything that starts with key (etcd's prefix range) */
export function prefixEnd(key: Buffer): Buffer {
  const end = Buffer.from(key);
  for (let i = end.length - 1; i >= 0; i--)
    if (end[i]! < 0xff) {
      end[i]!++;
      return end.subarray(0, i + 1);
    }
  return Buffer.from([0]);
}

/** Pure: the etcd key of a record, under the prefix */
export function recordKey(table: Table, id: string): string {
  return `${table}/${encodeURIComponent(id)}`;
}

/**
 * Pure: the writes that turn `before` into `after`, per table (puts by key, deletes). A
 * network's slices are one record (slices/NETWORK, all of them): creating a network for
 * 1000 hosts is then a handful of operations, not 1000 (etcd takes 128 per transaction).
 */
export function diffState(
  before: State,
  after: State,
): { puts: Map<string, string>; deletes: string[]; tables: Set<Table> } {
  const puts = new Map<string, string>();
  const deletes: string[] = [];
  const tables = new Set<Table>();
  for (const table of TABLES) {
    if (table === 'slices') continue;
    const a = before[table] as Map<string, unknown>;
    const b = after[table] as Map<string, unknown>;
    for (const [k, v] of b) {
      const text = JSON.stringify(v);
      if (a.has(k) && JSON.stringify(a.get(k)) === text) continue;
      puts.set(recordKey(table, k), text);
      tables.add(table);
    }
    for (const k of a.keys())
      if (!b.has(k)) {
        deletes.push(recordKey(table, k));
        tables.add(table);
      }
  }
  const a = slicesByNetwork(before);
  const b = slicesByNetwork(after);
  for (const [net, list] of b) {
    const text = JSON.stringify(list);
    if (a.get(net) === undefined || JSON.stringify(a.get(net)) !== text) {
      puts.set(recordKey('slices', net), text);
      tables.add('slices');
    }
  }
  for (const net of a.keys())
    if (!b.has(net)) {
      deletes.push(recordKey('slices', net));
      tables.add('slices');
    }
  return { puts, deletes, tables };
}

/** Pure: each network's slices, by index */
function slicesByNetwork(s: State): Map<string, SliceRec[]> {
  const out = new Map<string, SliceRec[]>();
  for (const x of s.slices.values()) {
    const l = out.get(x.network) ?? [];
    l.push(x);
    out.set(x.network, l);
  }
  for (const l of out.values()) l.sort((p, q) => p.idx - q.idx);
  return out;
}

/** Pure: the records under the prefix (keys relative to it) as the store's state. */
export function stateFromKvs(kvs: { key: string; value: string }[]): State {
  const s = emptyState();
  for (const { key, value } of kvs) {
    const [table, ...rest] = key.split('/');
    const id = decodeURIComponent(rest.join('/'));
    if (table === 'meta') s.meta.set(id, JSON.parse(value) as string);
    else if (table === 'networks') s.networks.set(id, JSON.parse(value) as NetworkRec);
    else if (table === 'hosts') s.hosts.set(id, JSON.parse(value) as HostRec);
    else if (table === 'tokens') s.tokens.set(id, JSON.parse(value) as TokenRec);
    else if (table === 'slices') {
      const v = JSON.parse(value) as SliceRec[] | SliceRec;
      if (!Array.isArray(v))
        throw new Error(
          `record ${key} holds one slice: the layout of a development build before slices were kept per network; start on a new --etcd-prefix`,
        );
      for (const x of v) s.slices.set(`${x.network}/${x.idx}`, x);
    }
  }
  return s;
}

/** Pure: what went wrong talking to etcd, in one line (a deadline: the likely reason) */
export function etcdErrorText(e: Error, timeoutMs: number): string {
  const first = e.message.split('\n')[0]!.replace(/\s*Resolution note:.*$/, '');
  if (/DEADLINE_EXCEEDED|deadline exceeded/i.test(first))
    return `no answer within ${timeoutMs / 1000} s (a cluster without quorum answers nothing): ${first}`;
  return first;
}

export class EtcdStore implements Store, SharedStore {
  /** this store is the shared kind: its capabilities are its own methods */
  readonly shared: SharedStore = this;

  private readonly client: Etcd3;
  private readonly ns: Namespace;
  private readonly prefix: Buffer;
  /** revisions of this store's own commits not yet covered by a reload: their watch events are no news */
  private ownRevs = new Set<number>();
  /** the revision of the last full read (the copy may be newer, by this store's own commits) */
  private readAt = 0;
  private state: State = emptyState();
  /** mod revision of each table's counter as last read (0: never written) */
  private counters = new Map<Table, number>();
  private loaded = false;
  private readonly maxAttempts: number;
  private readonly timeoutMs: number;
  /** transactions run again because another coordinator had written first (for tests and metrics) */
  conflicts = 0;
  /** the etcd revision the copy is at (a reload's, or this store's last commit) */
  private appliedRev = 0;
  private watcher: Watcher | undefined;
  private externalListeners: (() => void)[] = [];
  private externalTimer: NodeJS.Timeout | undefined;

  constructor(o: EtcdStoreOptions) {
    const timeoutMs = o.timeoutMs ?? 5000;
    this.timeoutMs = timeoutMs;
    const opts: IOptions = {
      hosts: o.endpoints,
      dialTimeout: timeoutMs,
      defaultCallOptions: () => ({ deadline: Date.now() + timeoutMs }),
      ...(o.tls
        ? {
            credentials: { rootCertificate: o.tls.ca ?? Buffer.alloc(0), certChain: o.tls.cert, privateKey: o.tls.key },
          }
        : {}),
    };
    this.client = new Etcd3(opts);
    this.prefix = Buffer.from(o.prefix ?? '/gremesh/');
    this.ns = this.client.namespace(this.prefix);
    this.maxAttempts = o.maxAttempts ?? 50;
  }

  /** every key under the prefix that starts with p, as ranges in one etcd request */
  private range(p: string) {
    const key = Buffer.concat([this.prefix, Buffer.from(p)]);
    return { request_range: { key, range_end: prefixEnd(key) } };
  }

  /** Several prefixes read at one revision: [key relative to the prefix, value][] per prefix. */
  private async readPrefixes(prefixes: string[]): Promise<{ revision: number; kvs: [string, Buffer, number][][] }> {
    const res = await this.unavailableAsError(() => this.ns.kv.txn({ success: prefixes.map((p) => this.range(p)) }));
    return {
      revision: Number(res.header.revision),
      kvs: res.responses.map((r) =>
        (r.response_range?.kvs ?? []).map(
          (kv) =>
            [kv.key.subarray(this.prefix.length).toString(), kv.value, Number(kv.mod_revision)] as [
              string,
              Buffer,
              number,
            ],
        ),
      ),
    };
  }

  /** Read the records and the tables' counters, at one revision (the soft records and secrets are not read). */
  private async reload(): Promise<void> {
    const { revision, kvs } = await this.readPrefixes(['rev/', ...TABLES.map((t) => `${t}/`)]);
    const counters = new Map<Table, number>();
    for (const [key, , mod] of kvs[0]!) counters.set(key.slice(4) as Table, mod);
    this.state = stateFromKvs(kvs.slice(1).flatMap((l) => l.map(([key, v]) => ({ key, value: v.toString() }))));
    this.counters = counters;
    this.loaded = true;
    this.appliedRev = revision;
    this.readAt = revision;
    for (const r of this.ownRevs) if (r <= revision) this.ownRevs.delete(r);
  }

  /**
   * f, or StoreUnavailable once etcd has not answered within the timeout in all (the client
   * retries on other members, each try with its own deadline). A write given up on may still
   * land: the watch then brings it in as news, and a caller's retry finds it done.
   */
  private async unavailableAsError<T>(f: () => Promise<T>, record = true): Promise<T> {
    let timer: NodeJS.Timeout | undefined;
    try {
      return await Promise.race([
        f(),
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(new Error('DEADLINE_EXCEEDED: no answer')), this.timeoutMs);
        }),
      ]);
    } catch (e) {
      const text = etcdErrorText(e as Error, this.timeoutMs);
      // etcd answered, and refused (too large, permission): not a matter of reaching it
      if (
        !isRecoverableError(e as Error) &&
        /INVALID_ARGUMENT|PERMISSION_DENIED|RESOURCE_EXHAUSTED|FAILED_PRECONDITION|UNAUTHENTICATED|too many operations|too large/i.test(
          text,
        )
      )
        throw new CoordError('INTERNAL', `etcd refused the request: ${text}`);
      const err = new StoreUnavailable(`etcd unavailable: ${text}`);
      if (record) this.lastUnavailable = { at: Date.now(), err };
      throw err;
    } finally {
      clearTimeout(timer);
    }
  }

  /** the last time etcd could not be reached: transactions queued before it fail with it at once */
  private lastUnavailable: { at: number; err: StoreUnavailable } | undefined;

  /**
   * fn may run more than once (after a conflict), so it must only read and write through t.
   * Transactions of one store run one after the other: conflicts are between coordinators.
   */
  tx<T>(fn: (t: Tx) => T): Promise<T> {
    const queuedAt = Date.now();
    // one that waited behind a call etcd did not answer fails with it (the caller retries):
    // a queue of callers each waiting out its own timeout answers nobody in time
    const run = this.queue.then(() => {
      const u = this.lastUnavailable;
      if (u && u.at >= queuedAt) throw new StoreUnavailable(u.err.message);
      return this.run(fn);
    });
    this.queue = run.then(
      () => undefined,
      () => undefined,
    );
    return run;
  }

  private queue: Promise<void> = Promise.resolve();

  /** fn on the copy as it is (as current as the watch), without asking etcd: answers also without quorum */
  cached<T>(fn: (t: Tx) => T): T | undefined {
    return this.loaded ? fn(new MemoryTx(structuredClone(this.state))) : undefined;
  }

  private async run<T>(fn: (t: Tx) => T): Promise<T> {
    if (!this.loaded) await this.reload();
    for (let attempt = 1; ; attempt++) {
      const next = structuredClone(this.state);
      const touched = new Set<Table>();
      const inner = new MemoryTx(next);
      const recording = new Proxy(inner, {
        get(target, prop, receiver) {
          const table = TABLE_OF[prop as keyof Tx];
          if (table) touched.add(table);
          const v = Reflect.get(target, prop, receiver) as unknown;
          return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
        },
      }) as Tx;
      let result: T;
      try {
        result = fn(recording); // a throw leaves nothing behind: nothing was sent
      } catch (e) {
        // a refusal on a copy that lags (a token another coordinator issued a moment ago)
        // is no refusal: read again and run fn again; on a current copy it stands
        if (attempt < this.maxAttempts && (await this.behind(touched))) {
          this.conflicts++;
          await this.reload();
          this.scheduleExternal(false);
          continue;
        }
        throw e;
      }
      const { puts, deletes, tables } = diffState(this.state, next);
      for (const t of tables) touched.add(t);
      const compares = [...touched];
      let txn = this.ns.if(`rev/${compares[0]}`, 'Mod', '==', this.counters.get(compares[0]!) ?? 0);
      for (const t of compares.slice(1)) txn = txn.and(`rev/${t}`, 'Mod', '==', this.counters.get(t) ?? 0);
      const stamp = `${Date.now()}`;
      const ops = [
        ...[...puts].map(([k, v]) => this.ns.put(k).value(v)),
        ...deletes.map((k) => this.ns.delete().key(k)),
        ...[...tables].map((t) => this.ns.put(`rev/${t}`).value(stamp)),
      ];
      const res = await this.unavailableAsError(() => txn.then(...ops).commit());
      if (res.succeeded) {
        // a read commits nothing: the revision in the answer is someone else's last write
        if (ops.length === 0) return result;
        const rev = Number(res.header.revision);
        this.state = next;
        for (const t of tables) this.counters.set(t, rev);
        this.appliedRev = Math.max(this.appliedRev, rev);
        this.ownRevs.add(rev);
        return result;
      }
      // another coordinator wrote a table this one read or writes: read again, run fn again
      this.conflicts++;
      if (attempt >= this.maxAttempts)
        throw new StoreConflict(`gave up after ${attempt} attempts: other coordinators keep writing the same tables`);
      await this.reload();
      // what the read brought in is news for the listeners too (its watch events are now old)
      this.scheduleExternal(false);
    }
  }

  /** true if etcd holds a newer version of one of these tables than the copy (one read of the counters) */
  private async behind(tables: Set<Table>): Promise<boolean> {
    const { kvs } = await this.readPrefixes(['rev/']);
    const now = new Map(kvs[0]!.map(([key, , mod]) => [key.slice(4) as Table, mod]));
    return [...tables].some((t) => (now.get(t) ?? 0) !== (this.counters.get(t) ?? 0));
  }

  /**
   * f after writes others made (another coordinator), once this store's copy has them: an
   * etcd watch on the prefix from the copy's revision; events this store wrote itself are
   * already in the copy and call nothing. A burst is one reload (5 ms).
   */
  async watchExternal(f: () => void): Promise<void> {
    this.externalListeners.push(f);
    await this.ensureWatcher();
  }

  private async ensureWatcher(): Promise<void> {
    if (this.watcher) return;
    if (!this.loaded) await this.reload();
    const w = await this.unavailableAsError(() =>
      this.ns
        .watch()
        .prefix('')
        .startRevision(String(this.appliedRev + 1))
        .create(),
    );
    if (this.watcher) {
      void w.cancel().catch(() => {});
      return;
    }
    w.on('data', (res) => {
      let news = false;
      const ownSeen = new Set<number>();
      for (const e of res.events) {
        try {
          const key = e.kv.key.toString();
          if (key.startsWith('soft/')) {
            const host = decodeURIComponent(key.slice(5));
            const value = e.type === 'Delete' ? undefined : e.kv.value.toString();
            for (const l of this.softListeners) l(host, value);
          } else if (key.startsWith('rev/') || TABLES.some((t) => key.startsWith(`${t}/`))) {
            const rev = Number(e.kv.mod_revision);
            if (this.ownRevs.has(rev))
              ownSeen.add(rev); // this store's own commit: in the copy already
            else if (rev > this.readAt) news = true;
          }
        } catch {
          /* a record this version cannot read: the next full read takes what it can */
        }
      }
      for (const r of ownSeen) this.ownRevs.delete(r);
      if (news && this.externalListeners.length) this.scheduleExternal();
    });
    // the client re-attaches a watch after a disconnect by itself, but not one etcd cancelled
    // (its start revision compacted away, after a long partition): read all again, watch anew
    const lost = () => {
      if (this.watcher !== w || this.closed) return;
      this.watcher = undefined;
      void w.cancel().catch(() => {});
      this.rewatch();
    };
    w.on('error', lost);
    w.on('end', lost);
    this.watcher = w;
  }

  private closed = false;

  /** a new watch from a full read, then the listeners told (changes and soft records may have been missed) */
  private readonly rewatchBackoff = new Backoff({ minMs: 500, maxMs: 10_000 });
  private rewatch(): void {
    setTimeout(() => {
      if (this.closed) return;
      const run = this.queue.then(() => this.reload());
      this.queue = run.catch(() => undefined);
      run
        .then(() => this.ensureWatcher())
        .then(async () => {
          this.rewatchBackoff.reset();
          for (const f of this.externalListeners) f();
          await this.replaySoft(this.softListeners);
        })
        .catch(() => this.rewatch());
    }, this.rewatchBackoff.next()).unref();
  }

  private softListeners: ((host: string, value: string | undefined) => void)[] = [];

  /** every soft record there is now, to these listeners */
  private async replaySoft(to: ((host: string, value: string | undefined) => void)[]): Promise<void> {
    const { kvs } = await this.readPrefixes(['soft/']);
    for (const [key, value] of kvs[0]!) for (const l of to) l(decodeURIComponent(key.slice(5)), value.toString());
  }
  private lease: Lease | undefined;

  /** the lease this coordinator's soft records hang on (kept alive by the client; a lost one is replaced) */
  private softLease(): Lease {
    if (!this.lease || this.lease.revoked()) {
      const l = this.ns.lease(SOFT_TTL_S);
      l.on('lost', () => {
        if (this.lease === l) this.lease = undefined;
      });
      this.lease = l;
    }
    return this.lease;
  }

  /**
   * key = value on this store's lease. Not a transaction: a failure here does not fail the
   * transactions queued behind it. A lease etcd no longer knows (it ran out while etcd was
   * away; the client says so only later) is replaced, once.
   */
  private async putOnLease(key: string, value: string): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      try {
        await this.unavailableAsError(() => this.softLease().put(key).value(value).exec(), false);
        return;
      } catch (e) {
        if (attempt > 1 || !/lease not found/i.test((e as Error).message)) throw e;
        this.lease?.release();
        this.lease = undefined;
      }
    }
  }

  readonly soft: SharedSoftState = {
    publish: (host, value) => this.putOnLease(`soft/${encodeURIComponent(host)}`, value),
    remove: async (host) => {
      await this.unavailableAsError(
        () =>
          this.ns
            .delete()
            .key(`soft/${encodeURIComponent(host)}`)
            .exec(),
        false,
      );
    },
    watch: async (f) => {
      this.softListeners.push(f);
      await this.ensureWatcher();
      await this.replaySoft([f]);
    },
  };

  readonly members: CoordinatorMembers = {
    announce: (id, address) => this.putOnLease(`coordinators/${encodeURIComponent(id)}`, address),
    list: async () => {
      const { kvs } = await this.readPrefixes(['coordinators/']);
      return kvs[0]!.map(([, v]) => v.toString());
    },
  };

  readonly secrets: SharedSecrets = {
    get: async (name) => {
      const key = `secrets/${encodeURIComponent(name)}`;
      return (await this.unavailableAsError(() => this.ns.get(key).string())) ?? undefined;
    },
    putIfAbsent: async (name, value) => {
      const key = `secrets/${encodeURIComponent(name)}`;
      const res = await this.unavailableAsError(() =>
        this.ns.if(key, 'Version', '==', 0).then(this.ns.put(key).value(value)).else(this.ns.get(key)).commit(),
      );
      if (res.succeeded) return value;
      return res.responses[0]!.response_range!.kvs[0]!.value.toString();
    },
  };

  /** the listeners told, after a read of everything (unless the copy is current already); retried until etcd answers */
  private scheduleExternal(read = true): void {
    if (this.externalTimer || this.closed) return;
    this.externalTimer = setTimeout(() => {
      this.externalTimer = undefined;
      const run = this.queue.then(() => (read ? this.reload() : undefined));
      this.queue = run.catch(() => undefined);
      run.then(
        () => {
          for (const f of this.externalListeners) f();
        },
        () => {
          // etcd away: read again later (a quiet cluster sends no next event)
          setTimeout(() => this.scheduleExternal(), 1000).unref();
        },
      );
    }, 5);
  }

  /** revokes the lease (its soft records and announcement go now, not in 15 s), then closes */
  async shutdown(): Promise<void> {
    this.closed = true;
    const l = this.lease;
    this.lease = undefined;
    if (l) await Promise.race([l.revoke().catch(() => {}), new Promise((r) => setTimeout(r, 1000).unref())]);
    this.close();
  }

  close(): void {
    this.closed = true;
    if (this.externalTimer) clearTimeout(this.externalTimer);
    this.lease?.release();
    void this.watcher?.cancel().catch(() => {});
    this.client.close();
  }
}
