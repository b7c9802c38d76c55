#!/usr/bin/env node
// gremesh-agent: one per host (root). Builds and keeps this host's OVS bridge, GRE
// mesh and flows in step with the coordinator. The only place real drivers are built.
import * as fs from 'node:fs';
import { parse, runMain, UsageError } from '../common/cli.js';
import { AGENT_KEYS, resolveAgentConfig } from './config.js';
import { callControl, controlSocket } from './control.js';
import { readJson } from './state-file.js';
import type { PassResult, Reconciler } from './bridge/reconciler.js';
import type { Logger } from '../common/log.js';
import type { Runner } from '../common/exec.js';
import type { LinkDriver } from './net/link-driver.js';
import type { OvsDriver } from './ovs/driver.js';
import type { Underlay } from './net/underlay.js';
import type { CoordinatorClient } from './control-plane/coordinator-client.js';
import type { ContainerReconciler } from './docker/containers.js';
import type { AttachRequest } from './docker/attachment.js';
import type { Snapshot } from './model.js';
import type { WireguardManager } from './wireguard/manager.js';
import { noMetrics, type AgentMetrics } from './metrics.js';
import type { PluginHandler } from './docker/plugin/driver.js';
import type { Upstream } from './dns/upstreams.js';

/** Docker's side (dockerode is the heaviest module): loaded once the bridge's first pass is done. */
async function loadDocker() {
  const [containers, runtime, ipam, plugin, sync] = await Promise.all([
    import('./docker/containers.js'),
    import('./docker/runtime.js'),
    import('./docker/ipam.js'),
    import('./docker/plugin/driver.js'),
    import('./docker/plugin/networks-sync.js'),
  ]);
  return {
    ContainerReconciler: containers.ContainerReconciler,
    DockerRuntime: runtime.DockerRuntime,
    dockerFromSocket: runtime.dockerFromSocket,
    FileIpam: ipam.FileIpam,
    DockerPlugin: plugin.DockerPlugin,
    DockerNetworkSync: sync.DockerNetworkSync,
  };
}

/**
 * The daemon's modules (gRPC, Docker, the exec runner, the drivers), loaded only when the
 * daemon runs: `--help`, `status`, `attach` and a bad flag answer without loading them,
 * in about the time of a bare `node`.
 */
async function loadDaemon() {
  const [exec, log, client, links, ovs, rec, version, desired, control, fw, ofw, trace] = await Promise.all([
    import('../common/exec.js'),
    import('../common/log.js'),
    import('./control-plane/coordinator-client.js'),
    import('./net/links.js'),
    import('./ovs/driver.js'),
    import('./bridge/reconciler.js'),
    import('./version.js'),
    import('./bridge/desired.js'),
    import('./control.js'),
    import('./net/docker-firewall.js'),
    import('./ovs/openflow/connection.js'),
    import('./bridge/trace.js'),
  ]);
  const [underlay, status, throttle, nat, dns, upstreams, policy, pipeline] = await Promise.all([
    import('./net/underlay.js'),
    import('./status-reporter.js'),
    import('./control-plane/report-throttle.js'),
    import('./net/nat-apply.js'),
    import('./dns/resolver.js'),
    import('./dns/upstreams.js'),
    import('./bridge/policy-flows.js'),
    import('./ovs/flows/pipeline.js'),
  ]);
  const [wg, wgDevice, wgKeys] = await Promise.all([
    import('./wireguard/manager.js'),
    import('./wireguard/device.js'),
    import('./wireguard/keys.js'),
  ]);
  return {
    createRunner: exec.createRunner,
    processesStarted: exec.processesStarted,
    createLogger: log.createLogger,
    CoordinatorClient: client.CoordinatorClient,
    createLinkDriver: links.createLinkDriver,
    OvsdbOvsDriver: ovs.OvsdbOvsDriver,
    Reconciler: rec.Reconciler,
    AGENT_VERSION: version.AGENT_VERSION,
    reportableEndpoints: desired.reportableEndpoints,
    findUnderlayIp: underlay.findUnderlayIp,
    keepUnderlay: underlay.keepUnderlay,
    writeStatus: status.writeStatus,
    ReportThrottle: throttle.ReportThrottle,
    natApplier: nat.natApplier,
    serveControl: control.serveControl,
    IptablesDockerFirewall: fw.IptablesDockerFirewall,
    wireguardForwardRules: fw.wireguardForwardRules,
    WireguardManager: wg.WireguardManager,
    SystemWireguardDevice: wgDevice.SystemWireguardDevice,
    KeyFile: wgKeys.KeyFile,
    OpenflowConnection: ofw.OpenflowConnection,
    Tracer: trace.Tracer,
    DnsResolver: dns.DnsResolver,
    hostUpstreams: upstreams.hostUpstreams,
    policyCounts: policy.policyCounts,
    POLICY_TABLE: pipeline.TABLES.policyRules,
  };
}

