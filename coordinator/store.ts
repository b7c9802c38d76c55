// The Store: the coordinator's durable state. Every change happens inside one
// transaction; implementations enforce the same uniqueness rules
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
  /** a store several coordinators share (etcd): what only such a store can do; undefined otherwise */
  readonly shared?: SharedStore;
  close(): void;
}

/** What a store several coordinators share (etcd) offers beside transactions. */
export interface SharedStore {
  /**
   * fn on this process's copy, without a round trip (as current as the watch; undefined
   * before the first read). For caches, not for checks.
   */
  cached<T>(fn: (t: Tx) => T): T | undefined;
  /** f after a change another coordinator made */
  watchExternal(f: () => void): Promise<void>;
  /** soft state every coordinator sees */
  soft: SharedSoftState;
  /** the CA and admin credentials, written once */
  secrets: SharedSecrets;
  /** the coordinators serving now, by the address agents dial */
  members: CoordinatorMembers;
  /** a clean stop: what this process holds (its lease) let go at once, then close */
  shutdown(): Promise<void>;
}

/**
 * What agents report (tunnel health, endpoints, last seen), one record per host, written by
 * the coordinator the agent reports to. Records outlive their writer only briefly (an etcd
 * lease): a coordinator that dies takes its records with it once the lease runs out.
 */
export interface SharedSoftState {
  publish(host: string, value: string): Promise<void>;
  remove(host: string): Promise<void>;
  /** f for every record there is now, then for every record written or gone later */
  watch(f: (host: string, value: string | undefined) => void): Promise<void>;
}

/** Values written once and never changed: the first writer wins, the others read its value. */
export interface SharedSecrets {
  get(name: string): Promise<string | undefined>;
  /** value if nothing was stored under name; the stored one otherwise */
  putIfAbsent(name: string, value: string): Promise<string>;
}

/** The coordinators on one store, each under a lease: one gone stops being listed soon after. */
export interface CoordinatorMembers {
  announce(id: string, address: string): Promise<void>;
  /** the addresses of the coordinators announced now (this one among them) */
  list(): Promise<string[]>;
}
