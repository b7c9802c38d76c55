// The gRPC layer: who is calling (TLS client certificate), may they, then the
// Coordinator call; CoordError codes become gRPC statuses.
import * as grpc from '@grpc/grpc-js';
import type { Logger } from '../common/log.js';
import {
  AdminServiceService,
  AgentServiceService,
  DesiredState,
  type Event,
  type EventsRequest,
  type HostInfo,
  type RenewRequest,
  type ReportStatusRequest,
  type TraceRequestAdmin,
  type TraceResultRequest,
  type WatchRequest,
} from '../proto/gen/gremesh/v1/gremesh.js';
import { TraceBroker, runTrace } from './trace.js';
import { RateLimiter, REPORT_RATE } from './rate-limit.js';
import { CoordError, GRPC_STATUS, denied, invalid, unauthenticated } from './errors.js';
import { trunc } from './validate.js';
import type { Coordinator, HostView, RegisterRequestView } from './coordinator.js';
import type { WatchHub } from './watch-hub.js';
import { ADMIN_CN, hostCn, type Pki } from './pki.js';

export interface ServerOptions {
  maxMessageBytes: number;
  /** the address(es) agents should dial, printed by `coordctl join` */
  advertise: () => string | Promise<string>;
  log: Logger;
  /** TLS material; undefined: --insecure (no TLS, credentials instead of certificates) */
  pki?: Pki;
  /** metrics: a unary call answered with an error */
  onRpcError?: (method: string, code: string) => void;
}

/** Each unary handler's errors counted by method and status code (streams are left as they are). */
function counted(
  handlers: grpc.UntypedServiceImplementation,
  onError: ((method: string, code: string) => void) | undefined,
): grpc.UntypedServiceImplementation {
  if (!onError) return handlers;
  const out: Record<string, unknown> = {};
  for (const [name, h] of Object.entries(handlers)) {
    if (typeof h !== 'function' || h.length !== 2) {
      out[name] = h;
      continue;
    }
    const unary = h as grpc.handleUnaryCall<unknown, unknown>;
    out[name] = ((call, cb) =>
      unary(call, (e, r) => {
        if (e) onError(name, grpc.status[e.code ?? grpc.status.UNKNOWN] ?? String(e.code));
        cb(e, r);
      })) as grpc.handleUnaryCall<unknown, unknown>;
  }
  return out as grpc.UntypedServiceImplementation;
}

export function toStatus(e: unknown, log: Logger): grpc.ServiceError {
  if (e instanceof CoordError) {
    return Object.assign(new Error(e.message), {
      code: GRPC_STATUS[e.code],
      details: e.message,
      metadata: new grpc.Metadata(),
    });
  }
  log.error({ err: e }, 'internal error');
  const msg = `internal error: ${(e as Error)?.message ?? String(e)}`;
  return Object.assign(new Error(msg), { code: grpc.status.INTERNAL, details: msg, metadata: new grpc.Metadata() });
}

type AnyCall = grpc.ServerUnaryCall<unknown, unknown> | grpc.ServerWritableStream<unknown, unknown>;
interface Identity {
  cn: string;
  fingerprint: string;
}

/** The verified client certificate's identity, if the caller presented one the CA signed. */
export function identityOf(call: AnyCall): Identity | undefined {
  const c = call.getAuthContext?.()?.sslPeerCertificate;
  if (!c?.subject?.CN) return undefined;
  return { cn: String(c.subject.CN), fingerprint: c.fingerprint256 };
}

export function hostInfo(h: HostView): HostInfo {
  return {
    name: h.name,
    underlayIp: h.underlayIp,
    state: h.state,
    slices: h.slices,
    lastSeenMs: h.lastSeenMs,
    agentVersion: h.agentVersion,
    joinedMs: h.joinedMs,
    tunnels: h.tunnels,
    attachErrors: h.attachErrors,
    endpoints: h.endpoints,
    certNotBeforeMs: h.certNotBeforeMs,
    certNotAfterMs: h.certNotAfterMs,
  };
}

/** a request whose bytes did not decode: grpc-js would answer INTERNAL; the handler answers INVALID_ARGUMENT */
const UNDECODABLE = Symbol('undecodable');
export function undecodable(req: unknown): string | undefined {
  return typeof req === 'object' && req !== null && UNDECODABLE in req
    ? String((req as { [UNDECODABLE]: string })[UNDECODABLE])
    : undefined;
}

/** A service definition whose request decoders never throw: a bad request is marked for its handler. */
function decodingOrMarked<T extends object>(def: T): grpc.ServiceDefinition {
  const out: Record<string, unknown> = {};
  for (const [name, m] of Object.entries(def)) {
    const d = m as grpc.MethodDefinition<unknown, unknown>;
    out[name] = {
      ...d,
      requestDeserialize: (b: Buffer) => {
        try {
          return d.requestDeserialize(b);
        } catch (e) {
          return { [UNDECODABLE]: (e as Error).message.split('\n')[0] };
        }
      },
    };
  }
  return out as grpc.ServiceDefinition;
}

