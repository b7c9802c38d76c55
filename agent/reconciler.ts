// One reconcile loop: inputs only mark the state dirty; a pass recomputes the whole
// desired plane from the snapshot, observes OVS, applies the difference in one
// ovs-vsctl transaction and the flows in one OpenFlow bundle.
import type { Logger } from '../common/log.js';
import { computeDesired, computeFlows, diffOvs, localPorts, type AgentParams, type DesiredPlane } from './desired.js';
import type { LinkDriver } from './link-driver.js';
import type { LocalPort, OvsState, Snapshot } from './model.js';
import type { OvsDriver } from './ovs-driver.js';
import { computeNftRuleset, type GatewayAllow } from './nat.js';

/** a device checked with `ip` is checked again after this long even if nothing says it changed */
const LINK_RECHECK_MS = 30_000;
/** the NAT ruleset and Docker's DOCKER-USER rules are put in place again this often (a flush by hand, a firewall reload) */
const NAT_RECHECK_MS = 60_000;

export interface TunnelHealth {
  peer: string;
  remoteIp: string;
  port: string;
  bfdState: string;
  forwarding: boolean;
}

export interface PassResult {
  revision: number;
  desired: DesiredPlane;
  locals: LocalPort[];
  tunnels: TunnelHealth[];
  flows: number;
  changedPorts: number;
  flowsReplaced: boolean;
  ms: number;
}

/** The underlay address and routes, restored on the netdev bridge port if OVS restarts. */
export interface UnderlayKeeper {
  dev: string;
  cidr: string;
  routes: string[][];
}

export interface ReconcilerOptions {
  ovs: OvsDriver;
  links: LinkDriver;
  params: AgentParams;
  log: Logger;
  resyncMs: number;
  probeMs: number;
  underlay?: UnderlayKeeper;
  restoreUnderlay?: (u: UnderlayKeeper, o: OvsState) => Promise<void>;
  onPass?: (r: PassResult) => void;
  /** the gateways' NAT ruleset (nftables), applied when it changes; active: this host has a gateway */
  applyNat?: (ruleset: string, active: boolean) => Promise<void>;
  /** what containers may reach on their gateway beyond ICMP (--gateway-allow) */
  gatewayAllow?: GatewayAllow[];
}

export class Reconciler {
  private snapshot: Snapshot | undefined;
  private dirty = false;
  private running = false;
  private timers: NodeJS.Timeout[] = [];
  private stopMonitor: () => void = () => {};
  private lastFlows = '';
  private lastNat = '';
  private lastNatAt = 0;
  /** devices whose addresses/routes were last found right: their ifindex, what was wanted, when */
  private verified = new Map<string, { ifindex: number; want: string; at: number }>();
  private expectedFlows = -1;
  private failures = 0;
  private stopped = false;
  lastPass: PassResult | undefined;
  /** passes started so far; a waiter is resolved by the first pass that started after it asked */
  private started = 0;
  private waiters: { after: number; resolve: () => void }[] = [];

  constructor(private readonly o: ReconcilerOptions) {}

  setSnapshot(s: Snapshot): void {
    this.snapshot = s;
    this.markDirty('snapshot');
  }

  markDirty(_reason: string): void {
    this.dirty = true;
    if (!this.running && !this.stopped) void this.runPasses();
  }

  start(): void {
    this.stopMonitor = this.o.ovs.monitor(() => this.markDirty('ovsdb'));
    this.timers.push(setInterval(() => this.markDirty('resync'), this.o.resyncMs));
    this.timers.push(
      setInterval(() => {
        void this.probe();
      }, this.o.probeMs),
    );
    this.markDirty('start');
  }

  /** NAT and Docker's firewall rules are applied again in the next pass (dockerd came back and may have rewritten its chains) */
  refreshNat(reason: string): void {
    this.lastNat = '';
    this.markDirty(reason);
  }

  stop(): void {
    this.stopped = true;
    this.stopMonitor();
    for (const t of this.timers) clearInterval(t);
  }

  /** resolves after the pass running now (it saw every change made before it started) or, when idle, the next one */
  nextPass(): Promise<void> {
    return new Promise((resolve) =>
      this.waiters.push({ after: this.running ? this.started - 1 : this.started, resolve }),
    );
  }

  /** marks dirty and resolves after a pass that started after this call: one that sees what the caller just changed */
  markDirtyAndWait(reason: string): Promise<void> {
    const p = new Promise<void>((resolve) => this.waiters.push({ after: this.started, resolve }));
    this.markDirty(reason);
    return p;
  }

  private async probe(): Promise<void> {
    if (this.running || this.expectedFlows < 0) return;
    const n = await this.o.ovs.flowCount(this.o.params.bridge);
    if (n !== this.expectedFlows) {
      this.o.log.warn({ have: n, want: this.expectedFlows }, 'flows drifted (ovs-vswitchd restarted?); repairing');
      this.lastFlows = '';
      this.markDirty('probe');
    }
  }

