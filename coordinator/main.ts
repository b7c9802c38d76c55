#!/usr/bin/env node
// gremesh-coordinator: the control plane. Serves AgentService and AdminService over gRPC.
// main() parses the flags and wires the parts; each part is built by a named function here.
import { X509Certificate, randomUUID } from 'node:crypto';
import * as fs from 'node:fs';
import { UsageError, parse, runMain } from '../common/cli.js';
import { parseIp } from '../common/ipv4.js';
import type { Logger } from '../common/log.js';
import type { Encryption } from '../common/wireguard.js';
import { KEYS, parseHostPort, readConfigFile, resolveConfig, type CoordinatorConfig } from './config.js';
import type { Coordinator, CoordinatorOptions } from './coordinator.js';
import type { Pki } from './pki.js';
import type { CoordinatorMembers, SharedStore, Store } from './store.js';
import type { WatchHub } from './watch-hub.js';

/** gRPC, SQLite and the PKI load only once the flags are good: --help and usage errors answer at once */
async function loadDaemon() {
  const [log, coordinator, grpcServer, memory, sqlite, hub, pki, sharedPki] = await Promise.all([
    import('../common/log.js'),
    import('./coordinator.js'),
    import('./grpc-server.js'),
    import('./memory-store.js'),
    import('./sqlite-store.js'),
    import('./watch-hub.js'),
    import('./pki.js'),
    import('./shared-pki.js'),
  ]);
  return {
    createLogger: log.createLogger,
    Coordinator: coordinator.Coordinator,
    createServer: grpcServer.createServer,
    bindServer: grpcServer.bind,
    tlsServerCredentials: grpcServer.tlsServerCredentials,
    MemoryStore: memory.MemoryStore,
    SqliteStore: sqlite.SqliteStore,
    /** etcd3 is loaded only for --store etcd */
    EtcdStore: async () => (await import('./etcd-store.js')).EtcdStore,
    WatchHub: hub.WatchHub,
    ensurePki: pki.ensurePki,
    fingerprint: pki.fingerprint,
    keyFingerprint: pki.keyFingerprint,
    csrKeyFingerprint: pki.csrKeyFingerprint,
    signHostCsr: pki.signHostCsr,
    sharedPkiMaterial: sharedPki.sharedPkiMaterial,
  };
}
type Daemon = Awaited<ReturnType<typeof loadDaemon>>;