const HELP = `gremesh-agent: keeps this host's gremesh data plane in step with the coordinator (root)

Usage:
  gremesh-agent [run] --coordinator ADDR:PORT --name NAME [--join-token TOKEN] [flags]
  gremesh-agent status [--state-dir DIR] [-o table|json]
  gremesh-agent attach CONTAINER --network NAME [--ip IP] [--mac MAC] [--mtu N]
                       [--gateway IP|none] [--iface NAME] [--state-dir DIR]
  gremesh-agent detach CONTAINER [--state-dir DIR]

Docker-native: docker run --network gremesh-default [--ip A.B.C.D] [--mac-address M] IMAGE
(the agent makes that Docker network; by hand: docker network create -d gremesh
--ipam-driver gremesh --subnet CIDR-OF-THE-GREMESH-NETWORK NAME).

attach/detach ask the running agent (through STATE_DIR/agent.sock) to plug a container
that has no gremesh.network label, as "ovs-docker add-port/del-port" would. Containers
labelled gremesh.network=NAME (and gremesh.ip, .mac, .mtu, .gateway, .iface) and run
with --net=none are attached automatically.

Flags (env GREMESH_<FLAG> works too):
  --coordinator ADDR:PORT   the coordinator (required); several comma-separated (coordinators
                            sharing one etcd): the agent moves to the next when one fails
  --name NAME               this host's name, as given to "coordctl join" (required)
  --join-token TOKEN        one-time token from "coordctl join" (first start only)
  --underlay-ip IP          this host's tunnel address (default: the source address
                            the kernel picks to reach the coordinator)
  --bridge NAME             integration bridge (default gremesh0)
  --datapath system|netdev  OVS datapath (default system; netdev = userspace)
  --ovs-db SOCKET           OVSDB (default unix:/var/run/openvswitch/db.sock)
  --state-dir DIR           credential, cached desired state, status (default /var/lib/gremesh-agent)
  --docker SOCKET           Docker API (default unix:///var/run/docker.sock)
  --resync SECONDS          full reconcile pass at least this often (default 10)
  --report SECONDS          status report to the coordinator this often (default 5)
  --log-level LEVEL         debug|info|warn|error (default info)
  --ca-hash sha256:HEX      the coordinator CA's hash from "coordctl join" (first start); the
                            agent pins it, makes its own key and gets a client certificate
  --insecure                plaintext gRPC to a coordinator started with --insecure (warns)
  --gateway-allow LIST      what containers may reach on this host through their gateway,
                            beyond ICMP and replies: tcp/PORT, udp/PORT (services on the
                            host), link-local (forwarding to 169.254.0.0/16, e.g. a cloud
                            metadata service); comma-separated (default: nothing)
  --plugin-dir DIR|off      serve Docker's network + IPAM plugin API on DIR/gremesh.sock
                            (default /run/docker/plugins, where dockerd finds plugins)
  --docker-networks auto|off  auto (default): a Docker network for every gremesh network
                            on this host: NAME, or gremesh-NAME where Docker reserves NAME
                            (default, bridge, host, none, ingress)
  --dns on|off              names across hosts (default on): each network's containers resolve
                            every container of the network, on any host, by name, alias and
                            hostname, through a resolver on their gateway; what they ask the
                            upstream servers goes there (nftables), and what is no gremesh
                            name goes on to the upstreams
  --dns-upstream IP[:PORT],...  the servers Docker gives containers (default: this host's
                            /etc/resolv.conf, or systemd-resolved's list behind 127.0.0.53)
  --metrics ADDR:PORT       serve Prometheus metrics on http://ADDR:PORT/metrics (default off;
                            no authentication: bind it to 127.0.0.1, or firewall the port)
  --wireguard-interface NAME  encryption (when the coordinator runs --encryption wireguard):
                            the WireGuard device (default gremesh-wg); its key is made here
                            (STATE_DIR/wireguard.key, mode 0600) and only the public half leaves
  --wireguard-port N        its UDP port on the underlay address (default 51820)
  --wireguard-impl MODE     auto (default: kernel WireGuard, else wireguard-go) | kernel | userspace

On a Docker host whose dockerd manages iptables (its default), the agent keeps two rules
marked "gremesh" at the top of Docker's DOCKER-USER chain so containers' traffic to the
outside passes Docker's FORWARD policy (DROP); it removes them when it owns no gateway.
`;

