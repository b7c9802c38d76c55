// The bridge's reconcile loop: inputs only mark the state dirty; a pass recomputes the
// whole desired plane from the snapshot, observes OVS (a read of the OVSDB replica),
// applies the difference in one OVSDB transaction and the flows that changed in one
// OpenFlow bundle (all of them after a start, a failure, ovs-vswitchd losing them, or
// the periodic repair).
import type { Logger } from '../../common/log.js';
import { computeDesired, computeFlows, diffOvs, localPorts, type AgentParams, type DesiredPlane } from './desired.js';
import type { LinkDriver } from '../net/link-driver.js';
import type { LocalPort, OvsState, Snapshot } from '../model.js';
import { flowDelta, resolvePortNames, type OvsDriver } from '../ovs/driver.js';
import type { Flow } from '../ovs/flows/flow.js';
import { Loop } from '../loop.js';
import type { TunnelHealth } from '../../common/tunnel-health.js';
import { computeNftRuleset, type GatewayAllow } from '../net/nat.js';

export type { TunnelHealth } from '../../common/tunnel-health.js';

export interface PassResult {
  revision: number;
  desired: DesiredPlane;
  locals: LocalPort[];
  tunnels: TunnelHealth[];
  flows: number;
  /** OpenFlow number of every port on the bridge whose flows this pass installed (by name) */
  ofports: Map<string, number>;
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
  /** a pass at least this often (reads memory: cheap) */
  resyncMs: number;
  /**
   * how often to count the bridge's flows with ovs-ofctl to notice ovs-vswitchd lost them;
   * 0: never (the OpenFlow connection tells flowsLost instead, with no process)
   */
  probeMs: number;
  /** full repairs (every flow, addresses checked with ip, NAT and Docker rules) at least this often; default 10 min */
  repairMs?: number;
  underlay?: UnderlayKeeper;
  restoreUnderlay?: (u: UnderlayKeeper, o: OvsState) => Promise<void>;
  onPass?: (r: PassResult) => void;
  /** the gateways' NAT ruleset (nftables), applied when it changes; active: this host has a gateway */
  applyNat?: (ruleset: string, active: boolean) => Promise<void>;
  /** what containers may reach on their gateway beyond ICMP (--gateway-allow) */
  gatewayAllow?: GatewayAllow[];
  /** names on (--dns): the host's upstream servers, whose queries go to each network's resolver */
  dns?: { upstreams: { ip: string }[] };
}

export class Reconciler {
  private snapshot: Snapshot | undefined;
  private timers: NodeJS.Timeout[] = [];
  private stopMonitor: () => void = () => {};
  /** the flows installed by our last pass, port names resolved; undefined: not known, replace them all */
  private installed: Flow[] | undefined;
  private lastNat = '';
  private lastCrossFamily = '';
  private lastNatAt = 0;
  /** devices whose addresses/routes were last found right: their ifindex, what was wanted, when */
  private verified = new Map<string, { ifindex: number; want: string; at: number }>();
  private expectedFlows = -1;
  private readonly loop: Loop;
  private readonly repairMs: number;
  lastPass: PassResult | undefined;
  private portWaiters: { want: Map<string, number>; resolve: () => void }[] = [];
  private memo:
    { s: Snapshot; o: OvsState; locals: LocalPort[]; ofports: Map<string, number>; flows: Flow[] } | undefined;

  constructor(private readonly o: ReconcilerOptions) {
    this.repairMs = o.repairMs ?? 600_000;
    this.loop = new Loop({
      name: 'reconcile',
      log: o.log,
      pass: async () => {
        const r = await this.pass();
        if (r) {
          this.lastPass = r;
          this.o.onPass?.(r);
        }
        this.wakePortWaiters(false);
      },
      onError: () => {
        this.installed = undefined;
        this.lastNat = '';
        // the caller brings its container up either way, as after any pass (the next pass repairs)
        this.wakePortWaiters(true);
      },
    });
  }

  setSnapshot(s: Snapshot): void {
    this.snapshot = s;
    this.markDirty('snapshot');
  }

  markDirty(reason: string): void {
    this.loop.markDirty(reason);
  }

