// OvsDriver: every OVS side effect of the agent, behind one interface.
// VsctlOvsDriver runs ovs-vsctl / ovs-ofctl / ovsdb-client through the exec runner.
import { spawn } from 'node:child_process';
import * as path from 'node:path';
import type { Runner } from '../common/exec.js';
import type { Logger } from '../common/log.js';
import { COOKIE, type OvsState } from './model.js';
import { parseOvsState } from './ovsdb-json.js';
import { vsctlTransaction } from './desired.js';

export interface OvsDriver {
  observe(): Promise<OvsState>;
  /** one ovs-vsctl transaction; waits until ovs-vswitchd has applied it */
  transact(cmds: string[][]): Promise<void>;
  /** atomically make the bridge's flows exactly these (OpenFlow bundle) */
  replaceFlows(bridge: string, flows: string[]): Promise<void>;
  /** how many of our flows the bridge holds (-1: bridge unreachable) */
  flowCount(bridge: string): Promise<number>;
  /** call onChange whenever ports/interfaces change; returns a stop function */
  monitor(onChange: () => void): () => void;
}

export interface VsctlOptions {
  db: string;
  run: Runner;
  log: Logger;
}

export class VsctlOvsDriver implements OvsDriver {
  private readonly db: string;
  private readonly run: Runner;
  private readonly log: Logger;

  constructor(o: VsctlOptions) {
    this.db = o.db;
    this.run = o.run;
    this.log = o.log;
  }

  /** the bridge's OpenFlow management socket, next to the db socket */
  private mgmt(bridge: string): string {
    const m = /^unix:(.*)$/.exec(this.db);
    return m ? `unix:${path.join(path.dirname(m[1]!), `${bridge}.mgmt`)}` : bridge;
  }

  async observe(): Promise<OvsState> {
    const r = await this.run([
      'ovs-vsctl',
      `--db=${this.db}`,
      '--timeout=10',
      '--format=json',
      '--data=json',
      '--',
      '--columns=_uuid,name,datapath_type,fail_mode,protocols,external_ids,ports',
      'list',
      'Bridge',
      '--',
      '--columns=_uuid,name,interfaces,external_ids',
      'list',
      'Port',
      '--',
      '--columns=_uuid,name,type,ofport,options,external_ids,bfd_status,mac_in_use,mtu,error,link_state,ifindex',
      'list',
      'Interface',
    ]);
    return parseOvsState(r.stdout);
  }

  async transact(cmds: string[][]): Promise<void> {
    if (cmds.length === 0) return;
    await this.run(['ovs-vsctl', `--db=${this.db}`, '--timeout=20', ...vsctlTransaction(cmds)]);
  }

  async replaceFlows(bridge: string, flows: string[]): Promise<void> {
    await this.run(['ovs-ofctl', '-O', 'OpenFlow14', '--bundle', 'replace-flows', this.mgmt(bridge), '-'], {
      input: `${flows.join('\n')}\n`,
      timeoutMs: 20_000,
    });
  }

  async flowCount(bridge: string): Promise<number> {
    try {
      const r = await this.run(
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
    let stopped = false;
    let child: ReturnType<typeof spawn> | undefined;
    let backoff = 200;
    const start = () => {
      if (stopped) return;
      child = spawn(
        'ovsdb-client',
        [
          'monitor',
          this.db,
          'Open_vSwitch',
          'Interface',
          'name,ofport,external_ids,bfd_status,ifindex',
          '--format=json',
        ],
        { stdio: ['ignore', 'pipe', 'ignore'] },
      );
      child.stdout!.on('data', () => {
        backoff = 200;
        onChange();
      });
      child.on('error', () => {});
      child.on('exit', () => {
        if (stopped) return;
        this.log.debug({ backoff }, 'ovsdb monitor exited; restarting');
        onChange();
        setTimeout(start, backoff);
        backoff = Math.min(backoff * 2, 5000);
      });
    };
    start();
    return () => {
      stopped = true;
      child?.kill();
    };
  }
}