const HELP = `gremesh-coordinator: the gremesh control plane (gRPC)

Usage: gremesh-coordinator [flags]

  --listen ADDR:PORT        where to serve (default 0.0.0.0:7420)        env GREMESH_LISTEN
  --advertise ADDR:PORT     address agents dial, printed by coordctl join (default --listen);
                            on etcd, join prints every coordinator serving, this one first
  --data-dir DIR            state (SQLite) lives here (default /var/lib/gremesh-coordinator)
  --store sqlite|memory|etcd  memory: nothing persists (tests only); etcd: the records in an
                            etcd cluster (several coordinators can share it)
  --etcd-endpoints URLS     --store etcd: http(s)://HOST:PORT,... of the cluster's members
  --etcd-prefix P           key prefix (default /gremesh/)
  --etcd-ca/--etcd-cert/--etcd-key FILE  TLS to etcd (PEM files)
  --etcd-timeout DUR        one etcd call longer than this is refused as UNAVAILABLE (default 5s;
                            a cluster without quorum answers nothing)
  --secrets-key-file FILE   --store etcd: the key sealing the CA's and admin's private keys
                            in etcd (default DATA_DIR/secrets.key; the first coordinator makes
                            it, every other one needs a copy of it)
  --network-name NAME       the network created on first start (default "default")
  --network-cidr CIDR       its CIDR (default 10.212.0.0/16)
  --host-prefix-len N       each host's slice (default 24)
  --network-mtu N           container MTU; 0: each agent computes underlay MTU - 42
  --down-after DUR          a host silent this long shows as down (default 30s)
  --token-ttl DUR           default join token lifetime (default 24h)
  --host-cert-ttl DUR       lifetime of host certificates (default 365d); agents renew at 60 %
  --max-message-bytes N     largest request accepted (default 1048576)
  --log-level LEVEL         debug|info|warn|error (default info)
  --metrics ADDR:PORT       serve Prometheus metrics on http://ADDR:PORT/metrics (default off;
                            no authentication: bind it to 127.0.0.1, or firewall the port)
  --encryption MODE         none (default) | wireguard: every GRE packet between hosts inside
                            WireGuard; agents make their own keys and publish them here (give
                            every coordinator of one etcd cluster the same mode)
  --tunnel-cidr CIDR        encryption wireguard: the hosts' addresses inside WireGuard, each
                            host's from the low bits of its underlay address (default
                            100.64.0.0/16); must not overlap a network or the underlay
  --config FILE             JSON file with the same keys in camelCase (dataDir, networkCidr, ...)
  --tls-san NAMES           extra names/addresses for the serving certificate (comma-separated;
                            the --advertise and --listen hosts, localhost and 127.0.0.1 are in it)
  --insecure                no TLS: plaintext gRPC, agents authenticate with a credential only
                            (a warning on every start; for tests and trusted labs)

TLS (the default): on first start a CA, the serving certificate and an admin client
certificate (for coordctl) are made in DATA_DIR/pki (keys mode 0600). "coordctl join"
prints the CA's SHA-256 hash; agents pin it and get a client certificate for their name.
With --store etcd the CA and the admin credentials live in etcd (private keys sealed with
AES-256-GCM under --secrets-key-file), so every coordinator signs and checks the same
identities; each one issues its own serving certificate.

Precedence: defaults < --config file < environment (GREMESH_<FLAG>) < flags.
`;

interface Flags {
  cfg: CoordinatorConfig;
  insecure: boolean;
  /** --tls-san: extra names for the serving certificate */
  tlsSans: string[];
}

/** The flags, the config file and the environment resolved; undefined for --help. */
function parseFlags(argv: string[]): Flags | undefined {
  const opts = Object.fromEntries(Object.keys(KEYS).map((k) => [k, { type: 'string' as const }]));
  const { values } = parse(
    argv,
    { ...opts, config: { type: 'string' }, 'tls-san': { type: 'string' }, insecure: { type: 'boolean' } },
    false,
  );
  if (values.help) return undefined;
  const cfg = resolveConfig(readConfigFile(values.config as string | undefined), process.env, values);
  const insecure = values.insecure === true || process.env.GREMESH_INSECURE === '1';
  const tlsSans = ((values['tls-san'] as string | undefined) ?? process.env.GREMESH_TLS_SAN ?? '')
    .split(',')
    .map((x) => x.trim())
    .filter(Boolean);
  return { cfg, insecure, tlsSans };
}

/** The Store --store names: memory, etcd, or a SQLite file in --data-dir. */
async function openStore(d: Daemon, cfg: CoordinatorConfig): Promise<Store> {
  if (cfg.store === 'memory') return new d.MemoryStore();
  if (cfg.store !== 'etcd') return new d.SqliteStore(`${cfg.dataDir}/coordinator.db`);
  const read = (f: string) => (f ? fs.readFileSync(f) : undefined);
  return new (await d.EtcdStore())({
    endpoints: cfg.etcdEndpoints.split(',').filter(Boolean),
    prefix: cfg.etcdPrefix,
    timeoutMs: cfg.etcdTimeoutS * 1000,
    tls:
      cfg.etcdCa || cfg.etcdCert
        ? { ca: read(cfg.etcdCa), cert: read(cfg.etcdCert), key: read(cfg.etcdKey) }
        : undefined,
  });
}

/** --insecure: no PKI, a warning on stderr and in the log. */
function warnInsecure(log: Logger): undefined {
  process.stderr.write(
    'gremesh-coordinator: WARNING: --insecure: gRPC is plaintext and unauthenticated by certificates; anyone who can reach this port and holds a token or credential is trusted\n',
  );
  log.warn({}, 'running without TLS (--insecure)');
  return undefined;
}

