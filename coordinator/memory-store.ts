// MemoryStore: the Store as maps, for unit tests. Transactions work on a copy that
// replaces the state only when fn returns.
import { StoreConflict } from './errors.js';
import type { HostRec, NetworkRec, SliceRec, TokenRec } from './model.js';
import type { Store, Tx } from './store.js';

export interface State {
  meta: Map<string, string>;
  networks: Map<string, NetworkRec>;
  hosts: Map<string, HostRec>;
  slices: Map<string, SliceRec>; // key network/idx
  tokens: Map<string, TokenRec>;
}

const sliceKey = (network: string, idx: number) => `${network}/${idx}`;

export function emptyState(): State {
  return { meta: new Map(), networks: new Map(), hosts: new Map(), slices: new Map(), tokens: new Map() };
}

export class MemoryStore implements Store {
  private state: State = emptyState();

  async tx<T>(fn: (t: Tx) => T): Promise<T> {
    const s = structuredClone(this.state);
    const r = fn(new MemoryTx(s));
    this.state = s;
    return r;
  }

  close(): void {}
}

/** The Tx over a state's maps: the uniqueness rules, written once (EtcdStore runs it too). */
export class MemoryTx implements Tx {
  constructor(private s: State) {}
  meta(key: string) {
    return this.s.meta.get(key);
  }
  setMeta(key: string, value: string) {
    this.s.meta.set(key, value);
  }

  networks() {
    return [...this.s.networks.values()].map((n) => ({ ...n })).sort((a, b) => a.name.localeCompare(b.name));
  }
  network(name: string) {
    const n = this.s.networks.get(name);
    return n && { ...n };
  }
  putNetwork(n: NetworkRec) {
    for (const o of this.s.networks.values()) {
      if (o.name !== n.name && o.greKey === n.greKey)
        throw new StoreConflict(`GRE key ${n.greKey} is taken by network ${o.name}`);
    }
    this.s.networks.set(n.name, { ...n });
  }
  deleteNetwork(name: string) {
    this.s.networks.delete(name);
    for (const [k, v] of this.s.slices) if (v.network === name) this.s.slices.delete(k);
  }

  hosts() {
    return [...this.s.hosts.values()].map((h) => ({ ...h })).sort((a, b) => a.name.localeCompare(b.name));
  }
  host(name: string) {
    const h = this.s.hosts.get(name);
    return h && { ...h };
  }
  putHost(h: HostRec) {
    for (const o of this.s.hosts.values()) {
      if (o.name !== h.name && o.underlayIp === h.underlayIp)
        throw new StoreConflict(`underlay IP ${h.underlayIp} is used by host ${o.name}`);
    }
    this.s.hosts.set(h.name, { ...h });
  }
  deleteHost(name: string) {
    this.s.hosts.delete(name);
  }

  slices(network?: string) {
    return [...this.s.slices.values()]
      .filter((x) => network === undefined || x.network === network)
      .map((x) => ({ ...x }))
      .sort((a, b) => a.network.localeCompare(b.network) || a.idx - b.idx);
  }
  putSlice(x: SliceRec) {
    if (!this.s.networks.has(x.network)) throw new StoreConflict(`no network ${x.network}`);
    if (x.host !== null) {
      for (const o of this.s.slices.values()) {
        if (o.network === x.network && o.host === x.host && o.idx !== x.idx)
          throw new StoreConflict(`host ${x.host} already holds a slice of ${x.network}`);
      }
    }
    this.s.slices.set(sliceKey(x.network, x.idx), { ...x });
  }

  tokens() {
    return [...this.s.tokens.values()].map((t) => ({ ...t })).sort((a, b) => a.createdMs - b.createdMs);
  }
  token(id: string) {
    const t = this.s.tokens.get(id);
    return t && { ...t };
  }
  putToken(t: TokenRec) {
    this.s.tokens.set(t.id, { ...t });
  }
}
