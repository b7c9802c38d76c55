// Coordinator configuration: defaults < file (JSON) < environment < flags, validated once.
import * as fs from 'node:fs';
import { UsageError } from '../common/cli.js';
import { checkName, checkNetworkSpec } from './validate.js';
import { parseMetricsAddr } from '../common/metrics.js';
import { DEFAULT_TUNNEL_CIDR, ENCRYPTIONS, checkTunnelCidr } from '../common/wireguard.js';

export interface CoordinatorConfig {
  listen: string;
  advertise: string;
  dataDir: string;
  store: 'sqlite' | 'memory' | 'etcd';
  /** --store etcd: client URLs, comma-separated */
  etcdEndpoints: string;
  etcdPrefix: string;
  /** PEM files for TLS to etcd ('' = none) */
  etcdCa: string;
  etcdCert: string;
  etcdKey: string;
  /** --store etcd: how long one etcd call may take before the request is refused as UNAVAILABLE */
  etcdTimeoutS: number;
  /** --store etcd: the key that seals the shared CA key ('' = DATA_DIR/secrets.key) */
  secretsKeyFile: string;
  networkName: string;
  networkCidr: string;
  hostPrefixLen: number;
  networkMtu: number;
  downAfterS: number;
  tokenTtlS: number;
  /** lifetime of host certificates (agents renew at 60 %) */
  hostCertTtlS: number;
  maxMessageBytes: number;
  logLevel: string;
  /** Prometheus endpoint ADDR:PORT; '' = off */
  metrics: string;
  /** 'wireguard': every GRE packet between hosts travels inside WireGuard */
  encryption: string;
  /** encryption wireguard: the hosts' addresses inside WireGuard */
  tunnelCidr: string;
}

export const DEFAULTS: CoordinatorConfig = {
  listen: '0.0.0.0:7420',
  advertise: '',
  dataDir: '/var/lib/gremesh-coordinator',
  store: 'sqlite',
  etcdEndpoints: '',
  etcdPrefix: '/gremesh/',
  etcdCa: '',
  etcdCert: '',
  etcdKey: '',
  etcdTimeoutS: 5,
  secretsKeyFile: '',
  networkName: 'default',
  networkCidr: '10.212.0.0/16',
  hostPrefixLen: 24,
  networkMtu: 0,
  downAfterS: 30,
  tokenTtlS: 24 * 3600,
  hostCertTtlS: 365 * 24 * 3600,
  maxMessageBytes: 1024 * 1024,
  logLevel: 'info',
  metrics: '',
  encryption: 'none',
  tunnelCidr: DEFAULT_TUNNEL_CIDR,
};

/** flag name -> [config key, env var] */
export const KEYS: Record<string, [keyof CoordinatorConfig, string]> = {
  listen: ['listen', 'GREMESH_LISTEN'],
  advertise: ['advertise', 'GREMESH_ADVERTISE'],
  'data-dir': ['dataDir', 'GREMESH_DATA_DIR'],
  store: ['store', 'GREMESH_STORE'],
  'etcd-endpoints': ['etcdEndpoints', 'GREMESH_ETCD_ENDPOINTS'],
  'etcd-prefix': ['etcdPrefix', 'GREMESH_ETCD_PREFIX'],
  'etcd-ca': ['etcdCa', 'GREMESH_ETCD_CA'],
  'etcd-cert': ['etcdCert', 'GREMESH_ETCD_CERT'],
  'etcd-key': ['etcdKey', 'GREMESH_ETCD_KEY'],
  'etcd-timeout': ['etcdTimeoutS', 'GREMESH_ETCD_TIMEOUT'],
  'secrets-key-file': ['secretsKeyFile', 'GREMESH_SECRETS_KEY_FILE'],
  'network-name': ['networkName', 'GREMESH_NETWORK_NAME'],
  'network-cidr': ['networkCidr', 'GREMESH_NETWORK_CIDR'],
  'host-prefix-len': ['hostPrefixLen', 'GREMESH_HOST_PREFIX_LEN'],
  'network-mtu': ['networkMtu', 'GREMESH_NETWORK_MTU'],
  'down-after': ['downAfterS', 'GREMESH_DOWN_AFTER'],
  'token-ttl': ['tokenTtlS', 'GREMESH_TOKEN_TTL'],
  'host-cert-ttl': ['hostCertTtlS', 'GREMESH_HOST_CERT_TTL'],
  'max-message-bytes': ['maxMessageBytes', 'GREMESH_MAX_MESSAGE_BYTES'],
  'log-level': ['logLevel', 'GREMESH_LOG_LEVEL'],
  metrics: ['metrics', 'GREMESH_METRICS'],
  encryption: ['encryption', 'GREMESH_ENCRYPTION'],
  'tunnel-cidr': ['tunnelCidr', 'GREMESH_TUNNEL_CIDR'],
};

const NUMERIC = new Set<keyof CoordinatorConfig>([
  'hostPrefixLen',
  'networkMtu',
  'downAfterS',
  'etcdTimeoutS',
  'tokenTtlS',
  'hostCertTtlS',
  'maxMessageBytes',
]);