async function status(argv: string[]): Promise<number> {
  const { values } = parse(argv, { 'state-dir': { type: 'string' }, output: { type: 'string', short: 'o' } }, false);
  if (values.help) {
    process.stdout.write(HELP);
    return 0;
  }
  const dir = (values['state-dir'] as string | undefined) ?? process.env.GREMESH_STATE_DIR ?? '/var/lib/gremesh-agent';
  const s = readJson<Record<string, unknown>>(`${dir}/status.json`);
  if (!s) throw new Error(`no status in ${dir}: is the agent running with --state-dir ${dir}?`);
  if (values.output === 'json') {
    process.stdout.write(`${JSON.stringify(s, null, 2)}\n`);
    return 0;
  }
  const st = s as {
    host: string;
    revision: number;
    connected: boolean;
    coordinator?: string;
    updated: string;
    tunnels: { peer: string; port: string; bfdState: string }[];
    endpoints: { port: string; network: string; ip: string; mac: string }[];
    mtu: Record<string, number>;
  };
  const lines = [
    `${st.host}: revision ${st.revision}, coordinator ${st.coordinator ? `${st.coordinator} ` : ''}${st.connected ? 'connected' : 'NOT connected'}, updated ${st.updated}`,
    `mtu: ${Object.entries(st.mtu)
      .map(([n, m]) => `${n}=${m}`)
      .join(' ')}`,
    ...st.tunnels.map((t) => `tunnel ${t.port} -> ${t.peer}: bfd ${t.bfdState || 'unknown'}`),
    ...st.endpoints.map((e) => `port ${e.port} ${e.network} ${e.ip} ${e.mac}`),
    ...((s as { attachErrors?: { container: string; reason: string }[] }).attachErrors ?? []).map(
      (e) => `attach error: ${e.container}: ${e.reason}`,
    ),
  ];
  process.stdout.write(`${lines.join('\n')}\n`);
  return 0;
}

type Daemon = Awaited<ReturnType<typeof loadDaemon>>;
type Config = ReturnType<typeof resolveAgentConfig>;

/** Prometheus metrics only when asked for (prom-client is loaded then). */
async function startMetrics(cfg: Config, log: Logger): Promise<{ metrics: AgentMetrics; close?: () => void }> {
  if (!cfg.metrics) return { metrics: noMetrics };
  const [{ serveMetrics }, { agentMetrics }] = await Promise.all([
    import('../common/metrics.js'),
    import('./metrics.js'),
  ]);
  const server = await serveMetrics(cfg.metrics, { host: cfg.name });
  log.info({ metrics: `http://${cfg.metrics}/metrics` }, 'serving Prometheus metrics');
  return { metrics: agentMetrics(server), close: () => server.close() };
}

