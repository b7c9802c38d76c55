// The container side of the agent, as main, the control socket and the network plugin
// use it: a thin facade that wires three parts over the shared address table, OVS driver
// and link driver: the label loop (labelled and by-hand containers, label-loop.ts), the
// endpoint loop (Docker's endpoints, endpoint-loop.ts) and the plugin backend
// (plugin-backend.ts); plus `gremesh-agent attach`/`detach` by hand.
import type { Logger } from '../../common/log.js';
import { planAttachment, requestFromLabels, type AttachRequest } from './attachment.js';
import type { ContainerRuntime } from './runtime.js';
import { isIp6Key, release, type FileIpam } from './ipam.js';
import type { LinkDriver } from '../net/link-driver.js';
import type { Snapshot } from '../model.js';
import type { OvsDriver } from '../ovs/driver.js';
import { printable } from '../../common/text.js';
import { JsonFile } from '../state-file.js';
import { LabelLoop, type AttachError, type ManualTable } from './label-loop.js';
import { EndpointLoop, type DockerEndpoint } from './endpoint-loop.js';
import { NO_STATE, PluginBackend, type AddEndpoint } from './plugin-backend.js';

export { attachPhases } from './label-decisions.js';
export type { AttachError } from './label-loop.js';
export type { DockerEndpoint } from './endpoint-loop.js';
export type { AddEndpoint } from './plugin-backend.js';

export interface ContainerReconcilerOptions {
  /** the Docker event stream (re)connected */
  onDockerConnected?: () => void;
  runtime: ContainerRuntime;
  links: LinkDriver;
  ovs: OvsDriver;
  ipam: FileIpam;
  bridge: string;
  underlayMtu: number;
  /** OVS userspace datapath (netdev): container veths need tx offload off and a host-side ingress drop */
  userspace: boolean;
  stateDir: string;
  snapshot: () => Snapshot | undefined;
  /**
   * after ports changed: the network reconciler recomputes flows; resolves once the flows
   * of these new ports (name -> OpenFlow number) are installed
   */
  onChange: (plugged: Map<string, number>) => Promise<void>;
  /** metrics: an attach done (ms from Docker's start event) / a container left unattached (once per reason) */
  onAttached?: (ms: number, network: string) => void;
  onAttachError?: (reason: string) => void;
  /** the network plugin's name (its socket's): Docker networks of this driver are ours (default gremesh) */
  pluginName?: string;
  log: Logger;
}

export class ContainerReconciler {
  private readonly labels: LabelLoop;
  private readonly endpoints: EndpointLoop;
  private readonly backend: PluginBackend;
  /** containers attached by hand (attachments.json), read from disk at each use */
  private readonly manualFile: JsonFile<ManualTable>;

  constructor(private readonly o: ContainerReconcilerOptions) {
    const { runtime, links, ovs, ipam, bridge, underlayMtu, userspace, snapshot, onChange, log } = o;
    this.manualFile = new JsonFile<ManualTable>(`${o.stateDir}/attachments.json`, () => ({}));
    this.labels = new LabelLoop({
      runtime,
      links,
      ovs,
      ipam,
      bridge,
      underlayMtu,
      userspace,
      snapshot,
      manual: this.manualFile,
      endpoints: () => Object.values(this.endpoints.eps),
      onResync: () => this.endpoints.sweep(),
      afterPass: () => this.endpoints.loop.markDirty('containers seen'),
      onChange,
      onDockerConnected: o.onDockerConnected,
      onAttached: o.onAttached,
      onAttachError: o.onAttachError,
      log,
    });
    this.endpoints = new EndpointLoop({
      ovs,
      links,
      ipam,
      bridge,
      userspace,
      stateDir: o.stateDir,
      snapshot,
      containers: () => this.labels.known(),
      dockerEndpoints: () => runtime.endpointsOfDriver(o.pluginName ?? 'gremesh'),
      onChange,
      log,
    });
    this.backend = new PluginBackend({
      ovs,
      ipam,
      bridge,
      underlayMtu,
      snapshot,
      endpoints: this.endpoints,
      ipamReady: () => !(ipam.corrupt && !this.labels.ipamRebuilt),
    });
  }

