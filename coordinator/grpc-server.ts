// The gRPC layer: who is calling (TLS client certificate), may they, then the
// Coordinator call; CoordError codes become gRPC statuses. The services' handlers are
// built in grpc/ (agent-service, admin-service; auth, errors, unary); this module wires them.
import * as grpc from '@grpc/grpc-js';
import type { Logger } from '../common/log.js';
import { DesiredState } from '../proto/gen/gremesh/v1/gremesh.js';
import { TraceBroker } from './trace.js';
import type { Coordinator } from './coordinator.js';
import type { WatchHub } from './watch-hub.js';
import type { Pki } from './pki.js';
import { peerAuth } from './grpc/auth.js';
import { counted, unaryWith } from './grpc/unary.js';
import { agentHandlers, agentService } from './grpc/agent-service.js';
import { adminHandlers, adminService } from './grpc/admin-service.js';

export { toStatus, undecodable } from './grpc/errors.js';
export { identityOf, tlsServerCredentials } from './grpc/auth.js';
export { hostInfo } from './grpc/admin-service.js';

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
  const broker = new TraceBroker((host, req) =>
    hub.sendTo(host, Buffer.from(DesiredState.encode(DesiredState.fromPartial({ trace: req })).finish())),
  );
  const deps = {
    coord,
    hub,
    auth: peerAuth(coord, o.pki !== undefined),
    unary: unaryWith(o.log),
    broker,
    log: o.log,
    advertise: () => o.advertise(),
    // read at call time, as the options hold it
    get pki() {
      return o.pki;
    },
  };
  server.addService(agentService, counted(agentHandlers(deps), o.onRpcError));
  server.addService(adminService, counted(adminHandlers(deps), o.onRpcError));
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
