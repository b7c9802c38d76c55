// The agent's Prometheus metrics (`--metrics ADDR:PORT`): tunnel state and BFD flaps per
// peer, attach latency and errors, reconcile passes, flows, containers per network.
import type { MetricsServer } from '../common/metrics.js';
import type { PassResult } from './bridge/reconciler.js';
import type { PolicyCount } from './bridge/policy-flows.js';

export interface AgentMetrics {
  pass(r: PassResult): void;
  attached(ms: number, network: string): void;
  attachError(reason: string): void;
  /** a query to a network's names resolver, and what became of it */
  dnsQuery(network: string, outcome: string): void;
  /** where packets per policy rule are read at each scrape */
  policySource(read: () => Promise<PolicyCount[]>): void;
  /** encryption: each WireGuard peer's last handshake and bytes, read at each scrape */
  wireguardSource(read: () => WireguardFigures): void;
}

export interface WireguardFigures {
  /** WireGuard carries this host's tunnels (undefined: encryption off) */
  up: boolean | undefined;
  peers: { peer: string; lastHandshakeMs: number; rxBytes: number; txBytes: number }[];
}

export const noMetrics: AgentMetrics = {
  pass() {},
  attached() {},
  attachError() {},
  dnsQuery() {},
  policySource() {},
  wireguardSource() {},
};

/** Pure: an attach error's reason as a label with few values (the words before the details). */
export function reasonClass(reason: string): string {
  const rules: [RegExp, string][] = [
    [/^unknown network/, 'unknown_network'],
    [/^network mode/, 'network_mode'],
    [/no slice/, 'no_slice'],
    [/^gremesh\.(ip|mac|mtu|gateway|iface)\b/, 'bad_label'],
    [/(address|ip) .*(in use|taken|outside|not in)/i, 'address'],
    [/^attach failed/, 'attach_failed'],
  ];
  return rules.find(([re]) => re.test(reason))?.[1] ?? 'other';
}

/** encryption's gauges, read at each scrape: WireGuard up, and per peer host its last handshake and bytes */
function wireguardGauges(m: MetricsServer, read: () => WireguardFigures | undefined): void {
  const { prom, registry } = m;
  new prom.Gauge({
    name: 'gremesh_wireguard_up',
    help: "encryption: 1 while WireGuard carries this host's tunnels, 0 while it does not (no tunnel is built then)",
    registers: [registry],
    collect() {
      this.reset();
      const w = read();
      if (w?.up !== undefined) this.set(w.up ? 1 : 0);
    },
  });
  new prom.Gauge({
    name: 'gremesh_wireguard_handshake_age_seconds',
    help: 'encryption: seconds since the last WireGuard handshake with each peer host',
    labelNames: ['peer'],
    registers: [registry],
    collect() {
      this.reset();
      for (const p of read()?.peers ?? [])
        if (p.lastHandshakeMs > 0) this.set({ peer: p.peer }, (Date.now() - p.lastHandshakeMs) / 1000);
    },
  });
  new prom.Gauge({
    name: 'gremesh_wireguard_bytes',
    help: 'encryption: bytes WireGuard received from and sent to each peer host (as of the last WireGuard pass)',
    labelNames: ['peer', 'direction'],
    registers: [registry],
    collect() {
      this.reset();
      for (const p of read()?.peers ?? []) {
        this.set({ peer: p.peer, direction: 'rx' }, p.rxBytes);
        this.set({ peer: p.peer, direction: 'tx' }, p.txBytes);
      }
    },
  });
}

/** addresses per network and tunnels by IP family: the update after each pass */
function familyGauges(m: MetricsServer) {
  const { prom, registry } = m;
  const addresses = new prom.Gauge({
    name: 'gremesh_endpoint_addresses',
    help: 'addresses of the containers with a port on the bridge, per network and IP family (4, 6)',
    labelNames: ['network', 'family'],
    registers: [registry],
  });
  const tunnels = new prom.Gauge({
    name: 'gremesh_tunnels',
    help: 'tunnels to peers, by the underlay IP family they run over (4: gre, 6: ip6gre)',
    labelNames: ['family'],
    registers: [registry],
  });
  return (r: Parameters<AgentMetrics['pass']>[0], before: Set<string>, perNet: Map<string, number>) => {
    for (const n of before)
      if (!perNet.has(n)) for (const family of ['4', '6']) addresses.remove({ network: n, family });
    for (const n of perNet.keys()) {
      const eps = r.locals.filter((l) => !l.gateway && l.network === n);
      addresses.set({ network: n, family: '4' }, eps.length);
      addresses.set({ network: n, family: '6' }, eps.filter((l) => l.ip6).length);
    }
    const six = r.desired.tunnels.filter((t) => t.type === 'ip6gre').length;
    tunnels.set({ family: '4' }, r.desired.tunnels.length - six);
    tunnels.set({ family: '6' }, six);
  };
}