  start(): void {
    this.stopMonitor = this.o.ovs.monitor(() => this.markDirty('ovsdb'));
    this.timers.push(setInterval(() => this.markDirty('resync'), this.o.resyncMs));
    if (this.o.probeMs > 0)
      this.timers.push(
        setInterval(() => {
          void this.probe();
        }, this.o.probeMs),
      );
    this.timers.push(
      setInterval(() => {
        this.installed = undefined;
        this.markDirty('repair');
      }, this.repairMs),
    );
    this.markDirty('start');
  }

  /** ovs-vswitchd may have lost every flow (it restarted, or the bridge was made again): install them all again */
  flowsLost(reason: string): void {
    this.installed = undefined;
    this.markDirty(reason);
  }

  /** NAT and Docker's firewall rules are applied again in the next pass (dockerd came back and may have rewritten its chains) */
  refreshNat(reason: string): void {
    this.lastNat = '';
    this.markDirty(reason);
  }

  stop(): void {
    this.loop.stop();
    this.stopMonitor();
    for (const t of this.timers) clearInterval(t);
  }

  /** resolves after the pass running now (it saw every change made before it started) or, when idle, the next one */
  nextPass(): Promise<void> {
    return this.loop.nextPass();
  }

  /**
   * Resolves once a finished pass has installed the flows of these ports at these OpenFlow
   * numbers (or a pass failed). Often already true: the OVSDB monitor shows a new port
   * with its number as soon as ovs-vswitchd has it, and that alone starts a pass.
   */
  portsForwarding(plugged: Map<string, number>, timeoutMs = 10_000): Promise<void> {
    this.markDirty('ports');
    // a port without a number gets no flows: nothing to wait for
    const want = new Map([...plugged].filter(([, n]) => n > 0));
    if (this.forwards(want)) return Promise.resolve();
    return new Promise((resolve) => {
      const w = { want, resolve: () => (clearTimeout(timer), resolve()) };
      // never hold the container loop forever: the interface comes up, the next pass repairs
      const timer = setTimeout(() => {
        this.portWaiters = this.portWaiters.filter((x) => x !== w);
        this.o.log.warn({ ports: [...want.keys()] }, 'no pass installed the flows of new ports in time');
        resolve();
      }, timeoutMs);
      this.portWaiters.push(w);
    });
  }

  private forwards(want: Map<string, number>): boolean {
    const have = this.lastPass?.ofports;
    return have !== undefined && [...want].every(([name, n]) => have.get(name) === n);
  }

  private wakePortWaiters(all: boolean): void {
    const keep: typeof this.portWaiters = [];
    for (const w of this.portWaiters)
      if (all || this.forwards(w.want)) w.resolve();
      else keep.push(w);
    this.portWaiters = keep;
  }

  /** marks dirty and resolves after a pass that started after this call: one that sees what the caller just changed */
  markDirtyAndWait(reason: string): Promise<void> {
    return this.loop.markDirtyAndWait(reason);
  }

  private async probe(): Promise<void> {
    if (this.expectedFlows < 0) return;
    const n = await this.o.ovs.flowCount(this.o.params.bridge);
    if (n !== this.expectedFlows) {
      this.o.log.warn({ have: n, want: this.expectedFlows }, 'flows drifted (ovs-vswitchd restarted?); repairing');
      this.flowsLost('probe');
    }
  }

