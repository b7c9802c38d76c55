// OvsDriver: every OVS side effect of the agent, behind one interface.
// OvsdbOvsDriver speaks OVSDB itself (a persistent connection with a monitor-fed
// replica: observing is a read of memory, a change is one transaction) and programs
// flows on the bridge's management socket: a change as one native OpenFlow bundle on a
// persistent connection (agent/openflow/), the whole table (start, repair) and the
// fallback with ovs-ofctl bundles (typed flows rendered to text: flows/render.ts).
import * as path from 'node:path';
import type { Runner } from '../../common/exec.js';
import type { Logger } from '../../common/log.js';
import { COOKIE, type OvsState } from '../model.js';
import { stateFromRows } from './ovsdb/rows.js';
import { toTransaction, type OvsOp } from './ops.js';
import { OvsdbClient, type MonitorSpec } from './ovsdb/client.js';
import type { OpenflowConnection } from './openflow/connection.js';
import type { Flow } from './flows/flow.js';
import { renderFlow, renderKey } from './flows/render.js';

export interface OvsDriver {
  /** what OVS holds (a read of the replica; waits for the database when not connected); the same object until it changes */
  observe(): Promise<OvsState>;
  /** the operations as one transaction; resolves once ovs-vswitchd has applied it (its cur_cfg reached our next_cfg) */
  apply(ops: OvsOp[]): Promise<void>;
  /** atomically make the bridge's flows exactly these (one OpenFlow bundle): start, resync, repair */
  replaceFlows(bridge: string, flows: Flow[]): Promise<void>;
  /** atomically delete these flows (by table, priority and match) and add these (one OpenFlow bundle) */
  updateFlows(bridge: string, remove: Flow[], add: Flow[]): Promise<void>;
  /** how many of our flows the bridge holds (-1: bridge unreachable) */
  flowCount(bridge: string): Promise<number>;
  /** call onChange whenever the replica changes or the database connection comes back; returns a stop function */
  monitor(onChange: () => void): () => void;
}

/** the tables and columns the agent reads */
export const MONITORED: MonitorSpec = {
  Open_vSwitch: ['bridges', 'next_cfg', 'cur_cfg'],
  Bridge: ['name', 'datapath_type', 'fail_mode', 'protocols', 'external_ids', 'ports'],
  Port: ['name', 'interfaces', 'external_ids'],
  Interface: [
    'name',
    'type',
    'ofport',
    'options',
    'external_ids',
    'bfd_status',
    'mac_in_use',
    'mtu',
    'error',
    'link_state',
    'ifindex',
  ],
};

/** the flow helpers, where they were before flows were typed */
export { flowDelta, flowKey, resolvePorts, resolvePorts as resolvePortNames } from './flows/flow.js';

export interface OvsdbDriverOptions {
  db: string;
  run: Runner;
  log: Logger;
  /** how long a transaction may wait for ovs-vswitchd to apply it */
  applyTimeoutMs?: number;
}

export class OvsdbOvsDriver implements OvsDriver {
  readonly client: OvsdbClient;
  private listeners = new Set<() => void>();
  private openflow: OpenflowConnection | undefined;
  /** the state read from the replica, kept until the replica changes: callers may compare by identity */
  private observed: OvsState | undefined;
  /** flow changes sent natively / with ovs-ofctl (status, benchmarks) */
  readonly flowUpdates = { native: 0, ofctl: 0 };

  constructor(private readonly o: OvsdbDriverOptions) {
    this.client = new OvsdbClient({
      target: o.db,
      tables: MONITORED,
      log: o.log,
      onChange: () => {
        this.observed = undefined;
        for (const l of [...this.listeners]) l();
      },
    });
  }

  start(): void {
    this.client.start();
  }

  stop(): void {
    this.client.stop();
  }

  /** ovs-vswitchd's run directory (the db socket's), if the db is a unix socket */
  rundir(): string | undefined {
    const m = /^unix:(.*)$/.exec(this.o.db);
    return m ? path.dirname(m[1]!) : undefined;
  }

  /** the bridge's OpenFlow management socket (a unix path next to the db socket), if the db is a unix socket */
  mgmtSocket(bridge: string): string | undefined {
    const m = /^unix:(.*)$/.exec(this.o.db);
    return m ? path.join(path.dirname(m[1]!), `${bridge}.mgmt`) : undefined;
  }