export function agentMetrics(m: MetricsServer): AgentMetrics {
  const { prom, registry } = m;
  const up = new prom.Gauge({
    name: 'gremesh_tunnel_up',
    help: '1 when BFD says the tunnel to this peer forwards, else 0',
    labelNames: ['peer'],
    registers: [registry],
  });
  const flaps = new prom.Counter({
    name: 'gremesh_tunnel_flaps_total',
    help: "BFD flaps of the tunnel to this peer (OVS's flap_count, counted since the agent started)",
    labelNames: ['peer'],
    registers: [registry],
  });
  const attach = new prom.Histogram({
    name: 'gremesh_attach_seconds',
    help: "Docker's start event to the container's interface up with its flows",
    labelNames: ['network'],
    buckets: [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
    registers: [registry],
  });
  const attachErrors = new prom.Counter({
    name: 'gremesh_attach_errors_total',
    help: 'containers left unattached, by reason',
    labelNames: ['reason'],
    registers: [registry],
  });
  const passes = new prom.Histogram({
    name: 'gremesh_reconcile_pass_seconds',
    help: 'duration of the bridge reconcile passes',
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1],
    registers: [registry],
  });
  const flows = new prom.Gauge({
    name: 'gremesh_flows_installed',
    help: 'OpenFlow flows the agent keeps on its bridge',
    registers: [registry],
  });
  const containers = new prom.Gauge({
    name: 'gremesh_containers_attached',
    help: 'containers with a port on the bridge, per network',
    labelNames: ['network'],
    registers: [registry],
  });
  const byFamily = familyGauges(m);
  const dns = new prom.Counter({
    name: 'gremesh_dns_queries_total',
    help: 'queries to the names resolver, by outcome: answered (a gremesh name), forwarded, nxdomain (forwarded, the upstream said no such name), refused, limited, failed',
    labelNames: ['network', 'outcome'],
    registers: [registry],
  });
  let readPolicy: (() => Promise<PolicyCount[]>) | undefined;
  new prom.Gauge({
    name: 'gremesh_policy_packets',
    help: 'packets that met each policy rule on this host (receiving side; rule: its id, or established, same-group, to-gateway, invalid, default), by verdict; read from the flows at each scrape',
    labelNames: ['network', 'rule', 'verdict'],
    registers: [registry],
    async collect() {
      this.reset();
      const counts = readPolicy ? await readPolicy().catch(() => []) : [];
      for (const c of counts) this.set({ network: c.network, rule: c.rule, verdict: c.verdict }, c.packets);
    },
  });
  let readWireguard: (() => WireguardFigures) | undefined;
  wireguardGauges(m, () => readWireguard?.());
  const lastFlaps = new Map<string, number>();
  let knownTunnels = new Set<string>();
  let knownNetworks = new Set<string>();
  return {
    pass(r) {
      passes.observe(r.ms / 1000);
      flows.set(r.flows);
      const peers = new Set<string>();
      for (const t of r.tunnels) {
        peers.add(t.peer);
        up.set({ peer: t.peer }, t.forwarding ? 1 : 0);
        const before = lastFlaps.get(t.peer);
        if (before !== undefined && t.bfdFlaps > before) flaps.inc({ peer: t.peer }, t.bfdFlaps - before);
        else if (before === undefined) flaps.inc({ peer: t.peer }, 0);
        lastFlaps.set(t.peer, t.bfdFlaps);
      }
      for (const p of knownTunnels) if (!peers.has(p)) up.remove({ peer: p });
      knownTunnels = peers;
      const perNet = new Map<string, number>();
      for (const l of r.locals) if (!l.gateway) perNet.set(l.network, (perNet.get(l.network) ?? 0) + 1);
      for (const n of r.desired.gateways.map((g) => g.network)) if (!perNet.has(n)) perNet.set(n, 0);
      for (const [n, c] of perNet) containers.set({ network: n }, c);
      for (const n of knownNetworks) if (!perNet.has(n)) containers.remove({ network: n });
      byFamily(r, knownNetworks, perNet);
      knownNetworks = new Set(perNet.keys());
    },
    attached(ms, network) {
      attach.observe({ network }, ms / 1000);
    },
    attachError(reason) {
      attachErrors.inc({ reason: reasonClass(reason) });
    },
    dnsQuery(network, outcome) {
      dns.inc({ network, outcome });
    },
    policySource(read) {
      readPolicy = read;
    },
    wireguardSource(read) {
      readWireguard = read;
    },
  };
}
