// Status to the coordinator: at once when this host's endpoints or tunnel health (BFD)
// change (peers pre-install forwarding from them), and every --report seconds for
// tunnel health.
import { reportableEndpoints } from '../bridge/desired.js';
import type { PassResult } from '../bridge/reconciler.js';
import type { AttachError } from '../docker/containers.js';
import type { Snapshot } from '../model.js';
import type { Logger } from '../../common/log.js';

export interface ReportedEndpoint {
  network: string;
  host: string;
  mac: string;
  ip: string;
  containerId: string;
  containerName: string;
  names: string[];
  group: string;
  /** '' none */
  ip6: string;
}

export interface ReportThrottleOptions {
  host: string;
  intervalMs: number;
  lastPass: () => PassResult | undefined;
  snapshot: () => Snapshot | undefined;
  attachErrors: () => AttachError[];
  send: (r: {
    tunnels: PassResult['tunnels'];
    endpoints: ReportedEndpoint[];
    attachErrors: AttachError[];
  }) => Promise<unknown>;
  log: Logger;
}

export class ReportThrottle {
  private lastEndpoints = '';
  private lastTunnels = '';
  private timer: NodeJS.Timeout | undefined;
  constructor(private readonly o: ReportThrottleOptions) {}

  private reportable(r: PassResult): ReportedEndpoint[] {
    return reportableEndpoints(r.locals, this.o.snapshot()?.slices ?? []).map((l) => ({
      network: l.network,
      host: this.o.host,
      mac: l.mac,
      ip: l.ip,
      containerId: l.containerId,
      containerName: l.containerName ?? '',
      names: l.names ?? [],
      group: l.group ?? '',
      ip6: l.ip6 ?? '',
    }));
  }

  report(): void {
    const r = this.o.lastPass();
    if (!r) return;
    const endpoints = this.reportable(r);
    this.lastEndpoints = JSON.stringify(endpoints);
    this.o
      .send({ tunnels: r.tunnels, endpoints, attachErrors: this.o.attachErrors() })
      .catch((e: Error) => this.o.log.debug({ err: e.message }, 'status report failed'));
  }

  /** after each pass: report at once when endpoints or tunnel health changed */
  onPass(r: PassResult): void {
    const eps = JSON.stringify(this.reportable(r));
    const tun = JSON.stringify(r.tunnels);
    if (eps !== this.lastEndpoints || tun !== this.lastTunnels) {
      this.lastTunnels = tun;
      this.report();
    }
  }

  start(): void {
    this.timer = setInterval(() => this.report(), this.o.intervalMs);
  }
  stop(): void {
    clearInterval(this.timer);
  }
}