/** the numeric keys given as durations (seconds) */
const DURATIONS = new Set<keyof CoordinatorConfig>(['downAfterS', 'etcdTimeoutS', 'tokenTtlS', 'hostCertTtlS']);

/** "90", "90s", "15m", "24h", "7d" -> seconds */
export function parseDuration(s: string): number | undefined {
  const m = /^(\d+)([smhd]?)$/.exec(s.trim());
  if (!m) return undefined;
  return Number(m[1]) * ({ '': 1, s: 1, m: 60, h: 3600, d: 86400 } as Record<string, number>)[m[2]!]!;
}

export function parseHostPort(s: string): { host: string; port: number } | undefined {
  const m = /^(.*):(\d{1,5})$/.exec(s);
  if (!m || !m[1] || Number(m[2]) > 65535) return undefined;
  return { host: m[1].replace(/^\[|\]$/g, ''), port: Number(m[2]) };
}

export function resolveConfig(
  file: Record<string, unknown>,
  env: Record<string, string | undefined>,
  flags: Record<string, unknown>,
): CoordinatorConfig {
  const c: Record<string, unknown> = { ...DEFAULTS };
  const set = (key: keyof CoordinatorConfig, v: unknown, from: string) => {
    if (v === undefined) return;
    if (NUMERIC.has(key)) {
      const n = DURATIONS.has(key) ? parseDuration(String(v)) : /^\d+$/.test(String(v)) ? Number(v) : undefined;
      if (n === undefined)
        throw new UsageError(
          `${from}: "${String(v)}" is not a ${DURATIONS.has(key) ? 'duration (e.g. 30s, 15m, 24h)' : 'whole number'}`,
        );
      c[key] = n;
    } else c[key] = String(v);
  };
  for (const [k, v] of Object.entries(file)) {
    const entry = Object.values(KEYS).find(([key]) => key === k);
    if (!entry) throw new UsageError(`config file: unknown key "${k}"`);
    set(entry[0], v, `config file key ${k}`);
  }
  for (const [key, envName] of Object.values(KEYS)) set(key, env[envName], envName);
  for (const [flag, [key]] of Object.entries(KEYS)) set(key, flags[flag], `--${flag}`);
  const cfg = c as unknown as CoordinatorConfig;
  if (!parseHostPort(cfg.listen)) throw new UsageError(`--listen must be ADDR:PORT, got "${cfg.listen}"`);
  if (cfg.store !== 'sqlite' && cfg.store !== 'memory' && cfg.store !== 'etcd')
    throw new UsageError(`--store must be sqlite, memory or etcd, got "${cfg.store}"`);
  if (!(ENCRYPTIONS as readonly string[]).includes(cfg.encryption))
    throw new UsageError(`--encryption must be none or wireguard, got "${cfg.encryption}"`);
  const tunnelProblem = checkTunnelCidr(cfg.tunnelCidr);
  if (tunnelProblem) throw new UsageError(tunnelProblem);
  if (cfg.store === 'etcd') {
    const urls = cfg.etcdEndpoints.split(',').filter(Boolean);
    if (!urls.length) throw new UsageError('--store etcd needs --etcd-endpoints URL[,URL...]');
    for (const u of urls)
      if (!/^https?:\/\/[^/\s]+:\d{1,5}$/.test(u))
        throw new UsageError(`--etcd-endpoints: "${u}" is not http(s)://HOST:PORT`);
    if (!/^\/(.*\/)?$/.test(cfg.etcdPrefix)) throw new UsageError('--etcd-prefix must start and end with "/"');
    if (!!cfg.etcdCert !== !!cfg.etcdKey) throw new UsageError('--etcd-cert and --etcd-key go together');
    if (cfg.etcdTimeoutS < 1 || cfg.etcdTimeoutS > 60) throw new UsageError('--etcd-timeout must be 1s..60s');
  }
  const bad =
    checkName('network', cfg.networkName) ?? checkNetworkSpec(cfg.networkCidr, cfg.hostPrefixLen, cfg.networkMtu, []);
  if (bad) throw new UsageError(bad);
  if (cfg.maxMessageBytes < 1024) throw new UsageError('--max-message-bytes must be at least 1024');
  if (cfg.hostCertTtlS < 10) throw new UsageError('--host-cert-ttl must be at least 10s');
  if (cfg.metrics) {
    const m = parseMetricsAddr(cfg.metrics);
    if (typeof m === 'string') throw new UsageError(m);
  }
  if (!cfg.advertise) cfg.advertise = cfg.listen;
  return cfg;
}

export function readConfigFile(path: string | undefined): Record<string, unknown> {
  if (!path) return {};
  let text: string;
  try {
    text = fs.readFileSync(path, 'utf8');
  } catch (e) {
    throw new UsageError(`cannot read config file ${path}: ${(e as NodeJS.ErrnoException).code}`);
  }
  try {
    const v = JSON.parse(text) as unknown;
    if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new Error('not an object');
    return v as Record<string, unknown>;
  } catch (e) {
    throw new UsageError(`config file ${path} is not a JSON object: ${(e as Error).message}`);
  }
}
