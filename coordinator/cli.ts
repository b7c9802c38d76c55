#!/usr/bin/env node
// coordctl: the operator's CLI. Parse, call the coordinator, print.
import type * as G from '@grpc/grpc-js';
import * as fs from 'node:fs';
import { parse, outputFormat, runMain, table, UsageError } from '../common/cli.js';
import type { AdminServiceClient, Event, HostInfo, Network, TraceReport } from '../proto/gen/gremesh/v1/gremesh.js';
import { parseDuration } from './config.js';
import { agentEnvFile } from './agent-env.js';
import { certWarnings, formatTrace } from './trace-format.js';
import type { DialTls } from '../common/grpc-tls.js';

const HELP = `coordctl: manage a gremesh coordinator

Usage: coordctl [--coordinator ADDR:PORT] [-o table|json] COMMAND

Commands:
  join NAME [--ttl DUR] [--underlay-ip IP]   admit host NAME: print a one-time join token and
                                             the gremesh-agent command line to run on it;
                                             with -o env, exactly the lines of NAME's
                                             /etc/default/gremesh-agent (keep it mode 0600:
                                             it holds the token)
  leave NAME                                 remove NAME everywhere; its slices are quarantined
  hosts                                      name, underlay IP, slices, state, last seen, version
  host NAME                                  one host, with its tunnels and attach errors
  networks                                   networks with CIDR, slice size, GRE key, MTU
  network create NAME --cidr CIDR --host-prefix-len N [--mtu N]
  network delete NAME
  status                                     revision, hosts with tunnel health, networks
  token list                                 join tokens and their state
  token revoke ID                            revoke a join token (ID is the part before the dot)
  trace SRC DST [--proto icmp|tcp|udp] [--port N] [--src-ip IP]
                                             why can (not) SRC reach DST: the packet through
                                             each host's bridge, table by table, and a verdict
                                             per host. SRC: a container (name or id) or a
                                             gremesh IP; DST: the same, or outside:IP;
                                             --src-ip: SRC sends with another source address
  events [--since DUR] [--follow]            hosts joined/left/down/up, tunnels down/up (with
                                             BFD's diagnostic), failed attachments

Flags:
  --coordinator ADDR:PORT   default $GREMESH_COORDINATOR or 127.0.0.1:7420; several comma-
                            separated: a call goes to the next when one cannot be reached
  --cert FILE --key FILE --ca FILE
                            the admin client certificate, its key, and the coordinator CA
                            (default DATA_DIR/pki/admin.crt, admin.key, ca.crt, with DATA_DIR
                            $GREMESH_DATA_DIR or /var/lib/gremesh-coordinator; env GREMESH_CERT,
                            GREMESH_KEY, GREMESH_CA)
  --insecure                talk plaintext to a coordinator started with --insecure
  -o, --output table|json   output format (default table; join also takes env)
  --timeout DUR             per-call deadline (default 10s)
`;

// gRPC and the generated client are loaded only once a command is about to dial:
// --help and usage errors answer in about the time of a bare `node`
let grpc: typeof G;
let coordinatorTls: typeof import('../common/grpc-tls.js').coordinatorTls;

type Call<Req, Res> = (
  req: Req,
  md: G.Metadata,
  opts: Partial<G.CallOptions>,
  cb: (e: G.ServiceError | null, r: Res) => void,
) => G.ClientUnaryCall;

function call<Req, Res>(
  client: AdminServiceClient,
  m: keyof AdminServiceClient,
  req: Req,
  timeoutMs: number,
  addr: string,
): Promise<Res> {
  const fn = (client[m] as unknown as Call<Req, Res>).bind(client);
  return new Promise((resolve, reject) => {
    fn(req, new grpc.Metadata(), { deadline: Date.now() + timeoutMs }, (e, r) => {
      if (!e) return resolve(r);
      // the coordinator answered that its store (etcd) cannot be reached: the next one may reach it
      if (e.code === grpc.status.UNAVAILABLE && e.details.startsWith('etcd unavailable'))
        return reject(Object.assign(new Error(`coordinator at ${addr}: ${e.details}`), { unreachable: true }));
      if (e.code === grpc.status.UNAVAILABLE)
        return reject(
          Object.assign(new Error(`cannot reach coordinator at ${addr}: ${e.details}`), { unreachable: true }),
        );
      if (e.code === grpc.status.DEADLINE_EXCEEDED)
        return reject(new Error(`coordinator at ${addr} did not answer within ${timeoutMs} ms`));
      reject(new Error(e.details || e.message));
    });
  });
}