/**
 * The CA, serving and admin certificates in DATA_DIR/pki; on a shared store the CA and the
 * admin credentials come from (or go to) the store, sealed under --secrets-key-file.
 */
async function setUpPki(
  d: Daemon,
  cfg: CoordinatorConfig,
  shared: SharedStore | undefined,
  tlsSans: string[],
  log: Logger,
): Promise<Pki> {
  const sanOf = (h: string) => (parseIp(h) !== undefined ? `IP:${h}` : `DNS:${h}`);
  const hosts = [parseHostPort(cfg.advertise)?.host, parseHostPort(cfg.listen)?.host].filter(
    (h): h is string => !!h && h !== '0.0.0.0' && h !== '::',
  );
  let material;
  if (shared) {
    const keyFile = cfg.secretsKeyFile || `${cfg.dataDir}/secrets.key`;
    const r = await d.sharedPkiMaterial(shared.secrets, keyFile, `${cfg.dataDir}/pki`);
    material = r.material;
    log.info({ keyFile }, r.made ? 'CA and admin credentials stored in etcd (keys sealed)' : 'CA read from etcd');
  }
  return d.ensurePki(`${cfg.dataDir}/pki`, [...hosts, ...tlsSans].map(sanOf), material);
}

/** The Coordinator's options from the config and, with TLS, the PKI that signs and checks host certificates. */
function coordinatorOptions(d: Daemon, cfg: CoordinatorConfig, pki: Pki | undefined, log: Logger): CoordinatorOptions {
  return {
    downAfterMs: cfg.downAfterS * 1000,
    ownAddresses: [cfg.listen, cfg.advertise]
      .map((a) => a.replace(/:\d+$/, ''))
      .filter((ip) => ip !== '0.0.0.0' && /^\d+\.\d+\.\d+\.\d+$/.test(ip)),
    defaultTokenTtlS: cfg.tokenTtlS,
    log: log.child({ part: 'state' }),
    encryption: cfg.encryption as Encryption,
    tunnelCidr: cfg.tunnelCidr,
    ...(pki
      ? {
          signCsr: (csr: string, host: string) => d.signHostCsr(pki, csr, host, cfg.hostCertTtlS * 1000),
          fingerprintOf: (pem: string) => ({ cert: d.fingerprint(pem), key: d.keyFingerprint(pem) }),
          csrKeyFingerprint: d.csrKeyFingerprint,
          validityOf: (pem: string) => {
            const c = new X509Certificate(pem);
            return { notBeforeMs: Date.parse(c.validFrom), notAfterMs: Date.parse(c.validTo) };
          },
        }
      : {}),
  };
}

/** --metrics: Prometheus metrics served, and the counter of failed RPCs the gRPC layer feeds. */
async function startMetrics(addr: string, coord: Coordinator, hub: WatchHub, log: Logger) {
  const [{ serveMetrics }, { coordinatorMetrics }] = await Promise.all([
    import('../common/metrics.js'),
    import('./metrics.js'),
  ]);
  const server = await serveMetrics(addr);
  const metrics = coordinatorMetrics(server as never, coord, hub);
  log.info({ metrics: `http://${addr}/metrics` }, 'serving Prometheus metrics');
  return { server, rpcError: (m: string, c: string) => metrics.rpcError(m, c) };
}

/**
 * On a shared store (etcd), `coordctl join` prints every coordinator serving (this one
 * first): agents fail over among them. This one announces itself every 5 s under its lease.
 */
class Membership {
  /** the address agents dial (with the port actually bound) */
  address = '';
  private siblings: string[] = [];
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly members: CoordinatorMembers | undefined,
    private readonly log: Logger,
  ) {}

  /** the addresses `coordctl join` prints, this one first */
  async advertised(): Promise<string> {
    if (this.timer) this.siblings = await this.members!.list().catch(() => this.siblings);
    return [this.address, ...this.siblings.filter((a) => a !== this.address).sort()].join(',');
  }

  /** announced now and every 5 s (not with a wildcard address: no agent could dial it) */
  async start(): Promise<void> {
    const members = this.members;
    if (!members || /^(0\.0\.0\.0|\[?::\]?):/.test(this.address)) return;
    const id = randomUUID();
    const refresh = async () => {
      try {
        await members.announce(id, this.address);
        this.siblings = await members.list();
      } catch (e) {
        this.log.debug({ err: (e as Error).message }, 'coordinator list not refreshed');
      }
    };
    await refresh();
    this.timer = setInterval(() => void refresh(), 5000);
  }

  stop(): void {
    clearInterval(this.timer);
  }
}

