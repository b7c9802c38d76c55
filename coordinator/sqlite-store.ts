// SqliteStore: the embedded default. WAL mode; every tx is one SQLite transaction
// (BEGIN IMMEDIATE), so a kill -9 leaves either all of it or none. Uniqueness rules
// are table constraints. The binding is @photostructure/sqlite: node:sqlite's DatabaseSync
// API for Node 20, with its binary prebuilt in the npm package (nothing compiled at
// `npm ci`; better-sqlite3 compiled SQLite from source on every fresh clone here, ~60 s).
import { DatabaseSync, type DatabaseSyncInstance, type StatementSyncInstance } from '@photostructure/sqlite';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { StoreConflict } from './errors.js';
import type { HostRec, NetworkRec, SliceRec, TokenRec, WireguardRec } from './model.js';
import type { Store, Tx } from './store.js';

const SCHEMA = `
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS networks (
  name TEXT PRIMARY KEY, cidr TEXT NOT NULL, host_prefix_len INTEGER NOT NULL,
  gre_key INTEGER NOT NULL UNIQUE, mtu INTEGER NOT NULL, created_ms INTEGER NOT NULL, policy TEXT NOT NULL DEFAULT '',
  ipv6_cidr TEXT NOT NULL DEFAULT '', ipv6_host_prefix_len INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS hosts (
  name TEXT PRIMARY KEY, underlay_ip TEXT NOT NULL UNIQUE, credential_hash TEXT NOT NULL,
  agent_version TEXT NOT NULL, joined_ms INTEGER NOT NULL, cert_fingerprint TEXT NOT NULL DEFAULT '', key_fingerprint TEXT NOT NULL DEFAULT '', wireguard TEXT NOT NULL DEFAULT '');
CREATE TABLE IF NOT EXISTS slices (
  network TEXT NOT NULL REFERENCES networks(name) ON DELETE CASCADE, idx INTEGER NOT NULL,
  host TEXT, last_host TEXT, released_ms INTEGER,
  PRIMARY KEY (network, idx), UNIQUE (network, host));
CREATE TABLE IF NOT EXISTS tokens (
  id TEXT PRIMARY KEY, secret_hash TEXT NOT NULL, host TEXT NOT NULL,
  expires_ms INTEGER NOT NULL, state TEXT NOT NULL, created_ms INTEGER NOT NULL);
`;

type Row = Record<string, unknown>;
const net = (r: Row): NetworkRec => ({
  name: r.name as string,
  cidr: r.cidr as string,
  hostPrefixLen: r.host_prefix_len as number,
  greKey: r.gre_key as number,
  mtu: r.mtu as number,
  createdMs: r.created_ms as number,
  ...(r.policy ? (JSON.parse(r.policy as string) as NetworkPolicyRec) : {}),
  ...(r.ipv6_cidr ? { ipv6Cidr: r.ipv6_cidr as string, ipv6HostPrefixLen: r.ipv6_host_prefix_len as number } : {}),
});
/** a network's isolation and rules: one JSON column (read and written whole, like the network) */
type NetworkPolicyRec = Pick<NetworkRec, 'isolation' | 'rules'>;
const policyColumn = (n: NetworkRec): string =>
  n.isolation === undefined && !n.rules?.length ? '' : JSON.stringify({ isolation: n.isolation, rules: n.rules ?? [] });
const host = (r: Row): HostRec => ({
  name: r.name as string,
  underlayIp: r.underlay_ip as string,
  credentialHash: r.credential_hash as string,
  agentVersion: r.agent_version as string,
  joinedMs: r.joined_ms as number,
  certFingerprint: (r.cert_fingerprint as string | null) ?? '',
  keyFingerprint: (r.key_fingerprint as string | null) ?? '',
  ...(r.wireguard ? { wireguard: JSON.parse(r.wireguard as string) as WireguardRec } : {}),
});
const slice = (r: Row): SliceRec => ({
  network: r.network as string,
  idx: r.idx as number,
  host: (r.host as string | null) ?? null,
  lastHost: (r.last_host as string | null) ?? null,
  releasedMs: (r.released_ms as number | null) ?? null,
});
const token = (r: Row): TokenRec => ({
  id: r.id as string,
  secretHash: r.secret_hash as string,
  host: r.host as string,
  expiresMs: r.expires_ms as number,
  state: r.state as TokenRec['state'],
  createdMs: r.created_ms as number,
});