/** What the Docker side needs from the rest of the daemon. */
interface DockerSideDeps {
  cfg: Config;
  log: Logger;
  links: LinkDriver;
  ovs: OvsDriver;
  reconciler: Reconciler;
  metrics: AgentMetrics;
  underlayMtu: number;
  snapshot: () => Snapshot | undefined;
}

/**
 * Docker's side: the plugin's socket at once (a dockerd started right after the agent
 * finds it; its calls wait until Docker's side is up), the rest by `start()`.
 */
async function dockerSide(p: DockerSideDeps) {
  const { cfg, log } = p;
  const side: {
    containers?: ContainerReconciler;
    dockerNetworks?: { markDirty(): void; stop(): void };
    start: () => Promise<void>;
  } = { start: async () => {} };
  let pluginReady: (h: Record<string, PluginHandler>) => void = () => {};
  if (cfg.pluginDir !== 'off') {
    const { servePlugin } = await import('./docker/plugin/server.js');
    const sock = `${cfg.pluginDir}/gremesh.sock`;
    servePlugin(sock, new Promise((resolve) => (pluginReady = resolve)), log.child({ part: 'plugin' }));
    log.info({ socket: sock }, 'serving the Docker network plugin');
  }
  let starting = false;
  side.start = async () => {
    if (starting) return;
    starting = true;
    const d = await loadDocker();
    const docker = d.dockerFromSocket(cfg.docker);
    const containers = new d.ContainerReconciler({
      runtime: new d.DockerRuntime(docker, log.child({ part: 'docker' })),
      links: p.links,
      ovs: p.ovs,
      ipam: new d.FileIpam(`${cfg.stateDir}/ipam.json`),
      bridge: cfg.bridge,
      underlayMtu: p.underlayMtu,
      userspace: cfg.datapath === 'netdev',
      stateDir: cfg.stateDir,
      snapshot: p.snapshot,
      onChange: (plugged) => p.reconciler.portsForwarding(plugged),
      onAttached: (ms, network) => p.metrics.attached(ms, network),
      onAttachError: (reason) => p.metrics.attachError(reason),
      onDockerConnected: () => p.reconciler.refreshNat('docker connected'),
      log: log.child({ part: 'containers' }),
    });
    side.containers = containers;
    containers.start(cfg.resyncS * 1000);
    // Docker's network and IPAM plugin (docker network create -d gremesh, docker run --network)
    if (cfg.pluginDir === 'off') return;
    const plugin = new d.DockerPlugin({
      backend: containers,
      snapshot: p.snapshot,
      stateDir: cfg.stateDir,
      log: log.child({ part: 'plugin' }),
    });
    pluginReady(plugin.handlers());
    if (cfg.dockerNetworks !== 'auto') return;
    const sync = new d.DockerNetworkSync({ docker, snapshot: p.snapshot, log: log.child({ part: 'docker-networks' }) });
    sync.start(cfg.resyncS * 1000);
    side.dockerNetworks = sync;
  };
  return side;
}

/** attach/detach by hand, through STATE_DIR/agent.sock */
function serveAttachControl(D: Daemon, stateDir: string, containers: () => ContainerReconciler | undefined) {
  const starting = () => new Error('the agent is still starting (Docker not followed yet); try again in a moment');
  return D.serveControl(controlSocket(stateDir), {
    'POST /attach': async (b) => {
      const c = containers();
      if (!c) throw starting();
      return c.attachByHand(String(b.container ?? ''), b.request as AttachRequest);
    },
    'POST /detach': async (b) => {
      const c = containers();
      if (!c) throw starting();
      await c.detachByHand(String(b.container ?? ''));
      return { detached: b.container };
    },
  });
}

