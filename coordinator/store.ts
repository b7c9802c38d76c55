// The Store: the coordinator's durable state. Every change happens inside one
// synchronous transaction; implementations enforce the same uniqueness rules
// (one slice per host per network, one host per underlay IP, one network per GRE key)
// and throw StoreConflict when a write would break one.
import type { HostRec, NetworkRec, SliceRec, TokenRec } from './model.js';

export interface Tx {
  meta(key: string): string | undefined;
  setMeta(key: string, value: string): void;

  networks(): NetworkRec[];
  network(name: string): NetworkRec | undefined;
  putNetwork(n: NetworkRec): void;
  /** also removes the network's slices */
  deleteNetwork(name: string): void;

  hosts(): HostRec[];
  host(name: string): HostRec | undefined;
  putHost(h: HostRec): void;
  deleteHost(name: string): void;

  slices(network?: string): SliceRec[];
  putSlice(s: SliceRec): void;

  tokens(): TokenRec[];
  token(id: string): TokenRec | undefined;
  putToken(t: TokenRec): void;
}

export interface Store {
  /**
   * Runs fn atomically: all its writes land, or none (fn threw). fn may run more than once
   * (etcd: after another coordinator wrote first), so it only reads and writes through t.
   */
  tx<T>(fn: (t: Tx) => T): Promise<T>;
  /** stores several coordinators share (etcd): f after a change another one made */
  watchExternal?(f: () => void): Promise<void>;
  close(): void;
}