function conflict<T>(f: () => T): T {
  try {
    return f();
  } catch (e) {
    // SQLITE_CONSTRAINT (19) and its extended codes (UNIQUE 2067, PRIMARYKEY 1555, ...)
    const errcode = (e as { errcode?: number }).errcode;
    if (errcode !== undefined && (errcode & 0xff) === 19) throw new StoreConflict((e as Error).message);
    throw e;
  }
}

export class SqliteStore implements Store {
  private db: DatabaseSyncInstance;
  private t: SqliteTx;

  /** file: a path, or ':memory:' */
  constructor(file: string) {
    if (file !== ':memory:') fs.mkdirSync(path.dirname(file), { recursive: true });
    this.db = new DatabaseSync(file);
    this.db.exec('PRAGMA journal_mode = WAL');
    // FULL: every commit is on disk when it returns, also across a power cut (NORMAL with WAL
    // survives kill -9 but may lose the last commits on power loss: an admission the agent
    // already holds a certificate for). Commits are rare (joins, leaves, networks; endpoint
    // reports are soft state, never written), so the fsync costs nothing that matters.
    this.db.exec('PRAGMA synchronous = FULL');
    this.db.exec('PRAGMA foreign_keys = ON');
    this.db.exec('PRAGMA busy_timeout = 5000');
    this.db.exec(SCHEMA);
    // databases made before hosts had certificates
    const cols = (this.db.prepare('PRAGMA table_info(hosts)').all() as { name: string }[]).map((c) => c.name);
    if (!cols.includes('cert_fingerprint'))
      this.db.exec("ALTER TABLE hosts ADD COLUMN cert_fingerprint TEXT NOT NULL DEFAULT ''");
    if (!cols.includes('key_fingerprint'))
      this.db.exec("ALTER TABLE hosts ADD COLUMN key_fingerprint TEXT NOT NULL DEFAULT ''");
    // databases made before networks had a policy
    const netCols = (this.db.prepare('PRAGMA table_info(networks)').all() as { name: string }[]).map((c) => c.name);
    // databases made before hosts had WireGuard keys
    if (!cols.includes('wireguard')) this.db.exec("ALTER TABLE hosts ADD COLUMN wireguard TEXT NOT NULL DEFAULT ''");
    if (!netCols.includes('policy')) this.db.exec("ALTER TABLE networks ADD COLUMN policy TEXT NOT NULL DEFAULT ''");
    if (!netCols.includes('ipv6_cidr')) {
      this.db.exec("ALTER TABLE networks ADD COLUMN ipv6_cidr TEXT NOT NULL DEFAULT ''");
      this.db.exec('ALTER TABLE networks ADD COLUMN ipv6_host_prefix_len INTEGER NOT NULL DEFAULT 0');
    }
    this.t = new SqliteTx(this.db);
  }

  async tx<T>(fn: (t: Tx) => T): Promise<T> {
    this.db.exec('BEGIN IMMEDIATE');
    try {
      const r = fn(this.t);
      this.db.exec('COMMIT');
      return r;
    } catch (e) {
      this.db.exec('ROLLBACK');
      throw e;
    }
  }

  close(): void {
    this.db.close();
  }
}