function newReconciler(
  D: Daemon,
  cfg: Config,
  log: Logger,
  parts: {
    ovs: OvsDriver;
    links: LinkDriver;
    run: Runner;
    dns: { upstreams: Upstream[] } | undefined;
    wireguard: { ready: boolean } | undefined;
  },
) {
  const { ovs, links, run, dns } = parts;
  return (onPass: (r: PassResult) => void, underlay: Underlay | undefined, mgmtSocket: string | undefined) =>
    new D.Reconciler({
      ovs,
      links,
      log: log.child({ part: 'reconcile' }),
      onPass,
      params: {
        bridge: cfg.bridge,
        datapath: cfg.datapath,
        underlayMtu: underlay?.mtu ?? 1500,
        wireguardReady: () => parts.wireguard?.ready ?? false,
        wireguardDevice: cfg.wireguardInterface,
      },
      resyncMs: cfg.resyncS * 1000,
      // with the management socket at hand, an OpenFlow connection says when flows are lost (no process);
      // otherwise count them with ovs-ofctl every second
      probeMs: mgmtSocket ? 0 : 1000,
      // userspace datapath: the underlay address sits on an OVS internal port, which
      // vanishes with ovs-vswitchd; put it back when it reappears
      underlay: cfg.datapath === 'netdev' ? underlay : undefined,
      restoreUnderlay: async (u, o) => {
        if (o.interfaces.some((i) => i.name === u.dev && i.type === 'internal' && i.ofport > 0))
          await links.ensureUnderlay(u.dev, u.cidr, u.routes);
      },
      applyNat: D.natApplier(
        links,
        run,
        new D.IptablesDockerFirewall(run, () =>
          parts.wireguard?.ready && cfg.datapath === 'netdev' ? D.wireguardForwardRules(cfg.wireguardInterface) : [],
        ),
        log,
      ),
      gatewayAllow: cfg.gatewayAllow,
      dns,
    });
}

/** names across hosts (--dns on): the upstream servers, and the resolver fed by every pass */
function namesResolver(D: Daemon, cfg: Config, log: Logger, metrics: AgentMetrics) {
  if (cfg.dns === 'off') return undefined;
  const read = (p: string) => {
    try {
      return fs.readFileSync(p, 'utf8');
    } catch {
      return undefined;
    }
  };
  const upstreams = cfg.dnsUpstream.length ? cfg.dnsUpstream : D.hostUpstreams(read);
  if (!upstreams.length)
    log.warn(
      {},
      'no upstream DNS server found (resolv.conf): containers resolve gremesh names only by asking their gateway',
    );
  const resolver = new D.DnsResolver({
    upstreams,
    log: log.child({ part: 'dns' }),
    onQuery: (network, outcome) => metrics.dnsQuery(network, outcome),
  });
  return { upstreams, resolver };
}

/**
 * The coordinator client (with this host's part of `coordctl trace`) and the OpenFlow
 * connection, built but not started; the cached desired state, if any, applied at once.
 */
