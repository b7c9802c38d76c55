// A persistent OVSDB client (RFC 7047): one connection, a `monitor` of the tables and
// columns asked for feeding an in-memory replica (reads never leave the process),
// `transact` for writes. It reconnects by itself with backoff and rebuilds the replica
// from the new monitor's initial contents; `onChange` is told after every update and
// after every (re)connect. libovsdb's client/cache are the model.
import { Backoff } from '../../../common/backoff.js';
import type { Logger } from '../../../common/log.js';
import { JsonRpcConnection, JsonRpcError } from './jsonrpc.js';

export type Row = Record<string, unknown> & { _uuid: string };
export type Table = Map<string, Row>;
/** table name -> the columns to replicate */
export type MonitorSpec = Record<string, string[]>;

export interface OvsdbClientOptions {
  /** unix:PATH or tcp:HOST:PORT */
  target: string;
  database?: string;
  tables: MonitorSpec;
  log: Logger;
  /** a request not answered within this closes the connection (default 10 s) */
  timeoutMs?: number;
  /** our own echo after this much silence (default 10 s) */
  keepaliveMs?: number;
  backoffMinMs?: number;
  backoffMaxMs?: number;
  onChange?: () => void;
}

type RowUpdate = { old?: Record<string, unknown>; new?: Record<string, unknown> };
type TableUpdates = Record<string, Record<string, RowUpdate>>;

/** Pure: apply a monitor's table-updates to a replica (RFC 7047 §4.1.6). */
export function applyUpdates(replica: Map<string, Table>, updates: TableUpdates): void {
  for (const [table, rows] of Object.entries(updates)) {
    let t = replica.get(table);
    if (!t) replica.set(table, (t = new Map()));
    for (const [uuid, u] of Object.entries(rows)) {
      if (u.new) t.set(uuid, { ...(t.get(uuid) ?? {}), ...u.new, _uuid: uuid });
      else t.delete(uuid);
    }
  }
}

export class OvsdbClient {
  private conn: JsonRpcConnection | undefined;
  private replica = new Map<string, Table>();
  private ready = false;
  private stopped = false;
  private readonly backoff: Backoff;
  private waiters: { resolve: () => void; reject: (e: Error) => void }[] = [];
  private lastTraffic = Date.now();
  private keepalive: NodeJS.Timeout | undefined;
  private reconnectTimer: NodeJS.Timeout | undefined;
  /** connections made so far (1 after the first; more after reconnects) */
  generation = 0;
  readonly db: string;

  constructor(private readonly o: OvsdbClientOptions) {
    this.db = o.database ?? 'Open_vSwitch';
    this.backoff = new Backoff({ minMs: o.backoffMinMs ?? 100, maxMs: o.backoffMaxMs ?? 2000 });
  }

  start(): void {
    void this.connect();
    const every = this.o.keepaliveMs ?? 10_000;
    this.keepalive = setInterval(() => {
      if (this.ready && this.conn && Date.now() - this.lastTraffic > every)
        this.conn.request('echo', ['gremesh'], every).then(
          () => (this.lastTraffic = Date.now()),
          () => {}, // the connection closes itself and reconnects
        );
    }, every);
  }

  stop(): void {
    this.stopped = true;
    if (this.keepalive) clearInterval(this.keepalive);
    if (this.reconnectTimer) clearTimeout(this.reconnectTimer);
    this.conn?.close();
    for (const w of this.waiters.splice(0)) w.reject(new Error('OVSDB client stopped'));
  }

  get connected(): boolean {
    return this.ready;
  }

  /** resolves once connected and the replica holds the monitor's contents; rejects after timeoutMs */
  whenReady(timeoutMs = 10_000): Promise<void> {
    if (this.ready) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiters = this.waiters.filter((w) => w.resolve !== done);
        reject(new Error(`OVSDB ${this.o.target} not reachable within ${timeoutMs} ms`));
      }, timeoutMs);
      const done = () => {
        clearTimeout(timer);
        resolve();
      };
      this.waiters.push({ resolve: done, reject });
    });
  }

  /** The replicated rows of a table (empty until the first monitor answered). */
  rows(table: string): Row[] {
    return [...(this.replica.get(table)?.values() ?? [])];
  }

  private async connect(): Promise<void> {
    if (this.stopped) return;
    try {
      const conn = await JsonRpcConnection.connect(this.o.target, {
        timeoutMs: this.o.timeoutMs ?? 10_000,
        onNotify: (method, params) => {
          this.lastTraffic = Date.now();
          if (method === 'update' && params[0] === 'gremesh') {
            applyUpdates(this.replica, params[1] as TableUpdates);
            this.o.onChange?.();
          }
        },
        onClose: (err) => this.lost(conn, err),
      });
      if (this.stopped) return conn.close();
      this.conn = conn;
      const requests = Object.fromEntries(Object.entries(this.o.tables).map(([t, columns]) => [t, { columns }]));
      const initial = (await conn.request('monitor', [this.db, 'gremesh', requests])) as TableUpdates;
      const fresh = new Map<string, Table>();
      for (const t of Object.keys(this.o.tables)) fresh.set(t, new Map());
      applyUpdates(fresh, initial);
      this.replica = fresh;
      this.lastTraffic = Date.now();
      this.ready = true;
      this.generation++;
      this.backoff.reset();
      this.o.log.debug({ target: this.o.target, generation: this.generation }, 'OVSDB monitor established');
      for (const w of this.waiters.splice(0)) w.resolve();
      this.o.onChange?.();
    } catch (e) {
      this.o.log.debug({ err: (e as Error).message, retryMs: this.backoff.peek() }, 'OVSDB connection failed');
      this.conn?.close(e as Error);
      this.scheduleReconnect();
    }
  }

  private lost(conn: JsonRpcConnection, err?: Error): void {
    if (this.conn !== conn) return;
    this.conn = undefined;
    this.ready = false;
    if (this.stopped) return;
    this.o.log.debug({ err: err?.message }, 'OVSDB connection lost; reconnecting');
    this.scheduleReconnect();
  }

  private scheduleReconnect(): void {
    if (this.stopped || this.reconnectTimer) return;
    const wait = this.backoff.next();
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = undefined;
      void this.connect();
    }, wait);
  }

  /**
   * One transaction (RFC 7047 §5.2): every operation or none. Rejects with the first
   * operation error. The results of the operations, in order.
   */
  async transact(ops: object[], timeoutMs?: number): Promise<unknown[]> {
    await this.whenReady(timeoutMs ?? this.o.timeoutMs ?? 10_000);
    const res = (await this.conn!.request('transact', [this.db, ...ops], timeoutMs)) as ({
      error?: string;
      details?: string;
    } | null)[];
    const bad = res.find((r) => r && typeof r === 'object' && 'error' in r && r.error);
    if (bad)
      throw new JsonRpcError(`OVSDB transaction failed: ${bad.error}${bad.details ? `: ${bad.details}` : ''}`, bad);
    if (res.length < ops.length) throw new JsonRpcError('OVSDB transaction answered fewer results than operations');
    return res;
  }
}