class SqliteTx implements Tx {
  private q: Record<string, StatementSyncInstance>;
  constructor(db: DatabaseSyncInstance) {
    const p = (s: string) => db.prepare(s);
    this.q = {
      meta: p('SELECT value FROM meta WHERE key = ?'),
      setMeta: p('INSERT INTO meta(key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value'),
      networks: p('SELECT * FROM networks ORDER BY name'),
      network: p('SELECT * FROM networks WHERE name = ?'),
      putNetwork:
        p(`INSERT INTO networks(name, cidr, host_prefix_len, gre_key, mtu, created_ms, policy, ipv6_cidr, ipv6_host_prefix_len) VALUES (@name, @cidr, @hostPrefixLen, @greKey, @mtu, @createdMs, @policy, @ipv6Cidr, @ipv6HostPrefixLen)
        ON CONFLICT(name) DO UPDATE SET cidr = excluded.cidr, host_prefix_len = excluded.host_prefix_len, gre_key = excluded.gre_key, mtu = excluded.mtu, policy = excluded.policy, ipv6_cidr = excluded.ipv6_cidr, ipv6_host_prefix_len = excluded.ipv6_host_prefix_len`),
      deleteNetwork: p('DELETE FROM networks WHERE name = ?'),
      hosts: p('SELECT * FROM hosts ORDER BY name'),
      host: p('SELECT * FROM hosts WHERE name = ?'),
      putHost:
        p(`INSERT INTO hosts(name, underlay_ip, credential_hash, agent_version, joined_ms, cert_fingerprint, key_fingerprint, wireguard) VALUES (@name, @underlayIp, @credentialHash, @agentVersion, @joinedMs, @certFingerprint, @keyFingerprint, @wireguard)
        ON CONFLICT(name) DO UPDATE SET underlay_ip = excluded.underlay_ip, credential_hash = excluded.credential_hash, agent_version = excluded.agent_version, joined_ms = excluded.joined_ms, cert_fingerprint = excluded.cert_fingerprint, key_fingerprint = excluded.key_fingerprint, wireguard = excluded.wireguard`),
      deleteHost: p('DELETE FROM hosts WHERE name = ?'),
      slicesAll: p('SELECT * FROM slices ORDER BY network, idx'),
      slicesOf: p('SELECT * FROM slices WHERE network = ? ORDER BY idx'),
      putSlice:
        p(`INSERT INTO slices(network, idx, host, last_host, released_ms) VALUES (@network, @idx, @host, @lastHost, @releasedMs)
        ON CONFLICT(network, idx) DO UPDATE SET host = excluded.host, last_host = excluded.last_host, released_ms = excluded.released_ms`),
      tokens: p('SELECT * FROM tokens ORDER BY created_ms'),
      token: p('SELECT * FROM tokens WHERE id = ?'),
      putToken:
        p(`INSERT INTO tokens(id, secret_hash, host, expires_ms, state, created_ms) VALUES (@id, @secretHash, @host, @expiresMs, @state, @createdMs)
        ON CONFLICT(id) DO UPDATE SET secret_hash = excluded.secret_hash, host = excluded.host, expires_ms = excluded.expires_ms, state = excluded.state`),
    };
  }
  meta(key: string) {
    return (this.q.meta!.get(key) as Row | undefined)?.value as string | undefined;
  }
  setMeta(key: string, value: string) {
    this.q.setMeta!.run(key, value);
  }
  networks() {
    return (this.q.networks!.all() as Row[]).map(net);
  }
  network(name: string) {
    const r = this.q.network!.get(name) as Row | undefined;
    return r && net(r);
  }
  putNetwork(n: NetworkRec) {
    conflict(() =>
      this.q.putNetwork!.run({
        name: n.name,
        cidr: n.cidr,
        hostPrefixLen: n.hostPrefixLen,
        greKey: n.greKey,
        mtu: n.mtu,
        createdMs: n.createdMs,
        policy: policyColumn(n),
        ipv6Cidr: n.ipv6Cidr ?? '',
        ipv6HostPrefixLen: n.ipv6HostPrefixLen ?? 0,
      }),
    );
  }
  deleteNetwork(name: string) {
    this.q.deleteNetwork!.run(name);
  }
  hosts() {
    return (this.q.hosts!.all() as Row[]).map(host);
  }
  host(name: string) {
    const r = this.q.host!.get(name) as Row | undefined;
    return r && host(r);
  }
  putHost(h: HostRec) {
    conflict(() => this.q.putHost!.run({ ...h, wireguard: h.wireguard ? JSON.stringify(h.wireguard) : '' }));
  }
  deleteHost(name: string) {
    this.q.deleteHost!.run(name);
  }
  slices(network?: string) {
    return ((network === undefined ? this.q.slicesAll!.all() : this.q.slicesOf!.all(network)) as Row[]).map(slice);
  }
  putSlice(s: SliceRec) {
    conflict(() => this.q.putSlice!.run({ ...s }));
  }
  tokens() {
    return (this.q.tokens!.all() as Row[]).map(token);
  }
  token(id: string) {
    const r = this.q.token!.get(id) as Row | undefined;
    return r && token(r);
  }
  putToken(t: TokenRec) {
    conflict(() => this.q.putToken!.run({ ...t }));
  }
}