function controlPlane(
  D: Daemon,
  cfg: Config,
  log: Logger,
  p: {
    run: Runner;
    ovs: InstanceType<Daemon['OvsdbOvsDriver']>;
    reconciler: Reconciler;
    underlayIp: string;
    mgmtSocket: string | undefined;
    snapshot: () => Snapshot | undefined;
    setSnapshot: (s: Snapshot) => void;
  },
) {
  const { run, ovs, reconciler, underlayIp, mgmtSocket, snapshot, setSnapshot } = p;
  const tracer = new D.Tracer({
    run,
    bridge: cfg.bridge,
    host: cfg.name,
    underlayIp,
    ovsRundir: ovs.rundir(),
    observe: () => ovs.observe(),
    tunnels: () => reconciler.lastPass?.tunnels ?? [],
    snapshot,
  });
  const coordinator = new D.CoordinatorClient({
    coordinator: cfg.coordinator,
    name: cfg.name,
    token: cfg.joinToken,
    underlayIp,
    stateDir: cfg.stateDir,
    version: D.AGENT_VERSION,
    log: log.child({ part: 'coordinator' }),
    onSnapshot: setSnapshot,
    onTrace: (r) => tracer.trace(r),
    tls: cfg.insecure ? undefined : { caHash: cfg.caHash },
  });
  if (cfg.insecure) {
    process.stderr.write('gremesh-agent: WARNING: --insecure: talking plaintext to the coordinator\n');
    log.warn({}, 'running without TLS (--insecure)');
  }
  const cached = coordinator.cached();
  if (cached) {
    log.info({ revision: cached.revision, peers: cached.peers.length }, 'starting from the cached desired state');
    setSnapshot(cached);
  }
  const openflow = mgmtSocket
    ? new D.OpenflowConnection({
        socket: mgmtSocket,
        log: log.child({ part: 'openflow' }),
        onReconnect: () => reconciler.flowsLost('ovs-vswitchd reconnected'),
      })
    : undefined;
  return { coordinator, openflow };
}

/** What the coordinator hears of this host: tunnels (with encryption, each one's WireGuard peer), endpoints, errors. */
function newReporter(
  D: Daemon,
  cfg: Config,
  log: Logger,
  p: {
    reconciler: Reconciler;
    snapshot: () => Snapshot | undefined;
    docker: { containers?: ContainerReconciler };
    coordinator: CoordinatorClient;
    wireguard: WireguardManager;
  },
) {
  return new D.ReportThrottle({
    host: cfg.name,
    intervalMs: cfg.reportS * 1000,
    lastPass: () => p.reconciler.lastPass,
    snapshot: p.snapshot,
    attachErrors: () => p.docker.containers?.errors ?? [],
    // with encryption, each tunnel's WireGuard peer: last handshake and bytes
    send: (r) =>
      p.coordinator.report({ ...r, tunnels: r.tunnels.map((tu) => ({ ...tu, ...p.wireguard.figuresOf(tu.peer) })) }),
    log,
  });
}

/** Encryption (when the coordinator asks for it): the WireGuard device, this host's key and its peers. */
function encryptionSide(
  D: Daemon,
  cfg: Config,
  log: Logger,
  p: {
    run: Runner;
    underlayMtu: number;
    snapshot: () => Snapshot | undefined;
    coordinator: CoordinatorClient;
    onReady: (ready: boolean) => void;
  },
): WireguardManager {
  return new D.WireguardManager({
    device: new D.SystemWireguardDevice(cfg.wireguardInterface, {
      run: p.run,
      impl: cfg.wireguardImpl,
      logFile: `${cfg.stateDir}/wireguard-go.log`,
    }),
    keyFile: new D.KeyFile(`${cfg.stateDir}/wireguard.key`),
    port: cfg.wireguardPort,
    datapath: cfg.datapath,
    ovsDb: cfg.ovsDb,
    underlayMtu: p.underlayMtu,
    run: p.run,
    snapshot: p.snapshot,
    publish: (k, port, gen) => p.coordinator.setWireguardKey(k, port, gen),
    onReady: p.onReady,
    log: log.child({ part: 'wireguard' }),
  });
}

/** stop the daemon's parts, in this order */
function stopAll(stops: (() => unknown)[]): void {
  for (const stop of stops) stop();
}

