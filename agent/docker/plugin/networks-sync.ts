// `--docker-networks auto`: every gremesh network has its Docker network on this host
// (`docker run --network NAME` works everywhere without a `docker network create` per
// host; dual-stack with --ipv6 when the gremesh network has an IPv6 prefix). Desired from
// the snapshot, observed from dockerd, planned by planDockerNetworks.
import type Docker from 'dockerode';
import type { Logger } from '../../../common/log.js';
import { Loop } from '../../loop.js';
import type { Snapshot } from '../../model.js';
import { AUTO_LABEL, OPTION_NETWORK, PLUGIN_NAME, planDockerNetworks, type DockerNetworkInfo } from './protocol.js';

export class DockerNetworkSync {
  private readonly loop: Loop;
  private timer: NodeJS.Timeout | undefined;
  private reported = new Set<string>();

  constructor(private readonly o: { docker: Docker; snapshot: () => Snapshot | undefined; log: Logger }) {
    this.loop = new Loop({ name: 'docker-networks', log: o.log, pass: () => this.pass(), backoffMaxMs: 30_000 });
  }

  start(resyncMs: number): void {
    this.timer = setInterval(() => this.markDirty(), resyncMs);
    this.markDirty();
  }
  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.loop.stop();
  }
  markDirty(): void {
    this.loop.markDirty('docker networks');
  }
  nextPass(): Promise<void> {
    return this.loop.nextPass();
  }

  /** said once, not every pass */
  private report(what: string): void {
    if (this.reported.has(what)) return;
    this.reported.add(what);
    this.o.log.warn({ conflict: what }, what);
  }

  private async observe(): Promise<DockerNetworkInfo[]> {
    const list = await this.o.docker.listNetworks();
    return list.map((n) => ({
      id: n.Id,
      name: n.Name,
      driver: n.Driver,
      labels: n.Labels ?? {},
      options: n.Options ?? {},
      subnet: n.IPAM?.Config?.[0]?.Subnet,
      ipv6: n.EnableIPv6 === true,
      containers: Object.keys(n.Containers ?? {}).length,
    }));
  }

  private async pass(): Promise<void> {
    const snap = this.o.snapshot();
    if (!snap) return;
    const plan = planDockerNetworks(snap.networks, await this.observe());
    for (const c of plan.conflicts) this.report(c);
    for (const c of plan.create) {
      await this.o.docker.createNetwork({
        Name: c.name,
        Driver: PLUGIN_NAME,
        CheckDuplicate: true,
        ...(c.cidr6 ? { EnableIPv6: true } : {}),
        IPAM: {
          Driver: PLUGIN_NAME,
          Config: [{ Subnet: c.cidr }, ...(c.cidr6 ? [{ Subnet: c.cidr6 }] : [])],
          Options: {},
        },
        Options: { [OPTION_NETWORK]: c.network },
        Labels: { [AUTO_LABEL]: 'true' },
      });
      this.o.log.info(
        { dockerNetwork: c.name, network: c.network, subnet: c.cidr, subnet6: c.cidr6 },
        'docker network created',
      );
    }
    for (const d of plan.remove) {
      // the list does not say who uses a network: ask, and leave one in use alone
      const n = this.o.docker.getNetwork(d.id);
      const used = Object.keys(((await n.inspect()) as { Containers?: object }).Containers ?? {}).length;
      if (used) {
        this.report(`Docker network ${d.name} is kept while ${used} containers use it (its gremesh network is gone)`);
        continue;
      }
      await n.remove();
      this.o.log.info({ dockerNetwork: d.name }, 'docker network removed (its gremesh network is gone)');
    }
  }
}
