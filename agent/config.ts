// Agent configuration: defaults < environment < flags, validated once.
import { canonicalIp6 } from '../common/ipv6.js';
import { UsageError } from '../common/cli.js';
import { isDnsLabel, parseIp } from '../common/ipv4.js';
import { parseGatewayAllow, type GatewayAllow } from './net/nat.js';
import { parseMetricsAddr } from '../common/metrics.js';
import { parseUpstreams, type Upstream } from './dns/upstreams.js';
import { DEFAULT_WIREGUARD_PORT } from '../common/wireguard.js';

export interface AgentConfig {
  coordinator: string;
  name: string;
  joinToken: string;
  underlayIp: string;
  bridge: string;
  datapath: 'system' | 'netdev';
  ovsDb: string;
  stateDir: string;
  docker: string;
  resyncS: number;
  reportS: number;
  logLevel: string;
  caHash: string;
  insecure: boolean;
  /** what containers may reach on their gateway beyond ICMP (and link-local forwarding): --gateway-allow */
  gatewayAllow: GatewayAllow[];
  /** Prometheus endpoint ADDR:PORT; '' = off */
  metrics: string;
  /** where dockerd discovers plugins: the agent serves DIR/gremesh.sock; 'off' = no plugin */
  pluginDir: string;
  /** 'auto': make a Docker network for every gremesh network on this host */
  dockerNetworks: 'auto' | 'off';
  /** names across hosts (agent/dns): 'on' serves each network's resolver on its gateway */
  dns: 'on' | 'off';
  /** --dns-upstream; empty: the host's resolv.conf, read at start */
  dnsUpstream: Upstream[];
  /** encryption (when the coordinator asks for it): the WireGuard device, its UDP port, kernel or wireguard-go */
  wireguardInterface: string;
  wireguardPort: number;
  wireguardImpl: 'auto' | 'kernel' | 'userspace';
}

export const AGENT_DEFAULTS: AgentConfig = {
  coordinator: '',
  name: '',
  joinToken: '',
  underlayIp: '',
  bridge: 'gremesh0',
  datapath: 'system',
  ovsDb: 'unix:/var/run/openvswitch/db.sock',
  stateDir: '/var/lib/gremesh-agent',
  docker: 'unix:///var/run/docker.sock',
  resyncS: 10,
  reportS: 5,
  logLevel: 'info',
  caHash: '',
  insecure: false,
  gatewayAllow: [],
  metrics: '',
  pluginDir: '/run/docker/plugins',
  dockerNetworks: 'auto',
  dns: 'on',
  dnsUpstream: [],
  wireguardInterface: 'gremesh-wg',
  wireguardPort: DEFAULT_WIREGUARD_PORT,
  wireguardImpl: 'auto',
};

/** flag -> [key, env] */
export const AGENT_KEYS: Record<string, [keyof AgentConfig, string]> = {
  coordinator: ['coordinator', 'GREMESH_COORDINATOR'],
  name: ['name', 'GREMESH_NAME'],
  'join-token': ['joinToken', 'GREMESH_JOIN_TOKEN'],
  'underlay-ip': ['underlayIp', 'GREMESH_UNDERLAY_IP'],
  bridge: ['bridge', 'GREMESH_BRIDGE'],
  datapath: ['datapath', 'GREMESH_DATAPATH'],
  'ovs-db': ['ovsDb', 'GREMESH_OVS_DB'],
  'state-dir': ['stateDir', 'GREMESH_STATE_DIR'],
  docker: ['docker', 'GREMESH_DOCKER'],
  resync: ['resyncS', 'GREMESH_RESYNC'],
  report: ['reportS', 'GREMESH_REPORT'],
  'log-level': ['logLevel', 'GREMESH_LOG_LEVEL'],
  'ca-hash': ['caHash', 'GREMESH_CA_HASH'],
  'gateway-allow': ['gatewayAllow', 'GREMESH_GATEWAY_ALLOW'],
  metrics: ['metrics', 'GREMESH_METRICS'],
  'plugin-dir': ['pluginDir', 'GREMESH_PLUGIN_DIR'],
  'docker-networks': ['dockerNetworks', 'GREMESH_DOCKER_NETWORKS'],
  dns: ['dns', 'GREMESH_DNS'],
  'dns-upstream': ['dnsUpstream', 'GREMESH_DNS_UPSTREAM'],
  'wireguard-interface': ['wireguardInterface', 'GREMESH_WIREGUARD_INTERFACE'],
  'wireguard-port': ['wireguardPort', 'GREMESH_WIREGUARD_PORT'],
  'wireguard-impl': ['wireguardImpl', 'GREMESH_WIREGUARD_IMPL'],
};