  /**
   * Runs `ensure` (addresses and routes of a device, checked with `ip`) only when the
   * device is new or was recreated (another ifindex, e.g. ovs-vswitchd restarted and made
   * its internal ports again), when what we want of it changed, or a repair period after the last
   * check (drift made by hand). Saves 3-4 execs in most passes.
   */
  private async keepLink(dev: string, want: string, o: OvsState, ensure: () => Promise<void>): Promise<void> {
    const i = o.interfaces.find((x) => x.name === dev);
    const ifindex = i && i.ofport > 0 ? i.ifindex : 0; // not usable before OVS gives it a port number
    const v = this.verified.get(dev);
    if (ifindex && v && v.ifindex === ifindex && v.want === want && Date.now() - v.at <= this.repairMs) return;
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
    const cross = (desired.crossFamily ?? []).join(',');
    if (cross !== this.lastCrossFamily) {
      this.lastCrossFamily = cross;
      if (cross)
        this.o.log.warn(
          { peers: desired.crossFamily, underlayIp: s.underlayIp },
          `no tunnel to ${cross}: their underlay is of the other IP family (GRE keeps its outer family: IPv4 hosts tunnel to IPv4 hosts, IPv6 to IPv6)`,
        );
    }
    let observed = await ovs.observe();
    const { underlay, restoreUnderlay } = this.o;
    if (underlay && restoreUnderlay)
      await this.keepLink(underlay.dev, JSON.stringify(underlay), observed, () => restoreUnderlay(underlay, observed));
    const ops = diffOvs(desired, observed);
    if (ops.length) {
      await ovs.apply(ops);
      observed = await ovs.observe();
      this.o.log.info(
        { operations: ops.length, revision: s.revision, uptimeMs: Math.round(performance.now()) },
        'ovs ports updated',
      );
    }
    for (const g of desired.gateways) {
      const cidr = `${g.ip}/${g.prefixLen}`;
      const cidr6 = g.ip6 ? `${g.ip6}/${g.prefixLen6}` : undefined;
      await this.keepLink(g.port, `${cidr} ${cidr6 ?? '-'} mtu ${g.mtu}`, observed, () =>
        this.o.links.ensureAddress(g.port, cidr, g.mtu, cidr6),
      );
    }
    if (this.o.applyNat) {
      const netOf = new Map(s.networks.map((n) => [n.name, n]));
      const ruleset = computeNftRuleset(
        desired.gateways.map((g) => ({
          ...g,
          networkCidr: netOf.get(g.network)!.cidr,
          ...(netOf.get(g.network)!.ipv6Cidr ? { networkCidr6: netOf.get(g.network)!.ipv6Cidr } : {}),
        })),
        this.o.gatewayAllow,
        params.datapath === 'netdev',
        this.o.dns,
        s.encryption && params.datapath === 'system' ? params.wireguardDevice : undefined,
      );
      if (ruleset !== this.lastNat || Date.now() - this.lastNatAt > this.repairMs) {
        await this.o.applyNat(ruleset, desired.gateways.length > 0);
        this.lastNat = ruleset;
        this.lastNatAt = Date.now();
      }
    }
    // the same snapshot and the same OVS state (the driver hands out one object until its
    // replica changes) give the same flows: a pass with nothing to do computes none
    const memo = this.memo?.s === s && this.memo.o === observed ? this.memo : undefined;
    const locals = memo?.locals ?? localPorts(observed, params.bridge, desired);
    const onBridge = observed.interfaces.filter((i) => i.bridge === params.bridge);
    // port numbers, not names: a flow of a port that is gone can still be deleted, and a
    // port made again under the same name (another number) changes its flows
    const ofports = memo?.ofports ?? new Map(onBridge.filter((i) => i.ofport > 0).map((i) => [i.name, i.ofport]));
    const flows = memo?.flows ?? resolvePortNames(computeFlows(s, desired, locals, new Set(ofports.keys())), ofports);
    this.memo = { s, o: observed, locals, ofports, flows };
    let flowsReplaced = false;
    if (!this.installed) {
      await ovs.replaceFlows(params.bridge, flows);
      this.installed = flows;
      flowsReplaced = true;
    } else if (this.installed !== flows) {
      const delta = flowDelta(this.installed, flows);
      if (delta.remove.length + delta.add.length) {
        await ovs.updateFlows(params.bridge, delta.remove, delta.add);
        this.installed = flows;
        flowsReplaced = true;
        this.o.log.info(
          { flows: flows.length, added: delta.add.length, removed: delta.remove.length, revision: s.revision },
          'flows updated',
        );
      }
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
        bfdDiagnostic: i?.bfdStatus.state === 'up' ? '' : (i?.bfdStatus.diagnostic ?? ''),
        bfdFlaps: Number(i?.bfdStatus.flap_count ?? 0) || 0,
      };
    });
    return {
      revision: s.revision,
      desired,
      locals,
      tunnels,
      flows: flows.length,
      ofports,
      changedPorts: ops.length,
      flowsReplaced,
      ms: Math.round((performance.now() - t0) * 100) / 100,
    };
  }
}