/** The agent service definition, with Watch responses passed through as the hub's pre-encoded bytes. */
const agentService: grpc.ServiceDefinition = decodingOrMarked({
  ...AgentServiceService,
  watch: { ...AgentServiceService.watch, responseSerialize: (b: Buffer) => b },
});
const adminService: grpc.ServiceDefinition = decodingOrMarked(AdminServiceService);
const notDecoded = (why: string) => invalid(`the request could not be decoded: ${trunc(why, 128)}`);

/**
 * Server TLS: the client certificate is requested and verified against our CA, but a
 * connection without one is allowed (an agent registering with its join token has no
 * certificate yet); each call then decides. grpc-js has no option for "request but do
 * not require", so the server options are set on the credentials it builds.
 */
export function tlsServerCredentials(pki: Pki): grpc.ServerCredentials {
  const creds = grpc.ServerCredentials.createSsl(
    Buffer.from(pki.caPem),
    [{ private_key: Buffer.from(pki.serverKey), cert_chain: Buffer.from(pki.serverChain) }],
    true,
  );
  const opts = (creds as unknown as { serverConstructorOptions: Record<string, unknown> | null })
    .serverConstructorOptions;
  if (!opts)
    throw new Error(
      'grpc-js ServerCredentials changed shape: cannot allow token registration without a client certificate',
    );
  opts.rejectUnauthorized = false;
  return creds;
}