async function run(argv: string[]): Promise<number> {
  const opts = Object.fromEntries(Object.keys(AGENT_KEYS).map((k) => [k, { type: 'string' as const }]));
  const { values } = parse(argv, { ...opts, insecure: { type: 'boolean' } }, false);
  if (values.help) {
    process.stdout.write(HELP);
    return 0;
  }
  if (process.getuid?.() !== 0) throw new UsageError('gremesh-agent run needs root (OVS, network namespaces)');
  const cfg = resolveAgentConfig(process.env, values);
  const D = await loadDaemon();
  const log = D.createLogger('agent', cfg.logLevel).child({ host: cfg.name });
  const { metrics, close: closeMetrics } = await startMetrics(cfg, log);
  fs.mkdirSync(cfg.stateDir, { recursive: true, mode: 0o700 });
  const run = D.createRunner({ timeoutMs: 30_000, log: log.child({ part: 'exec' }) });
  const links = D.createLinkDriver(run, (m) => log.info({}, m));
  const underlayIp = await D.findUnderlayIp(links, cfg.coordinator, cfg.underlayIp);
  const underlay = await D.keepUnderlay(links, cfg.stateDir, underlayIp);
  const underlayMtu = underlay?.mtu ?? 1500;
  const ovs = new D.OvsdbOvsDriver({ db: cfg.ovsDb, run, log: log.child({ part: 'ovs' }) });
  ovs.start();
  const mgmtSocket = ovs.mgmtSocket(cfg.bridge);
  metrics.policySource(async () => D.policyCounts(await ovs.dumpFlows(cfg.bridge, D.POLICY_TABLE), current));
  let client: CoordinatorClient | undefined;
  let wireguardRef: WireguardManager | undefined;
  let current: Snapshot | undefined;
  const onPassHooks: ((r: PassResult) => void)[] = [];
  const onPass = (r: PassResult) => {
    metrics.pass(r);
    for (const h of onPassHooks) h(r);
    D.writeStatus(cfg.stateDir, r, {
      host: cfg.name,
      connected: client?.connected ?? false,
      coordinator: client?.address ?? '',
      underlayIp,
      processesStarted: D.processesStarted(),
      attachErrors: docker.containers?.errors ?? [],
    });
  };
  const names = namesResolver(D, cfg, log, metrics);
  if (names)
    onPassHooks.push((r) => {
      const cidrOf = new Map(current?.networks.map((n) => [n.name, n.cidr]));
      const gateways = r.desired.gateways.map((g) => ({ network: g.network, ip: g.ip, cidr: cidrOf.get(g.network)! }));
      names.resolver.update(
        current,
        gateways.filter((g) => g.cidr),
        r.locals,
      );
    });
  const wgParts: { ready: boolean } = { ready: false };
  const onReady = (r: boolean) => {
    wgParts.ready = r;
    reconciler.markDirty(r ? 'WireGuard up' : 'WireGuard down');
    reconciler.refreshNat('WireGuard');
  };
  const reconciler = newReconciler(D, cfg, log, { ovs, links, run, dns: names, wireguard: wgParts })(
    onPass,
    underlay,
    mgmtSocket,
  );
  const snapshot = () => current;
  const docker = await dockerSide({ cfg, log, links, ovs, reconciler, metrics, underlayMtu, snapshot });
  // Docker's side starts once the bridge has had its first pass (tunnels first: loading
  // dockerode alone takes about as long as the rest of the start), or after 2 s without one
  onPassHooks.push(() => void docker.start());
  const containersTimer = setTimeout(() => void docker.start(), 2000);
  const setSnapshot = (s: Snapshot) => {
    const first = !current;
    const networksChanged = JSON.stringify(current?.networks) !== JSON.stringify(s.networks);
    current = s;
    wireguardRef?.markDirty('snapshot');
    reconciler.setSnapshot(s);
    if (first) docker.containers?.markDirty();
    if (networksChanged) docker.dockerNetworks?.markDirty();
  };
  const { coordinator, openflow } = controlPlane(D, cfg, log, {
    run,
    ovs,
    reconciler,
    underlayIp,
    mgmtSocket,
    snapshot,
    setSnapshot,
  });
  client = coordinator;
  const wireguard = (wireguardRef = encryptionSide(D, cfg, log, { run, underlayMtu, snapshot, coordinator, onReady }));
  metrics.wireguardSource(() => wireguard.figures());
  wireguard.start();
  // a restart with encryption: the tunnels wait for WireGuard's first pass (it finds the device
  // up and ready at once), so the first bridge pass does not take them down meanwhile
  if (current?.encryption) await Promise.race([wireguard.nextPass(), new Promise((r) => setTimeout(r, 3000))]);
  if (openflow) ovs.useOpenflow(openflow);
  openflow?.start();
  reconciler.start();
  coordinator.start();
  const control = serveAttachControl(D, cfg.stateDir, () => docker.containers);
  const reporter = newReporter(D, cfg, log, { reconciler, snapshot, docker, coordinator, wireguard });
  reporter.start();
  onPassHooks.push((r) => reporter.onPass(r));
  const info = { coordinator: cfg.coordinator, underlayIp, underlayMtu, bridge: cfg.bridge, datapath: cfg.datapath };
  log.info({ ...info, version: D.AGENT_VERSION, uptimeMs: Math.round(performance.now()) }, 'agent started');
  await new Promise<void>((resolve) => {
    const stop = () => resolve();
    process.once('SIGTERM', stop);
    process.once('SIGINT', stop);
  });
  // a clean stop leaves the data plane as it is: traffic keeps flowing
  stopAll([
    () => reporter.stop(),
    () => control.close(),
    () => clearTimeout(containersTimer),
    () => docker.containers?.stop(),
    () => docker.dockerNetworks?.stop(),
    () => reconciler.stop(),
    () => wireguard.stop(),
    () => openflow?.stop(),
    () => names?.resolver.stop(),
    () => closeMetrics?.(),
    () => ovs.stop(),
    () => coordinator.stop(),
  ]);
  log.info({}, 'agent stopped; the data plane stays as it is');
  process.exit(0);
}

