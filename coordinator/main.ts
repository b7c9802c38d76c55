#!/usr/bin/env node
// gremesh-coordinator: the control plane. Serves AgentService and AdminService over gRPC.
import { parse, runMain } from '../common/cli.js';
import { KEYS, readConfigFile, resolveConfig } from './config.js';
import { parseHostPort } from './config.js';

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
import { parseIp } from '../common/ipv4.js';
import type { Store } from './store.js';
import * as fs from 'node:fs';
import { X509Certificate, randomUUID } from 'node:crypto';

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

async function main(argv: string[]): Promise<number> {
  const opts = Object.fromEntries(Object.keys(KEYS).map((k) => [k, { type: 'string' as const }]));
  const { values } = parse(
    argv,
    { ...opts, config: { type: 'string' }, 'tls-san': { type: 'string' }, insecure: { type: 'boolean' } },
    false,
  );
  if (values.help) {
    process.stdout.write(HELP);
    return 0;
  }
  const cfg = resolveConfig(readConfigFile(values.config as string | undefined), process.env, values);
  const {
    createLogger,
    Coordinator,
    createServer,
    bindServer,
    tlsServerCredentials,
    MemoryStore,
    SqliteStore,
    EtcdStore,
    WatchHub,
    ensurePki,
    fingerprint,
    keyFingerprint,
    csrKeyFingerprint,
    signHostCsr,
    sharedPkiMaterial,
  } = await loadDaemon();
  const log = createLogger('coordinator', cfg.logLevel);
  const insecure = values.insecure === true || process.env.GREMESH_INSECURE === '1';
  const read = (f: string) => (f ? fs.readFileSync(f) : undefined);
  const store: Store =
    cfg.store === 'memory'
      ? new MemoryStore()
      : cfg.store === 'etcd'
        ? new (await EtcdStore())({
            endpoints: cfg.etcdEndpoints.split(',').filter(Boolean),
            prefix: cfg.etcdPrefix,
            tls:
              cfg.etcdCa || cfg.etcdCert
                ? { ca: read(cfg.etcdCa), cert: read(cfg.etcdCert), key: read(cfg.etcdKey) }
                : undefined,
          })
        : new SqliteStore(`${cfg.dataDir}/coordinator.db`);
  let pki;
  if (insecure) {
    process.stderr.write(
      'gremesh-coordinator: WARNING: --insecure: gRPC is plaintext and unauthenticated by certificates; anyone who can reach this port and holds a token or credential is trusted\n',
    );
    log.warn({}, 'running without TLS (--insecure)');
  } else {
    const sanOf = (h: string) => (parseIp(h) !== undefined ? `IP:${h}` : `DNS:${h}`);
    const hosts = [parseHostPort(cfg.advertise)?.host, parseHostPort(cfg.listen)?.host].filter(
      (h): h is string => !!h && h !== '0.0.0.0' && h !== '::',
    );
    const extra = ((values['tls-san'] as string | undefined) ?? process.env.GREMESH_TLS_SAN ?? '')
      .split(',')
      .map((x) => x.trim())
      .filter(Boolean);
    let shared;
    if (store.secrets) {
      const keyFile = cfg.secretsKeyFile || `${cfg.dataDir}/secrets.key`;
      const r = await sharedPkiMaterial(store.secrets, keyFile, `${cfg.dataDir}/pki`);
      shared = r.material;
      log.info({ keyFile }, r.made ? 'CA and admin credentials stored in etcd (keys sealed)' : 'CA read from etcd');
    }
    pki = await ensurePki(`${cfg.dataDir}/pki`, [...hosts, ...extra].map(sanOf), shared);
  }
  const tlsPki = pki;
  const coord = await Coordinator.create(store, {
    downAfterMs: cfg.downAfterS * 1000,
    ownAddresses: [cfg.listen, cfg.advertise]
      .map((a) => a.replace(/:\d+$/, ''))
      .filter((ip) => ip !== '0.0.0.0' && /^\d+\.\d+\.\d+\.\d+$/.test(ip)),
    defaultTokenTtlS: cfg.tokenTtlS,
    log: log.child({ part: 'state' }),
    ...(tlsPki
      ? {
          signCsr: (csr: string, host: string) => signHostCsr(tlsPki, csr, host, cfg.hostCertTtlS * 1000),
          fingerprintOf: (pem: string) => ({ cert: fingerprint(pem), key: keyFingerprint(pem) }),
          csrKeyFingerprint,
          validityOf: (pem: string) => {
            const c = new X509Certificate(pem);
            return { notBeforeMs: Date.parse(c.validFrom), notAfterMs: Date.parse(c.validTo) };
          },
        }
      : {}),
  });
  await coord.init({
    name: cfg.networkName,
    cidr: cfg.networkCidr,
    hostPrefixLen: cfg.hostPrefixLen,
    mtu: cfg.networkMtu,
  });
  const hub = new WatchHub(coord);
  coord.isConnected = (h) => hub.isConnected(h);
  coord.onChange((c) => hub.changed(c));
  // a host admitted anew: streams opened with its earlier certificate (or credential) end now
  coord.onAdmitted = (h) => hub.revoke(h);
  // host-down / host-up events as soon as a host crosses --down-after
  const liveness = setInterval(() => coord.checkLiveness(), 1000);
  let metrics: { rpcError(method: string, code: string): void } | undefined;
  let metricsServer: { close(): void } | undefined;
  if (cfg.metrics) {
    const [{ serveMetrics }, { coordinatorMetrics }] = await Promise.all([
      import('../common/metrics.js'),
      import('./metrics.js'),
    ]);
    metricsServer = await serveMetrics(cfg.metrics);
    metrics = coordinatorMetrics(metricsServer as never, coord, hub);
    log.info({ metrics: `http://${cfg.metrics}/metrics` }, 'serving Prometheus metrics');
  }
  const advertise = { value: cfg.advertise };
  // on etcd, `coordctl join` prints every coordinator serving (this one first): agents fail over among them
  let siblings: string[] = [];
  const server = createServer(coord, hub, {
    onRpcError: metrics ? (m, c) => metrics.rpcError(m, c) : undefined,
    maxMessageBytes: cfg.maxMessageBytes,
    advertise: async () => {
      if (membership) siblings = await store.members!.list().catch(() => siblings);
      return [advertise.value, ...siblings.filter((a) => a !== advertise.value).sort()].join(',');
    },
    log,
    pki,
  });
  const port = await bindServer(server, cfg.listen, pki ? tlsServerCredentials(pki) : undefined);
  // with --listen ...:0 the advertised address gets the port actually bound
  advertise.value = cfg.advertise.replace(/:0$/, `:${port}`);
  log.info(
    {
      listen: cfg.listen,
      port,
      advertise: advertise.value,
      revision: coord.revision(),
      hosts: coord.hostNames().length,
      store: cfg.store,
    },
    'coordinator serving',
  );
  if (pki) log.info({ caHash: pki.caHash, pki: pki.dir }, 'TLS on: agents pin this CA hash');
  let membership: NodeJS.Timeout | undefined;
  const members = store.members;
  if (members && !/^(0\.0\.0\.0|\[?::\]?):/.test(advertise.value)) {
    const id = randomUUID();
    const refresh = async () => {
      try {
        await members.announce(id, advertise.value);
        siblings = await members.list();
      } catch (e) {
        log.debug({ err: (e as Error).message }, 'coordinator list not refreshed');
      }
    };
    await refresh();
    membership = setInterval(() => void refresh(), 5000);
  }
  // a line on stdout for scripts that start it with port 0
  process.stdout.write(`gremesh-coordinator listening on ${cfg.listen.replace(/:\d+$/, `:${port}`)}\n`);
  await new Promise<void>((resolve) => {
    // Watch streams never end by themselves: close them, agents reconnect to the next coordinator
    const stop = () => {
      clearInterval(liveness);
      clearInterval(membership);
      metricsServer?.close();
      server.forceShutdown();
      resolve();
    };
    process.once('SIGTERM', stop);
    process.once('SIGINT', stop);
  });
  if (store.shutdown) await store.shutdown();
  else store.close();
  process.exit(0);
}

runMain('gremesh-coordinator', main);