export function createServer(coord: Coordinator, hub: WatchHub, o: ServerOptions): grpc.Server {
  const server = new grpc.Server({
    'grpc.max_receive_message_length': o.maxMessageBytes,
    // an agent needs 1-3 streams, coordctl 1: a client cannot open thousands on one connection
    'grpc.max_concurrent_streams': 100,
    // HTTP/2 memory per connection (grpc-js's own default, set here so it is stated)
    'grpc-node.max_session_memory': 10,
    'grpc.keepalive_time_ms': 10_000,
    'grpc.keepalive_timeout_ms': 5_000,
    'grpc.keepalive_permit_without_calls': 1,
    'grpc.http2.min_ping_interval_without_data_ms': 5_000,
  });
  const log = o.log;
  const tls = o.pki !== undefined;
  const reports = new RateLimiter(REPORT_RATE);
  const broker = new TraceBroker((host, req) =>
    hub.sendTo(host, Buffer.from(DesiredState.encode(DesiredState.fromPartial({ trace: req })).finish())),
  );

  const unary =
    <Req, Res>(
      check: (call: grpc.ServerUnaryCall<Req, Res>) => Identity | undefined,
      f: (req: Req, id: Identity | undefined) => Res | Promise<Res>,
    ): grpc.handleUnaryCall<Req, Res> =>
    (call, cb) => {
      Promise.resolve()
        .then(() => {
          const bad = undecodable(call.request);
          if (bad !== undefined) throw notDecoded(bad);
          return f(call.request, check(call));
        })
        .then(
          (r) => cb(null, r),
          (e: unknown) => cb(toStatus(e, log)),
        );
    };
  /** admin calls: with TLS only the admin certificate */
  const admin = (call: AnyCall): Identity | undefined => {
    if (!tls) return undefined;
    const id = identityOf(call);
    if (!id) throw unauthenticated('admin calls need the admin client certificate (coordctl --cert/--key/--ca)');
    if (id.cn !== ADMIN_CN) throw denied(`certificate "${id.cn}" may not make admin calls`);
    return id;
  };
  /** agent calls after registration: with TLS the host's current certificate, else its credential */
  const asHost = (call: AnyCall, name: string, credential: string): void => {
    if (!tls) {
      coord.authenticate(name, credential);
      return;
    }
    const id = identityOf(call);
    if (!id) throw unauthenticated('agent calls need the host client certificate');
    if (id.cn !== hostCn(name)) throw denied(`certificate "${id.cn}" may not act as host ${name}`);
    coord.authenticateCert(name, id.fingerprint);
  };

  server.addService(
    agentService,
    counted(
      {
        // Register decides on its own: a join token (no certificate yet), or the host's certificate
        register: unary(
          (call) => (tls ? identityOf(call as AnyCall) : undefined),
          async (req: RegisterRequestView, id) => {
            if (id && id.cn !== hostCn(req.name))
              throw denied(`certificate "${id.cn}" may not register as host ${req.name}`);
            const r = await coord.register(req, id?.fingerprint);
            return { credential: r.credential, certificate: r.certificate, state: undefined };
          },
        ),
        watch: (call: grpc.ServerWritableStream<WatchRequest, Buffer>) => {
          const { name, credential } = call.request;
          try {
            const bad = undecodable(call.request);
            if (bad !== undefined) throw notDecoded(bad);
            asHost(call as AnyCall, name, credential);
          } catch (e) {
            call.emit('error', toStatus(e, log));
            return;
          }
          coord.touch(name);
          let removeWatcher = () => {};
          const done = () => {
            removeWatcher();
            coord.touch(name);
          };
          call.on('cancelled', done);
          call.on('close', done);
          call.on('error', done);
          removeWatcher = hub.add(
            name,
            {
              write: (buf, cb) => {
                if (!call.cancelled && !call.destroyed) call.write(buf, cb);
              },
              gone: () =>
                call.emit(
                  'error',
                  toStatus(new CoordError('NOT_FOUND', `host ${name} was removed (coordctl leave)`), log),
                ),
              revoked: () =>
                call.emit(
                  'error',
                  toStatus(
                    new CoordError(
                      'UNAUTHENTICATED',
                      `host ${name} was admitted anew: this stream's identity is revoked`,
                    ),
                    log,
                  ),
                ),
              superseded: () =>
                call.emit(
                  'error',
                  toStatus(
                    new CoordError(
                      'ABORTED',
                      `a newer Watch stream of host ${name} replaced this one (two agents with one identity?)`,
                    ),
                    log,
                  ),
                ),
            },
            Number(call.request.knownRevision ?? 0),
          );
        },
        reportStatus: unary(
          (call) => {
            asHost(call as AnyCall, call.request.name, call.request.credential);
            return undefined;
          },
          async (req: ReportStatusRequest) => {
            if (!reports.take(req.name))
              throw new CoordError(
                'RESOURCE_EXHAUSTED',
                `ReportStatus from ${req.name} faster than ${REPORT_RATE.perSecond}/s (burst ${REPORT_RATE.burst}): slow down`,
              );
            await coord.reportStatus(req.name, req);
            return {};
          },
        ),
        renew: unary(
          (call) => {
            if (!tls) return undefined;
            const id = identityOf(call as AnyCall);
            if (!id) throw unauthenticated('Renew needs the host client certificate');
            if (id.cn !== hostCn(call.request.name))
              throw denied(`certificate "${id.cn}" may not renew for host ${call.request.name}`);
            return id;
          },
          async (req: RenewRequest, id) => {
            if (!id) throw new CoordError('FAILED_PRECONDITION', 'this coordinator runs without TLS: nothing to renew');
            return { certificate: await coord.renew(req.name, id.fingerprint, req.csr) };
          },
        ),
        traceResult: unary(
          (call) => {
            asHost(call as AnyCall, call.request.name, call.request.credential);
            return undefined;
          },
          (req: TraceResultRequest) => {
            broker.answer(req.name, req.id, req.hop, req.error);
            return {};
          },
        ),
      },
      o.onRpcError,
    ),
  );
  server.addService(
    adminService,
    counted(
      {
        joinHost: unary(admin, async (req: { name: string; ttlSeconds: number }) => {
          const r = await coord.joinHost(req.name, req.ttlSeconds);
          return {
            token: r.token,
            expiresMs: r.expiresMs,
            coordinator: await o.advertise(),
            caHash: o.pki?.caHash ?? '',
          };
        }),
        removeHost: unary(admin, async (req: { name: string }) => {
          await coord.removeHost(req.name);
          return {};
        }),
        listHosts: unary(admin, () => ({ hosts: coord.hosts().map(hostInfo) })),
        getHost: unary(admin, (req: { name: string }) => hostInfo(coord.host(req.name))),
        createNetwork: unary(admin, (req: { name: string; cidr: string; hostPrefixLen: number; mtu: number }) =>
          coord.createNetwork(req.name, req.cidr, req.hostPrefixLen, req.mtu),
        ),
        listNetworks: unary(admin, () => ({ networks: coord.networks() })),
        deleteNetwork: unary(admin, async (req: { name: string }) => {
          await coord.deleteNetwork(req.name);
          return {};
        }),
        getStatus: unary(admin, () => ({
          revision: coord.revision(),
          hosts: coord.hosts().map(hostInfo),
          networks: coord.networks(),
          watchers: hub.count(),
          certificates: o.pki?.certificates ?? [],
        })),
        listTokens: unary(admin, async () => ({ tokens: await coord.tokens() })),
        revokeToken: unary(admin, async (req: { id: string }) => {
          await coord.revokeToken(req.id);
          return {};
        }),
        trace: unary(admin, (req: TraceRequestAdmin) =>
          runTrace({ broker, endpoints: () => coord.endpointsWithNames(), networks: () => coord.networks() }, req),
        ),
        events: (call: grpc.ServerWritableStream<EventsRequest, Event>) => {
          try {
            const bad = undecodable(call.request);
            if (bad !== undefined) throw notDecoded(bad);
            admin(call as AnyCall);
          } catch (e) {
            call.emit('error', toStatus(e, log));
            return;
          }
          for (const e of coord.events.since(Number(call.request.sinceMs))) call.write(e);
          if (!call.request.follow) {
            call.end();
            return;
          }
          const stop = coord.events.follow((e) => {
            if (!call.cancelled && !call.destroyed) call.write(e);
          });
          call.on('cancelled', stop);
          call.on('close', stop);
          call.on('error', stop);
        },
      },
      o.onRpcError,
    ),
  );
  return server;
}

export function bind(
  server: grpc.Server,
  addr: string,
  creds = grpc.ServerCredentials.createInsecure(),
): Promise<number> {
  return new Promise((resolve, reject) => {
    server.bindAsync(addr, creds, (err, port) => (err ? reject(err) : resolve(port)));
  });
}
