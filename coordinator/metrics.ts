// The coordinator's Prometheus metrics (`--metrics ADDR:PORT`): hosts by state, watching
// agents, fan-out latency, joins and leaves, RPC errors by method and code.
import type { MetricsServer } from '../common/metrics.js';
import type { Coordinator } from './coordinator.js';
import type { WatchHub } from './watch-hub.js';

export interface CoordinatorMetrics {
  rpcError(method: string, code: string): void;
}

export const noCoordinatorMetrics: CoordinatorMetrics = { rpcError() {} };

export function coordinatorMetrics(m: MetricsServer, coord: Coordinator, hub: WatchHub): CoordinatorMetrics {
  const { prom, registry } = m;
  new prom.Gauge({
    name: 'gremesh_hosts',
    help: 'admitted hosts by state',
    labelNames: ['state'],
    registers: [registry],
    collect() {
      const hosts = coord.hosts();
      for (const state of ['up', 'down']) this.set({ state }, hosts.filter((h) => h.state === state).length);
    },
  });
  new prom.Gauge({
    name: 'gremesh_watchers',
    help: 'agents watching (open Watch streams)',
    registers: [registry],
    collect() {
      this.set(hub.count());
    },
  });
  const fanout = new prom.Histogram({
    name: 'gremesh_fanout_seconds',
    help: 'a committed change to its hand-over to each watching agent',
    buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1],
    registers: [registry],
  });
  hub.onDelivered = (ms) => fanout.observe(ms / 1000);
  const joins = new prom.Counter({ name: 'gremesh_joins_total', help: 'hosts admitted', registers: [registry] });
  const leaves = new prom.Counter({ name: 'gremesh_leaves_total', help: 'hosts removed', registers: [registry] });
  coord.events.follow((e) => {
    if (e.kind === 'host-joined') joins.inc();
    if (e.kind === 'host-left') leaves.inc();
  });
  const errors = new prom.Counter({
    name: 'gremesh_rpc_errors_total',
    help: 'gRPC calls answered with an error, by method and status code',
    labelNames: ['method', 'code'],
    registers: [registry],
  });
  return { rpcError: (method, code) => errors.inc({ method, code }) };
}
