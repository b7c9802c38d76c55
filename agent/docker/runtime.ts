// ContainerRuntime: what the agent needs of Docker. DockerRuntime talks to dockerd
// through dockerode.
import Docker from 'dockerode';
import type { Logger } from '../../common/log.js';
import { Backoff } from '../../common/backoff.js';
import type { ContainerInfo } from './attachment.js';

export interface ContainerRuntime {
  /** running containers, with their network namespace's PID */
  running(): Promise<ContainerInfo[]>;
  /** ids of every container that exists (running or not) */
  existing(): Promise<Set<string>>;
  /** one container by id or name; undefined if none */
  find(ref: string): Promise<(ContainerInfo & { running: boolean }) | undefined>;
  /**
   * call onEvent on container start/die/destroy, and `connect`/`disconnect` (with the
   * container's id) when a running container joins or leaves a network; reconnects; returns stop
   */
  watch(onEvent: (kind: string, id: string) => void): () => void;
  /** the ids of every endpoint Docker has on its networks of this driver */
  endpointsOfDriver(driver: string): Promise<Set<string>>;
}

/** the network driver whose connect/disconnect events the agent follows (its plugin's name) */
const NETWORK_DRIVER = 'gremesh';

export function dockerFromSocket(sock: string): Docker {
  const m = /^unix:\/\/(.*)$/.exec(sock);
  if (m) return new Docker({ socketPath: m[1] });
  const t = /^tcp:\/\/([^:]+):(\d+)$/.exec(sock);
  if (t) return new Docker({ host: t[1], port: Number(t[2]) });
  throw new Error(`--docker must be unix:///PATH or tcp://HOST:PORT, got "${sock}"`);
}

/**
 * Pure: the container's own gremesh.* labels. Docker merges the image's labels into the
 * container's; an image must not choose its network, address or MAC, so a gremesh.* label
 * whose value is the image's own for that key counts as the image's and is dropped (also
 * when `docker run --label` repeats the same value). Other labels pass untouched.
 */
export function ownLabels(container: Record<string, string>, image: Record<string, string>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(container)) if (!(k.startsWith('gremesh.') && image[k] === v)) out[k] = v;
  return out;
}

export class DockerRuntime implements ContainerRuntime {
  /** image id -> its labels (images do not change their labels) */
  private imageLabels = new Map<string, Record<string, string>>();

  constructor(
    private readonly docker: Docker,
    private readonly log: Logger,
  ) {}

  async running(): Promise<ContainerInfo[]> {
    const list = await this.docker.listContainers({ filters: { status: ['running'] } });
    const out: ContainerInfo[] = [];
    for (const c of list) {
      const i = await this.find(c.Id);
      if (i?.running && i.pid > 0) out.push(i);
    }
    return out;
  }

  async existing(): Promise<Set<string>> {
    const list = await this.docker.listContainers({ all: true });
    return new Set(list.map((c) => c.Id));
  }

  async find(ref: string): Promise<(ContainerInfo & { running: boolean }) | undefined> {
    try {
      const i = await this.docker.getContainer(ref).inspect();
      const labels = i.Config.Labels ?? {};
      return {
        id: i.Id,
        name: i.Name.replace(/^\//, ''),
        pid: i.State.Pid,
        running: i.State.Running,
        networkMode: i.HostConfig.NetworkMode ?? '',
        endpoints: Object.values(i.NetworkSettings?.Networks ?? {})
          .map((n) => n.EndpointID)
          .filter((e): e is string => !!e),
        hostname: i.Config.Hostname ?? '',
        aliases: Object.fromEntries(
          Object.values(i.NetworkSettings?.Networks ?? {})
            .filter((n) => n.EndpointID)
            .map((n) => [n.EndpointID, n.Aliases ?? []]),
        ),
        labels: Object.keys(labels).some((k) => k.startsWith('gremesh.'))
          ? ownLabels(labels, await this.labelsOfImage(i.Image))
          : labels,
      };
    } catch (e) {
      if ((e as { statusCode?: number }).statusCode === 404) return undefined;
      throw e;
    }
  }

  async endpointsOfDriver(driver: string): Promise<Set<string>> {
    const out = new Set<string>();
    for (const n of await this.docker.listNetworks({ filters: { driver: [driver] } })) {
      const i = (await this.docker.getNetwork(n.Id).inspect()) as {
        Containers?: Record<string, { EndpointID?: string }>;
      };
      for (const c of Object.values(i.Containers ?? {})) if (c.EndpointID) out.add(c.EndpointID);
    }
    return out;
  }

  private async labelsOfImage(id: string): Promise<Record<string, string>> {
    const known = this.imageLabels.get(id);
    if (known) return known;
    let labels: Record<string, string> = {};
    try {
      labels = (await this.docker.getImage(id).inspect()).Config?.Labels ?? {};
    } catch (e) {
      if ((e as { statusCode?: number }).statusCode !== 404) throw e;
    }
    if (this.imageLabels.size > 500) this.imageLabels.clear();
    this.imageLabels.set(id, labels);
    return labels;
  }

  watch(onEvent: (kind: string, id: string) => void): () => void {
    let stopped = false;
    let stream: NodeJS.ReadableStream | undefined;
    const backoff = new Backoff({ minMs: 200, maxMs: 5000 });
    const start = () => {
      if (stopped) return;
      this.docker
        .getEvents({
          filters: { type: ['container', 'network'], event: ['start', 'die', 'destroy', 'connect', 'disconnect'] },
        })
        .then(
          (s) => {
            stream = s;
            backoff.reset();
            onEvent('reconnect', '');
            let buf = '';
            s.on('data', (d: Buffer) => {
              buf += d.toString();
              let nl;
              while ((nl = buf.indexOf('\n')) >= 0) {
                const line = buf.slice(0, nl);
                buf = buf.slice(nl + 1);
                try {
                  const e = JSON.parse(line) as {
                    Type?: string;
                    Action?: string;
                    status?: string;
                    id?: string;
                    Actor?: { ID?: string; Attributes?: Record<string, string> };
                  };
                  // a network event's actor is the network; the container is an attribute. Only
                  // gremesh's networks matter (Docker also reports joins of `none` and `bridge`,
                  // which would make the container pass look again at a container it is plugging)
                  if (e.Type === 'network') {
                    if (e.Actor?.Attributes?.type === NETWORK_DRIVER)
                      onEvent(e.Action ?? '', e.Actor.Attributes.container ?? '');
                  } else onEvent(e.Action ?? e.status ?? '', e.Actor?.ID ?? e.id ?? '');
                } catch {
                  /* partial line */
                }
              }
            });
            const again = () => {
              if (!stopped) setTimeout(start, backoff.next());
            };
            s.on('end', again);
            s.on('error', again);
          },
          (e: Error) => {
            const wait = backoff.next();
            this.log.warn({ err: e.message, retryMs: wait }, 'docker events unavailable');
            setTimeout(start, wait);
          },
        );
    };
    start();
    return () => {
      stopped = true;
      (stream as unknown as { destroy?: () => void })?.destroy?.();
    };
  }
}
