#!/usr/bin/env node
// gremesh-coordinator: the control plane. Serves AgentService and AdminService over gRPC.
import { parse, runMain } from '../common/cli.js';
import { createLogger } from '../common/log.js';
import { KEYS, readConfigFile, resolveConfig } from './config.js';
import { Coordinator } from './coordinator.js';
import { bind, createServer } from './grpc-server.js';
import { MemoryStore } from './memory-store.js';
import { SqliteStore } from './sqlite-store.js';
import { WatchHub } from './watch-hub.js';

const HELP = `gremesh-coordinator: the gremesh control plane (gRPC)

Usage: gremesh-coordinator [flags]

  --listen ADDR:PORT        where to serve (default 0.0.0.0:7420)        env GREMESH_LISTEN
  --advertise ADDR:PORT     address agents dial, printed by coordctl join (default --listen)
  --data-dir DIR            state (SQLite) lives here (default /var/lib/gremesh-coordinator)
  --store sqlite|memory     memory: nothing persists (tests only)
  --network-name NAME       the network created on first start (default "default")
  --network-cidr CIDR       its CIDR (default 10.212.0.0/16)
  --host-prefix-len N       each host's slice (default 24)
  --network-mtu N           container MTU; 0: each agent computes underlay MTU - 42
  --down-after DUR          a host silent this long shows as down (default 30s)
  --token-ttl DUR           default join token lifetime (default 24h)
  --max-message-bytes N     largest request accepted (default 1048576)
  --log-level LEVEL         debug|info|warn|error (default info)
  --config FILE             JSON file with the same keys in camelCase (dataDir, networkCidr, ...)

Precedence: defaults < --config file < environment (GREMESH_<FLAG>) < flags.
`;

async function main(argv: string[]): Promise<number> {
  const opts = Object.fromEntries(Object.keys(KEYS).map((k) => [k, { type: 'string' as const }]));
  const { values } = parse(argv, { ...opts, config: { type: 'string' } }, false);
  if (values.help) { process.stdout.write(HELP); return 0; }
  const cfg = resolveConfig(readConfigFile(values.config as string | undefined), process.env, values);
  const log = createLogger('coordinator', cfg.logLevel);
  const store = cfg.store === 'memory' ? new MemoryStore() : new SqliteStore(`${cfg.dataDir}/coordinator.db`);
  const coord = new Coordinator(store, { downAfterMs: cfg.downAfterS * 1000, defaultTokenTtlS: cfg.tokenTtlS, log: log.child({ part: 'state' }) });
  coord.init({ name: cfg.networkName, cidr: cfg.networkCidr, hostPrefixLen: cfg.hostPrefixLen, mtu: cfg.networkMtu });
  const hub = new WatchHub(coord);
  coord.isConnected = (h) => hub.isConnected(h);
  coord.onChange((c) => hub.changed(c));
  const advertise = { value: cfg.advertise };
  const server = createServer(coord, hub, { maxMessageBytes: cfg.maxMessageBytes, advertise: () => advertise.value, log });
  const port = await bind(server, cfg.listen);
  // with --listen ...:0 the advertised address gets the port actually bound
  advertise.value = cfg.advertise.replace(/:0$/, `:${port}`);
  log.info({ listen: cfg.listen, port, advertise: advertise.value, revision: coord.revision(), hosts: coord.hostNames().length, store: cfg.store }, 'coordinator serving');
  // a line on stdout for scripts that start it with port 0
  process.stdout.write(`gremesh-coordinator listening on ${cfg.listen.replace(/:\d+$/, `:${port}`)}\n`);
  await new Promise<void>((resolve) => {
    // Watch streams never end by themselves: close them, agents reconnect to the next coordinator
    const stop = () => { server.forceShutdown(); resolve(); };
    process.once('SIGTERM', stop);
    process.once('SIGINT', stop);
  });
  store.close();
  process.exit(0);
}

runMain('gremesh-coordinator', main);