  /** what ovs-ofctl is pointed at */
  private mgmt(bridge: string): string {
    const sock = this.mgmtSocket(bridge);
    return sock ? `unix:${sock}` : bridge;
  }

  async observe(): Promise<OvsState> {
    await this.client.whenReady();
    this.observed ??= stateFromRows(
      this.client.rows('Bridge'),
      this.client.rows('Port'),
      this.client.rows('Interface'),
    );
    return this.observed;
  }

  async apply(ops: OvsOp[]): Promise<void> {
    if (ops.length === 0) return;
    await this.client.whenReady();
    const txn = toTransaction(ops, {
      bridgeExists: (n) => this.client.rows('Bridge').some((r) => r.name === n),
      portUuid: (n) => this.client.rows('Port').find((r) => r.name === n)?._uuid,
    });
    if (txn.length === 0) return;
    const timeoutMs = this.o.applyTimeoutMs ?? 20_000;
    const res = await this.client.transact(
      [
        ...txn,
        { op: 'mutate', table: 'Open_vSwitch', where: [], mutations: [['next_cfg', '+=', 1]] },
        { op: 'select', table: 'Open_vSwitch', where: [], columns: ['next_cfg'] },
      ],
      timeoutMs,
    );
    const want = Number((res.at(-1) as { rows: { next_cfg: number }[] }).rows[0]?.next_cfg ?? 0);
    await this.appliedBy(want, timeoutMs);
  }

  /** resolves once ovs-vswitchd reports cur_cfg >= want (it has reconfigured from the database) */
  private appliedBy(want: number, timeoutMs: number): Promise<void> {
    const done = () => this.client.rows('Open_vSwitch').some((r) => Number(r.cur_cfg) >= want);
    if (done()) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const check = () => {
        if (!done()) return;
        cleanup();
        resolve();
      };
      const timer = setTimeout(() => {
        cleanup();
        reject(new Error(`ovs-vswitchd did not apply the change within ${timeoutMs} ms (is it running?)`));
      }, timeoutMs);
      const cleanup = () => {
        clearTimeout(timer);
        this.listeners.delete(check);
      };
      this.listeners.add(check);
    });
  }

  async replaceFlows(bridge: string, flows: Flow[]): Promise<void> {
    await this.o.run(['ovs-ofctl', '-O', 'OpenFlow14', '--bundle', 'replace-flows', this.mgmt(bridge), '-'], {
      input: `${flows.map(renderFlow).join('\n')}\n`,
      timeoutMs: 20_000,
    });
  }

  /** flow changes go over this connection while it is up (it must be to this bridge's management socket) */
  useOpenflow(c: OpenflowConnection | undefined): void {
    this.openflow = c;
  }

  async updateFlows(bridge: string, remove: Flow[], add: Flow[]): Promise<void> {
    if (remove.length + add.length === 0) return;
    if (this.openflow?.connected) {
      await this.openflow.updateFlows(remove, add);
      this.flowUpdates.native++;
      return;
    }
    this.flowUpdates.ofctl++;
    const lines = [...remove.map((k) => `delete_strict ${renderKey(k)}`), ...add.map((f) => `add ${renderFlow(f)}`)];
    await this.o.run(['ovs-ofctl', '-O', 'OpenFlow14', '--bundle', 'add-flows', this.mgmt(bridge), '-'], {
      input: `${lines.join('\n')}\n`,
      timeoutMs: 20_000,
    });
  }

  /** our flows of one table as `ovs-ofctl dump-flows` prints them (with n_packets); a diagnostic, not a hot path */
  async dumpFlows(bridge: string, table: number): Promise<string[]> {
    const r = await this.o.run(
      ['ovs-ofctl', '-O', 'OpenFlow14', 'dump-flows', this.mgmt(bridge), `table=${table},cookie=${COOKIE}/-1`],
      { timeoutMs: 5_000 },
    );
    return r.stdout.split('\n').filter((l) => l.includes('priority='));
  }

  async flowCount(bridge: string): Promise<number> {
    try {
      const r = await this.o.run(
        ['ovs-ofctl', '-O', 'OpenFlow14', 'dump-aggregate', this.mgmt(bridge), `cookie=${COOKIE}/-1`],
        { timeoutMs: 5_000 },
      );
      const m = /flow_count=(\d+)/.exec(r.stdout);
      return m ? Number(m[1]) : -1;
    } catch {
      return -1;
    }
  }

  monitor(onChange: () => void): () => void {
    this.listeners.add(onChange);
    return () => this.listeners.delete(onChange);
  }
}