/** SIGTERM or SIGINT */
function untilStopped(): Promise<void> {
  return new Promise<void>((resolve) => {
    process.once('SIGTERM', () => resolve());
    process.once('SIGINT', () => resolve());
  });
}

async function main(argv: string[]): Promise<number> {
  const flags = parseFlags(argv);
  if (!flags) {
    process.stdout.write(HELP);
    return 0;
  }
  const { cfg } = flags;
  const d = await loadDaemon();
  const log = d.createLogger('coordinator', cfg.logLevel);
  const store = await openStore(d, cfg);
  // a store several coordinators share (etcd): the CA in it, the coordinators listed in it
  const shared = store.shared;
  const pki = flags.insecure ? warnInsecure(log) : await setUpPki(d, cfg, shared, flags.tlsSans, log);
  // the hub needs the coordinator; until it exists no host is connected and none has streams
  let hub: WatchHub | undefined;
  const coord = await d.Coordinator.create(store, {
    ...coordinatorOptions(d, cfg, pki, log),
    isConnected: (h) => hub?.isConnected(h) ?? false,
    // a host admitted anew: streams opened with its earlier certificate (or credential) end now
    onAdmitted: (h) => hub?.revoke(h),
  });
  await coord.init({
    name: cfg.networkName,
    cidr: cfg.networkCidr,
    hostPrefixLen: cfg.hostPrefixLen,
    mtu: cfg.networkMtu,
  });
  const encryptionProblem = coord.encryptionProblem();
  if (encryptionProblem) throw new UsageError(`--encryption wireguard: ${encryptionProblem}`);
  if (cfg.encryption === 'wireguard') log.info({ tunnelCidr: cfg.tunnelCidr }, 'encryption: WireGuard between hosts');
  const watchHub = (hub = new d.WatchHub(coord));
  coord.onChange((c) => watchHub.changed(c));
  // host-down / host-up events as soon as a host crosses --down-after
  const liveness = setInterval(() => coord.checkLiveness(), 1000);
  const metrics = cfg.metrics ? await startMetrics(cfg.metrics, coord, watchHub, log) : undefined;
  const membership = new Membership(shared?.members, log);
  const server = d.createServer(coord, watchHub, {
    onRpcError: metrics?.rpcError,
    maxMessageBytes: cfg.maxMessageBytes,
    advertise: () => membership.advertised(),
    log,
    pki,
  });
  const port = await d.bindServer(server, cfg.listen, pki ? d.tlsServerCredentials(pki) : undefined);
  // with --listen ...:0 the advertised address gets the port actually bound
  membership.address = cfg.advertise.replace(/:0$/, `:${port}`);
  const [advertise, revision, hosts] = [membership.address, coord.revision(), coord.hostNames().length];
  log.info({ listen: cfg.listen, port, advertise, revision, hosts, store: cfg.store }, 'coordinator serving');
  if (pki) log.info({ caHash: pki.caHash, pki: pki.dir }, 'TLS on: agents pin this CA hash');
  await membership.start();
  // a line on stdout for scripts that start it with port 0
  process.stdout.write(`gremesh-coordinator listening on ${cfg.listen.replace(/:\d+$/, `:${port}`)}\n`);
  await untilStopped();
  // Watch streams never end by themselves: close them, agents reconnect to the next coordinator
  clearInterval(liveness);
  membership.stop();
  metrics?.server.close();
  server.forceShutdown();
  if (shared) await shared.shutdown();
  else store.close();
  process.exit(0);
}

runMain('gremesh-coordinator', main);