  private async runPasses(): Promise<void> {
    this.running = true;
    try {
      while (this.dirty && !this.stopped) {
        this.dirty = false;
        const n = ++this.started;
        try {
          const r = await this.pass();
          this.failures = 0;
          if (r) {
            this.lastPass = r;
            this.o.onPass?.(r);
          }
        } catch (e) {
          this.failures++;
          const wait = Math.min(5000, 100 * 2 ** Math.min(this.failures, 6));
          this.o.log.warn({ err: (e as Error).message, retryMs: wait }, 'reconcile pass failed');
          this.lastFlows = '';
          this.lastNat = '';
          setTimeout(() => this.markDirty('retry'), wait);
        }
        const done = this.waiters.filter((w) => w.after < n);
        this.waiters = this.waiters.filter((w) => w.after >= n);
        for (const w of done) w.resolve();
      }
    } finally {
      this.running = false;
    }
  }

  /**
   * Runs `ensure` (addresses and routes of a device, checked with `ip`) only when the
   * device is new or was recreated (another ifindex, e.g. ovs-vswitchd restarted and made
   * its internal ports again), when what we want of it changed, or 30 s after the last
   * check (drift made by hand). Saves 3-4 execs in most passes.
   */
  private async keepLink(dev: string, want: string, o: OvsState, ensure: () => Promise<void>): Promise<void> {
    const i = o.interfaces.find((x) => x.name === dev);
    const ifindex = i && i.ofport > 0 ? i.ifindex : 0; // not usable before OVS gives it a port number
    const v = this.verified.get(dev);
    if (ifindex && v && v.ifindex === ifindex && v.want === want && Date.now() - v.at <= LINK_RECHECK_MS) return;
    await ensure();
    if (ifindex) this.verified.set(dev, { ifindex, want, at: Date.now() });
  }

  /** One pass. Does nothing until a snapshot (from the coordinator or the cache) is known. */
  async pass(): Promise<PassResult | undefined> {
    const s = this.snapshot;
    if (!s) return undefined;
    const t0 = performance.now();
    const { ovs, params } = this.o;
    const desired = computeDesired(s, params);
    let observed = await ovs.observe();
    const { underlay, restoreUnderlay } = this.o;
    if (underlay && restoreUnderlay)
      await this.keepLink(underlay.dev, JSON.stringify(underlay), observed, () => restoreUnderlay(underlay, observed));
    const cmds = diffOvs(desired, observed);
    if (cmds.length) {
      await ovs.transact(cmds);
      observed = await ovs.observe();
      this.o.log.info({ commands: cmds.length, revision: s.revision }, 'ovs ports updated');
    }
    for (const g of desired.gateways) {
      const cidr = `${g.ip}/${g.prefixLen}`;
      await this.keepLink(g.port, `${cidr} mtu ${g.mtu}`, observed, () =>
        this.o.links.ensureAddress(g.port, cidr, g.mtu),
      );
    }
    if (this.o.applyNat) {
      const cidrOf = new Map(s.networks.map((n) => [n.name, n.cidr]));
      const ruleset = computeNftRuleset(
        desired.gateways.map((g) => ({ ...g, networkCidr: cidrOf.get(g.network)! })),
        this.o.gatewayAllow,
      );
      if (ruleset !== this.lastNat || Date.now() - this.lastNatAt > NAT_RECHECK_MS) {
        await this.o.applyNat(ruleset, desired.gateways.length > 0);
        this.lastNat = ruleset;
        this.lastNatAt = Date.now();
      }
    }
    const locals = localPorts(observed, params.bridge, desired);
    const onBridge = observed.interfaces.filter((i) => i.bridge === params.bridge);
    const present = new Set(onBridge.filter((i) => i.ofport > 0).map((i) => i.name));
    const flows = computeFlows(s, desired, locals, present);
    const text = flows.join('\n');
    let flowsReplaced = false;
    if (text !== this.lastFlows) {
      await ovs.replaceFlows(params.bridge, flows);
      if (this.lastFlows !== '') this.o.log.info({ flows: flows.length, revision: s.revision }, 'flows updated');
      this.lastFlows = text;
      flowsReplaced = true;
    }
    this.expectedFlows = flows.length;
    const byPort = new Map(onBridge.map((i) => [i.name, i]));
    const tunnels = desired.tunnels.map((t) => {
      const i = byPort.get(t.port);
      return {
        peer: t.peer,
        remoteIp: t.remoteIp,
        port: t.port,
        bfdState: i?.bfdStatus.state ?? '',
        forwarding: i?.bfdStatus.forwarding === 'true',
      };
    });
    return {
      revision: s.revision,
      desired,
      locals,
      tunnels,
      flows: flows.length,
      changedPorts: cmds.length,
      flowsReplaced,
      ms: Math.round(performance.now() - t0),
    };
  }
}