export function resolveAgentConfig(
  env: Record<string, string | undefined>,
  flags: Record<string, unknown>,
): AgentConfig {
  const c: Record<string, unknown> = { ...AGENT_DEFAULTS };
  for (const [flag, [key, envName]] of Object.entries(AGENT_KEYS)) {
    const v = flags[flag] ?? env[envName];
    if (v === undefined) continue;
    if (key === 'gatewayAllow') {
      const allow = parseGatewayAllow(String(v));
      if (typeof allow === 'string') throw new UsageError(allow);
      c[key] = allow;
    } else if (key === 'dnsUpstream') {
      const ups = parseUpstreams(String(v));
      if (typeof ups === 'string') throw new UsageError(ups);
      c[key] = ups;
    } else if (key === 'wireguardPort') {
      const n = /^\d{1,5}$/.test(String(v)) ? Number(v) : 0;
      if (n < 1 || n > 65535) throw new UsageError(`--wireguard-port must be 1..65535, got "${String(v)}"`);
      c[key] = n;
    } else if (key === 'resyncS' || key === 'reportS') {
      const m = /^(\d+)(s?)$/.exec(String(v));
      if (!m || Number(m[1]) < 1) throw new UsageError(`--${flag} must be whole seconds >= 1, got "${String(v)}"`);
      c[key] = Number(m[1]);
    } else c[key] = String(v);
  }
  const cfg = c as unknown as AgentConfig;
  cfg.insecure = flags.insecure === true || env.GREMESH_INSECURE === '1';
  if (cfg.caHash && !/^sha256:[0-9a-f]{64}$/.test(cfg.caHash))
    throw new UsageError('--ca-hash must be sha256:<64 hex digits>, as coordctl join prints it');
  if (!cfg.coordinator) throw new UsageError('--coordinator ADDR:PORT is required');
  for (const c of cfg.coordinator.split(','))
    if (!/^[^:,]+:\d{1,5}$/.test(c))
      throw new UsageError(`--coordinator must be ADDR:PORT[,ADDR:PORT...], got "${cfg.coordinator}"`);
  if (!isDnsLabel(cfg.name))
    throw new UsageError(cfg.name ? `--name "${cfg.name}" is not a DNS label` : '--name is required');
  if (cfg.joinToken && !/^[a-z0-9]{6}\.[a-z0-9]{16}$/.test(cfg.joinToken))
    throw new UsageError('--join-token must look like abcdef.0123456789abcdef');
  if (cfg.underlayIp && parseIp(cfg.underlayIp) === undefined) {
    // an IPv6 underlay (ip6gre tunnels), in canonical text (the coordinator keeps it unique as text)
    const six = canonicalIp6(cfg.underlayIp);
    if (!six) throw new UsageError(`--underlay-ip "${cfg.underlayIp}" is not an IPv4 or IPv6 address`);
    cfg.underlayIp = six;
  }
  if (cfg.metrics) {
    const m = parseMetricsAddr(cfg.metrics);
    if (typeof m === 'string') throw new UsageError(m);
  }
  if (cfg.pluginDir !== 'off' && !cfg.pluginDir.startsWith('/'))
    throw new UsageError(`--plugin-dir must be an absolute directory or off, got "${cfg.pluginDir}"`);
  if (cfg.dockerNetworks !== 'auto' && cfg.dockerNetworks !== 'off')
    throw new UsageError(`--docker-networks must be auto or off, got "${cfg.dockerNetworks}"`);
  if (cfg.dockerNetworks === 'auto' && cfg.pluginDir === 'off')
    throw new UsageError('--docker-networks auto needs the plugin (--plugin-dir is off): pass --docker-networks off');
  if (cfg.dns !== 'on' && cfg.dns !== 'off') throw new UsageError(`--dns must be on or off, got "${cfg.dns}"`);
  if (cfg.datapath !== 'system' && cfg.datapath !== 'netdev')
    throw new UsageError(`--datapath must be system or netdev, got "${cfg.datapath}"`);
  if (!/^[A-Za-z0-9_.-]{1,15}$/.test(cfg.bridge))
    throw new UsageError(`--bridge "${cfg.bridge}" is not a valid interface name (1-15 characters)`);
  if (!/^[A-Za-z0-9_.-]{1,15}$/.test(cfg.wireguardInterface) || cfg.wireguardInterface === cfg.bridge)
    throw new UsageError(
      `--wireguard-interface "${cfg.wireguardInterface}" is not a valid interface name (1-15 characters, not the bridge's)`,
    );
  if (!['auto', 'kernel', 'userspace'].includes(cfg.wireguardImpl))
    throw new UsageError(`--wireguard-impl must be auto, kernel or userspace, got "${cfg.wireguardImpl}"`);
  if (!/^(unix:|tcp:|ssl:)/.test(cfg.ovsDb))
    throw new UsageError(`--ovs-db must be unix:PATH, tcp:IP:PORT or ssl:IP:PORT, got "${cfg.ovsDb}"`);
  return cfg;
}