const ago = (ms: number) => {
  if (!ms) return 'never';
  const s = Math.max(0, Math.round((Date.now() - ms) / 1000));
  return s < 60 ? `${s}s ago` : s < 3600 ? `${Math.round(s / 60)}m ago` : `${Math.round(s / 3600)}h ago`;
};
const slices = (h: HostInfo) =>
  h.slices.map((s) => (h.slices.length > 1 ? `${s.network}:${s.cidr}` : s.cidr)).join(',') || '-';
const tunnels = (h: HostInfo) => {
  if (!h.tunnels.length) return '-';
  const up = h.tunnels.filter((t) => t.bfdState === 'up').length;
  const bad = h.tunnels.filter((t) => t.bfdState !== 'up').map((t) => `${t.peer}:${t.bfdState || 'unknown'}`);
  return `${up}/${h.tunnels.length} up${bad.length ? ` (${bad.join(' ')})` : ''}`;
};

/** TLS with the admin certificate, unless --insecure */
function credentials(v: Record<string, unknown>, addr: string): DialTls {
  if (v.insecure === true || process.env.GREMESH_INSECURE === '1')
    return { credentials: grpc.credentials.createInsecure(), options: {} };
  const dir = `${process.env.GREMESH_DATA_DIR ?? '/var/lib/gremesh-coordinator'}/pki`;
  const file = (flag: string, env: string, def: string) =>
    (v[flag] as string | undefined) ?? process.env[env] ?? `${dir}/${def}`;
  const read = (f: string, what: string) => {
    try {
      return fs.readFileSync(f);
    } catch (e) {
      throw new Error(
        `cannot read the ${what} ${f} (${(e as NodeJS.ErrnoException).code}): pass --cert/--key/--ca, or --insecure for a coordinator without TLS`,
      );
    }
  };
  return coordinatorTls(
    addr,
    read(file('ca', 'GREMESH_CA', 'ca.crt'), 'CA certificate'),
    read(file('key', 'GREMESH_KEY', 'admin.key'), 'admin key'),
    read(file('cert', 'GREMESH_CERT', 'admin.crt'), 'admin certificate'),
  );
}