  /** containers left unattached and endpoints left unplugged, with the reason (bounded, printable) */
  get errors(): AttachError[] {
    const eps = [...this.endpoints.errors].map(([id, reason]) => ({
      container: `endpoint ${id.slice(0, 12)}`,
      reason,
    }));
    return [...this.labels.errors, ...eps, ...this.endpoints.nameNotes]
      .slice(0, 1000)
      .map((e) => ({ container: printable(e.container, 64), reason: printable(e.reason, 256) }));
  }

  manual(): ManualTable {
    return this.manualFile.read();
  }

  start(resyncMs: number): void {
    this.labels.start(resyncMs);
    this.endpoints.loop.markDirty('start');
  }

  stop(): void {
    this.labels.stop();
    this.endpoints.loop.stop();
  }

  markDirty(): void {
    this.labels.markDirty();
  }

  /** resolves after the pass running now or, when idle, the next one */
  nextPass(): Promise<void> {
    return this.labels.nextPass();
  }

  /** one pass of the label loop (labelled and by-hand containers) */
  pass(): Promise<void> {
    return this.labels.pass();
  }

  // ------------------------------------------------------------ for the network plugin

  reserveAddress(network: string, want: string | undefined): { ip: string; prefixLen: number } | { error: string } {
    return this.backend.reserveAddress(network, want);
  }
  reserveAddress6(
    network: string,
    want: string | undefined,
  ): Promise<{ ip6: string; prefixLen6: number } | { error: string }> {
    return this.backend.reserveAddress6(network, want);
  }
  releaseAddress(network: string, ip: string): void {
    this.backend.releaseAddress(network, ip);
  }
  reservedIn(ip: string): string | undefined {
    return this.backend.reservedIn(ip);
  }
  endpoint(id: string): DockerEndpoint | undefined {
    return this.backend.endpoint(id);
  }
  addEndpoint(r: AddEndpoint): Promise<DockerEndpoint> {
    return this.backend.addEndpoint(r);
  }
  joinEndpoint(id: string): DockerEndpoint | undefined {
    return this.backend.joinEndpoint(id);
  }
  removeEndpoint(id: string): Promise<void> {
    return this.backend.removeEndpoint(id);
  }

  // ------------------------------------------------------------ by hand

  /** `gremesh-agent attach`: remember the request, then reconcile. */
  async attachByHand(ref: string, req: AttachRequest): Promise<{ ip: string; mac: string; port: string }> {
    const c = await this.o.runtime.find(ref);
    if (!c) throw new Error(`no container "${ref}"`);
    if (!c.running) throw new Error(`container ${c.name} is not running`);
    const snap = this.o.snapshot();
    if (!snap) throw new Error(NO_STATE);
    const plan = planAttachment(c, req, snap, this.o.ipam.table, this.o.underlayMtu);
    if ('error' in plan) throw new Error(plan.error);
    const m = this.manual();
    m[c.id] = req;
    this.manualFile.save(m);
    await this.labels.loop.markDirtyAndWait('attach by hand');
    if (this.labels.loop.lastError) throw new Error(`the attach pass failed: ${this.labels.loop.lastError.message}`);
    const err = this.errors.find((e) => e.container === c.name);
    if (err) throw new Error(err.reason);
    return { ip: plan.ip, mac: plan.mac, port: plan.hostIf };
  }

  /** `gremesh-agent detach`: forget the request (labelled containers stay attached). */
  async detachByHand(ref: string): Promise<void> {
    const c = await this.o.runtime.find(ref);
    const m = this.manual();
    const id = c?.id ?? Object.keys(m).find((k) => k.startsWith(ref));
    if (!id || !m[id]) {
      if (c && requestFromLabels(c.labels))
        throw new Error(
          `container ${c.name} is attached by its gremesh.network label; remove the container to detach it`,
        );
      throw new Error(`container "${ref}" was not attached with gremesh-agent attach`);
    }
    delete m[id];
    this.manualFile.save(m);
    this.o.ipam.save(release(this.o.ipam.table, id));
    await this.labels.loop.markDirtyAndWait('detach by hand');
    if (this.labels.loop.lastError) throw new Error(`the detach pass failed: ${this.labels.loop.lastError.message}`);
  }

  /** addresses per container, for status */
  addresses(): Record<string, string> {
    const out: Record<string, string> = {};
    for (const [net, ips] of Object.entries(this.o.ipam.table))
      for (const [ip, id] of Object.entries(ips)) if (!isIp6Key(ip)) out[id] = `${net}:${ip}`;
    return out;
  }
}