async function attachCmd(argv: string[], detach: boolean): Promise<number> {
  const { values, positionals } = parse(argv, {
    'state-dir': { type: 'string' },
    network: { type: 'string' },
    ip: { type: 'string' },
    mac: { type: 'string' },
    mtu: { type: 'string' },
    gateway: { type: 'string' },
    iface: { type: 'string' },
    output: { type: 'string', short: 'o' },
  });
  if (values.help) {
    process.stdout.write(HELP);
    return 0;
  }
  if (positionals.length !== 1)
    throw new UsageError(
      detach
        ? 'usage: gremesh-agent detach CONTAINER'
        : 'usage: gremesh-agent attach CONTAINER --network NAME [--ip IP] [--mac MAC] [--mtu N] [--gateway IP|none] [--iface NAME]',
    );
  const sock = controlSocket(
    (values['state-dir'] as string | undefined) ?? process.env.GREMESH_STATE_DIR ?? '/var/lib/gremesh-agent',
  );
  const container = positionals[0]!;
  if (detach) {
    await callControl(sock, 'POST', '/detach', { container });
    process.stdout.write(`${container} detached\n`);
    return 0;
  }
  if (!values.network) throw new UsageError('attach needs --network NAME');
  const request: AttachRequest = { network: values.network as string };
  for (const k of ['ip', 'mac', 'mtu', 'gateway', 'iface'] as const)
    if (values[k] !== undefined) request[k] = values[k] as string;
  const r = (await callControl(sock, 'POST', '/attach', { container, request })) as {
    ip: string;
    mac: string;
    port: string;
  };
  process.stdout.write(
    values.output === 'json' ? `${JSON.stringify(r)}\n` : `${container} attached: ${r.ip} ${r.mac} (port ${r.port})\n`,
  );
  return 0;
}

async function main(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  if (cmd === 'status') return status(rest);
  if (cmd === 'attach') return attachCmd(rest, false);
  if (cmd === 'detach') return attachCmd(rest, true);
  if (cmd === 'run') return run(rest);
  if (cmd === undefined || cmd.startsWith('-')) return run(argv);
  throw new UsageError(`unknown command "${cmd}" (try --help)`);
}

runMain('gremesh-agent', main);
