// The gRPC layer: maps requests to Coordinator calls and CoordError codes to statuses.
import * as grpc from '@grpc/grpc-js';
import type { Logger } from '../common/log.js';
import {
  AdminServiceService, AgentServiceService,
  type HostInfo, type ReportStatusRequest, type WatchRequest,
} from '../proto/gen/gremesh/v1/gremesh.js';
import { CoordError, GRPC_STATUS } from './errors.js';
import type { Coordinator, HostView } from './coordinator.js';
import type { WatchHub } from './watch-hub.js';

export interface ServerOptions {
  maxMessageBytes: number;
  /** the address agents should dial, printed by `coordctl join` */
  advertise: () => string;
  log: Logger;
}

export function toStatus(e: unknown, log: Logger): grpc.ServiceError {
  if (e instanceof CoordError) {
    return Object.assign(new Error(e.message), { code: GRPC_STATUS[e.code], details: e.message, metadata: new grpc.Metadata() });
  }
  log.error({ err: e }, 'internal error');
  const msg = `internal error: ${(e as Error)?.message ?? String(e)}`;
  return Object.assign(new Error(msg), { code: grpc.status.INTERNAL, details: msg, metadata: new grpc.Metadata() });
}

function unary<Req, Res>(log: Logger, f: (req: Req) => Res): grpc.handleUnaryCall<Req, Res> {
  return (call, cb) => {
    try { cb(null, f(call.request)); } catch (e) { cb(toStatus(e, log)); }
  };
}

export function hostInfo(h: HostView): HostInfo {
  return {
    name: h.name, underlayIp: h.underlayIp, state: h.state, slices: h.slices, lastSeenMs: h.lastSeenMs,
    agentVersion: h.agentVersion, joinedMs: h.joinedMs, tunnels: h.tunnels, attachErrors: h.attachErrors, endpoints: h.endpoints,
  };
}

/** The agent service definition, with Watch responses passed through as the hub's pre-encoded bytes. */
const agentService: grpc.ServiceDefinition = {
  ...AgentServiceService,
  watch: { ...AgentServiceService.watch, responseSerialize: (b: Buffer) => b },
} as unknown as grpc.ServiceDefinition;

export function createServer(coord: Coordinator, hub: WatchHub, o: ServerOptions): grpc.Server {
  const server = new grpc.Server({
    'grpc.max_receive_message_length': o.maxMessageBytes,
    'grpc.keepalive_time_ms': 10_000,
    'grpc.keepalive_timeout_ms': 5_000,
    'grpc.keepalive_permit_without_calls': 1,
    'grpc.http2.min_ping_interval_without_data_ms': 5_000,
  });
  const log = o.log;

  server.addService(agentService, {
    register: unary(log, (req: { name: string; token: string; credential: string; underlayIp: string; agentVersion: string }) => {
      const { credential } = coord.register(req);
      return { credential, state: undefined };
    }),
    watch: (call: grpc.ServerWritableStream<WatchRequest, Buffer>) => {
      const { name, credential } = call.request;
      try {
        coord.authenticate(name, credential);
      } catch (e) {
        call.emit('error', toStatus(e, log));
        return;
      }
      coord.touch(name);
      let removeWatcher = () => {};
      const done = () => { removeWatcher(); coord.touch(name); };
      call.on('cancelled', done);
      call.on('close', done);
      call.on('error', done);
      removeWatcher = hub.add(name, {
        write: (buf, cb) => { if (!call.cancelled && !call.destroyed) call.write(buf, cb); },
        gone: () => call.emit('error', toStatus(new CoordError('NOT_FOUND', `host ${name} was removed (coordctl leave)`), log)),
      });
    },
    reportStatus: unary(log, (req: ReportStatusRequest) => {
      coord.reportStatus(req.name, req.credential, req);
      return {};
    }),
  });

  server.addService(AdminServiceService as unknown as grpc.ServiceDefinition, {
    joinHost: unary(log, (req: { name: string; ttlSeconds: number }) => {
      const r = coord.joinHost(req.name, req.ttlSeconds);
      return { token: r.token, expiresMs: r.expiresMs, coordinator: o.advertise() };
    }),
    removeHost: unary(log, (req: { name: string }) => { coord.removeHost(req.name); return {}; }),
    listHosts: unary(log, () => ({ hosts: coord.hosts().map(hostInfo) })),
    getHost: unary(log, (req: { name: string }) => hostInfo(coord.host(req.name))),
    createNetwork: unary(log, (req: { name: string; cidr: string; hostPrefixLen: number; mtu: number }) =>
      coord.createNetwork(req.name, req.cidr, req.hostPrefixLen, req.mtu)),
    listNetworks: unary(log, () => ({ networks: coord.networks() })),
    deleteNetwork: unary(log, (req: { name: string }) => { coord.deleteNetwork(req.name); return {}; }),
    getStatus: unary(log, () => ({ revision: coord.revision(), hosts: coord.hosts().map(hostInfo), networks: coord.networks(), watchers: hub.count() })),
    listTokens: unary(log, () => ({ tokens: coord.tokens() })),
    revokeToken: unary(log, (req: { id: string }) => { coord.revokeToken(req.id); return {}; }),
  });
  return server;
}

export function bind(server: grpc.Server, addr: string, creds = grpc.ServerCredentials.createInsecure()): Promise<number> {
  return new Promise((resolve, reject) => {
    server.bindAsync(addr, creds, (err, port) => (err ? reject(err) : resolve(port)));
  });
}