async function main(argv: string[]): Promise<number> {
  const { values, positionals } = parse(argv, {
    coordinator: { type: 'string' },
    output: { type: 'string', short: 'o' },
    timeout: { type: 'string' },
    ttl: { type: 'string' },
    'underlay-ip': { type: 'string' },
    cert: { type: 'string' },
    key: { type: 'string' },
    ca: { type: 'string' },
    insecure: { type: 'boolean' },
    cidr: { type: 'string' },
    'host-prefix-len': { type: 'string' },
    mtu: { type: 'string' },
    proto: { type: 'string' },
    port: { type: 'string' },
    since: { type: 'string' },
    'src-ip': { type: 'string' },
    follow: { type: 'boolean' },
  });
  if (values.help || positionals.length === 0) {
    process.stdout.write(HELP);
    return values.help ? 0 : 2;
  }
  const fmt = outputFormat(values.output, positionals[0] === 'join' ? ['table', 'json', 'env'] : ['table', 'json']);
  const addr = (values.coordinator as string | undefined) ?? process.env.GREMESH_COORDINATOR ?? '127.0.0.1:7420';
  const timeoutS = parseDuration((values.timeout as string | undefined) ?? '10s');
  if (!timeoutS) throw new UsageError('--timeout must be a duration such as 10s');
  const [cmd, ...args] = positionals;
  const want = (n: number, usage: string) => {
    if (args.length !== n) throw new UsageError(`usage: coordctl ${usage}`);
  };
  // validate the command before dialling
  const known = ['join', 'leave', 'hosts', 'host', 'networks', 'network', 'status', 'token', 'trace', 'events'];
  if (cmd === 'trace') {
    want(2, 'trace SRC DST [--proto icmp|tcp|udp] [--port N]');
    if (values.proto !== undefined && !['icmp', 'tcp', 'udp'].includes(values.proto as string))
      throw new UsageError(`--proto must be icmp, tcp or udp, got "${values.proto}"`);
    if (
      values.port !== undefined &&
      (!/^\d+$/.test(values.port as string) || Number(values.port) < 1 || Number(values.port) > 65535)
    )
      throw new UsageError(`--port must be 1-65535, got "${values.port}"`);
    if (values.port !== undefined && (values.proto ?? 'icmp') === 'icmp')
      throw new UsageError('--port needs --proto tcp or udp');
  }
  let sinceS = 0;
  if (cmd === 'events') {
    want(0, 'events [--since DUR] [--follow]');
    if (values.since !== undefined) {
      const d = parseDuration(values.since as string);
      if (!d) throw new UsageError(`--since must be a duration such as 10m, got "${values.since}"`);
      sinceS = d;
    }
  }
  if (!known.includes(cmd!)) throw new UsageError(`unknown command "${cmd}" (try --help)`);
  const [grpcModule, tlsModule, proto] = await Promise.all([
    import('@grpc/grpc-js'),
    import('../common/grpc-tls.js'),
    import('../proto/gen/gremesh/v1/gremesh.js'),
  ]);
  grpc = grpcModule;
  coordinatorTls = tlsModule.coordinatorTls;
  // several coordinators (sharing one etcd): a call goes to the next one when one cannot be reached
  const addresses = addr.split(',').filter(Boolean);
  const clients = addresses.map((a) => {
    const d = credentials(values, a);
    return new proto.AdminServiceClient(a, d.credentials, d.options);
  });
  const client = clients[0]!;
  const rpc = async <Res>(m: keyof AdminServiceClient, req: unknown): Promise<Res> => {
    for (let i = 0; ; i++) {
      try {
        return await call<unknown, Res>(clients[i]!, m, req, timeoutS * 1000, addresses[i]!);
      } catch (e) {
        if (!(e as { unreachable?: boolean }).unreachable || i === clients.length - 1) throw e;
      }
    }
  };
  const out = (v: unknown, text: () => string) =>
    process.stdout.write(fmt === 'json' ? `${JSON.stringify(v, null, 2)}\n` : `${text()}\n`);
  try {
    switch (cmd) {
      case 'join': {
        want(1, 'join NAME [--ttl DUR] [--underlay-ip IP]');
        let ttl = 0;
        if (values.ttl !== undefined) {
          const d = parseDuration(values.ttl as string);
          if (!d) throw new UsageError(`--ttl must be a duration such as 30m or 24h, got "${values.ttl}"`);
          ttl = d;
        }
        const r = await rpc<{ token: string; expiresMs: number; coordinator: string; caHash: string }>('joinHost', {
          name: args[0],
          ttlSeconds: ttl,
        });
        const parts = ['gremesh-agent', '--coordinator', r.coordinator, '--name', args[0]!, '--join-token', r.token];
        if (r.caHash) parts.push('--ca-hash', r.caHash);
        if (values['underlay-ip']) parts.push('--underlay-ip', values['underlay-ip'] as string);
        const command = parts.join(' ');
        if (fmt === 'env') {
          process.stdout.write(
            agentEnvFile({
              coordinator: r.coordinator,
              name: args[0]!,
              token: r.token,
              caHash: r.caHash,
              underlayIp: values['underlay-ip'] as string | undefined,
            }),
          );
          return 0;
        }
        out(
          {
            host: args[0],
            token: r.token,
            caHash: r.caHash,
            expiresMs: r.expiresMs,
            expires: new Date(r.expiresMs).toISOString(),
            command,
          },
          () =>
            `join token for ${args[0]} (one use, expires ${new Date(r.expiresMs).toISOString()}); run on ${args[0]} as root:\n  ${command}`,
        );
        return 0;
      }
      case 'leave': {
        want(1, 'leave NAME');
        await rpc('removeHost', { name: args[0] });
        out({ removed: args[0] }, () => `host ${args[0]} removed; its tunnels go from every peer`);
        return 0;
      }
      case 'hosts': {
        want(0, 'hosts');
        const r = await rpc<{ hosts: HostInfo[] }>('listHosts', {});
        out(r.hosts, () =>
          table([
            ['NAME', 'UNDERLAY', 'SLICES', 'STATE', 'LAST SEEN', 'VERSION'],
            ...r.hosts.map((h) => [h.name, h.underlayIp, slices(h), h.state, ago(h.lastSeenMs), h.agentVersion || '-']),
          ]),
        );
        return 0;
      }
      case 'host': {
        want(1, 'host NAME');
        const h = await rpc<HostInfo>('getHost', { name: args[0] });
        out(h, () =>
          [
            `${h.name}  ${h.underlayIp}  ${h.state}  last seen ${ago(h.lastSeenMs)}  agent ${h.agentVersion || '-'}`,
            `slices: ${slices(h)}   endpoints: ${h.endpoints}`,
            h.tunnels.length
              ? table([
                  ['PEER', 'REMOTE', 'PORT', 'BFD', 'FORWARDING'],
                  ...h.tunnels.map((t) => [t.peer, t.remoteIp, t.port, t.bfdState || '-', String(t.forwarding)]),
                ])
              : 'tunnels: none reported',
            ...h.attachErrors.map((a) => `attach error: ${a.container}: ${a.reason}`),
          ].join('\n'),
        );
        return 0;
      }
      case 'networks': {
        want(0, 'networks');
        const r = await rpc<{ networks: Network[] }>('listNetworks', {});
        out(r.networks, () =>
          table([
            ['NAME', 'CIDR', 'SLICE', 'GRE KEY', 'MTU'],
            ...r.networks.map((n) => [
              n.name,
              n.cidr,
              `/${n.hostPrefixLen}`,
              String(n.greKey),
              n.mtu ? String(n.mtu) : 'auto',
            ]),
          ]),
        );
        return 0;
      }
      case 'network': {
        const [sub, ...rest] = args;
        if (sub === 'create') {
          if (rest.length !== 1 || !values.cidr || !values['host-prefix-len'])
            throw new UsageError('usage: coordctl network create NAME --cidr CIDR --host-prefix-len N [--mtu N]');
          const hpl = values['host-prefix-len'] as string;
          const mtu = (values.mtu as string | undefined) ?? '0';
          if (!/^\d+$/.test(hpl)) throw new UsageError(`--host-prefix-len must be a whole number, got "${hpl}"`);
          if (!/^\d+$/.test(mtu)) throw new UsageError(`--mtu must be a whole number, got "${mtu}"`);
          const n = await rpc<Network>('createNetwork', {
            name: rest[0],
            cidr: values.cidr,
            hostPrefixLen: Number(hpl),
            mtu: Number(mtu),
          });
          out(n, () => `network ${n.name} ${n.cidr} (/${n.hostPrefixLen} per host, GRE key ${n.greKey}) created`);
          return 0;
        }
        if (sub === 'delete') {
          if (rest.length !== 1) throw new UsageError('usage: coordctl network delete NAME');
          await rpc('deleteNetwork', { name: rest[0] });
          out({ deleted: rest[0] }, () => `network ${rest[0]} deleted`);
          return 0;
        }
        throw new UsageError('usage: coordctl network create|delete ...');
      }
      case 'status': {
        want(0, 'status');
        const s = await rpc<{
          revision: number;
          hosts: HostInfo[];
          networks: Network[];
          watchers: number;
          certificates: { name: string; notBeforeMs: number; notAfterMs: number }[];
        }>('getStatus', {});
        const warnings = certWarnings(s.certificates ?? [], s.hosts, Date.now());
        out({ ...s, warnings }, () =>
          [
            ...warnings.map((w) => `WARNING: ${w}`),
            `revision ${s.revision}, ${s.hosts.length} hosts (${s.hosts.filter((h) => h.state === 'up').length} up), ${s.watchers} agents watching`,
            table([
              ['HOST', 'UNDERLAY', 'STATE', 'TUNNELS (BFD)', 'ENDPOINTS', 'ATTACH ERRORS'],
              ...s.hosts.map((h) => [
                h.name,
                h.underlayIp,
                h.state,
                tunnels(h),
                String(h.endpoints),
                h.attachErrors.map((a) => `${a.container}: ${a.reason}`).join('; ') || '-',
              ]),
            ]),
            table([
              ['NETWORK', 'CIDR', 'SLICE', 'GRE KEY'],
              ...s.networks.map((n) => [n.name, n.cidr, `/${n.hostPrefixLen}`, String(n.greKey)]),
            ]),
          ].join('\n'),
        );
        return 0;
      }
      case 'trace': {
        const r = await rpc<TraceReport>('trace', {
          src: args[0],
          dst: args[1],
          proto: (values.proto as string | undefined) ?? 'icmp',
          port: Number((values.port as string | undefined) ?? 0),
          srcIp: (values['src-ip'] as string | undefined) ?? '',
        });
        out(r, () => formatTrace(r));
        return 0;
      }
      case 'events': {
        const req = { sinceMs: sinceS ? Date.now() - sinceS * 1000 : 0, follow: values.follow === true };
        const stream = client.events(
          req,
          new grpc.Metadata(),
          values.follow ? {} : { deadline: Date.now() + timeoutS * 1000 },
        );
        const line = (e: Event) =>
          fmt === 'json'
            ? JSON.stringify(e)
            : `${new Date(Number(e.timeMs)).toISOString()}  ${e.kind.padEnd(13)} ${e.host}${e.peer ? ` -> ${e.peer}` : ''}  ${e.detail}`;
        await new Promise<void>((resolve, reject) => {
          stream.on('data', (e: Event) => process.stdout.write(`${line(e)}\n`));
          stream.on('end', resolve);
          stream.on('error', (e: G.ServiceError) =>
            e.code === grpc.status.CANCELLED
              ? resolve()
              : reject(
                  new Error(
                    e.code === grpc.status.UNAVAILABLE
                      ? `cannot reach coordinator at ${addr}: ${e.details}`
                      : e.details || e.message,
                  ),
                ),
          );
          const stop = () => {
            stream.cancel();
            resolve();
          };
          process.once('SIGINT', stop);
          process.once('SIGTERM', stop);
        });
        return 0;
      }
      case 'token': {
        const [sub, ...rest] = args;
        if (sub === 'list' && rest.length === 0) {
          const r = await rpc<{ tokens: { id: string; host: string; expiresMs: number; state: string }[] }>(
            'listTokens',
            {},
          );
          out(r.tokens, () =>
            table([
              ['ID', 'HOST', 'STATE', 'EXPIRES'],
              ...r.tokens.map((t) => [t.id, t.host, t.state, new Date(t.expiresMs).toISOString()]),
            ]),
          );
          return 0;
        }
        if (sub === 'revoke' && rest.length === 1) {
          await rpc('revokeToken', { id: rest[0] });
          out({ revoked: rest[0] }, () => `token ${rest[0]} revoked`);
          return 0;
        }
        throw new UsageError('usage: coordctl token list | token revoke ID');
      }
    }
    return 2;
  } finally {
    for (const c of clients) c.close();
  }
}

runMain('coordctl', main);
