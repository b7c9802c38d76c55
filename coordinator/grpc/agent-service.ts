// The agent service: Register, Watch (the hub's pre-encoded DesiredState bytes), ReportStatus
// (rate-limited per host), Renew, TraceResult.
import type * as grpc from '@grpc/grpc-js';
import {
  AgentServiceService,
  type RenewRequest,
  type SetWireguardKeyRequest,
  type ReportStatusRequest,
  type TraceResultRequest,
  type WatchRequest,
} from '../../proto/gen/gremesh/v1/gremesh.js';
import { RateLimiter, REPORT_RATE } from '../rate-limit.js';
import { CoordError, denied, unauthenticated } from '../errors.js';
import type { RegisterRequestView } from '../coordinator.js';
import { hostCn } from '../pki.js';
import { checkDecoded, decodingOrMarked, toStatus } from './errors.js';
import { identityOf, type AnyCall } from './auth.js';
import type { ServiceDeps } from './deps.js';

/** The agent service definition, with Watch responses passed through as the hub's pre-encoded bytes. */
export const agentService: grpc.ServiceDefinition = decodingOrMarked({
  ...AgentServiceService,
  watch: { ...AgentServiceService.watch, responseSerialize: (b: Buffer) => b },
});

/** Watch: the host's DesiredState stream from the hub until it cancels, is removed, re-admitted or replaced */
export function watchHandler({ coord, hub, auth, log }: ServiceDeps) {
  const fail = (call: grpc.ServerWritableStream<WatchRequest, Buffer>, e: CoordError) =>
    call.emit('error', toStatus(e, log));
  return (call: grpc.ServerWritableStream<WatchRequest, Buffer>): void => {
    const { name, credential } = call.request;
    try {
      checkDecoded(call.request);
      auth.asHost(call as AnyCall, name, credential);
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
        gone: () => fail(call, new CoordError('NOT_FOUND', `host ${name} was removed (coordctl leave)`)),
        revoked: () =>
          fail(
            call,
            new CoordError('UNAUTHENTICATED', `host ${name} was admitted anew: this stream's identity is revoked`),
          ),
        superseded: () =>
          fail(
            call,
            new CoordError(
              'ABORTED',
              `a newer Watch stream of host ${name} replaced this one (two agents with one identity?)`,
            ),
          ),
      },
      Number(call.request.knownRevision ?? 0),
    );
  };
}

export function agentHandlers(d: ServiceDeps): grpc.UntypedServiceImplementation {
  const { coord, auth, unary, broker } = d;
  const reports = new RateLimiter(REPORT_RATE);
  const asHost = <Res>(call: grpc.ServerUnaryCall<{ name: string; credential: string }, Res>) => {
    auth.asHost(call as AnyCall, call.request.name, call.request.credential);
    return undefined;
  };
  return {
    // Register decides on its own: a join token (no certificate yet), or the host's certificate
    register: unary(
      (call) => (auth.tls ? identityOf(call as AnyCall) : undefined),
      async (req: RegisterRequestView, id) => {
        if (id && id.cn !== hostCn(req.name))
          throw denied(`certificate "${id.cn}" may not register as host ${req.name}`);
        const r = await coord.register(req, id?.fingerprint);
        return { credential: r.credential, certificate: r.certificate, state: undefined };
      },
    ),
    watch: watchHandler(d),
    reportStatus: unary(asHost, async (req: ReportStatusRequest) => {
      if (!reports.take(req.name))
        throw new CoordError(
          'RESOURCE_EXHAUSTED',
          `ReportStatus from ${req.name} faster than ${REPORT_RATE.perSecond}/s (burst ${REPORT_RATE.burst}): slow down`,
        );
      await coord.reportStatus(req.name, req);
      return {};
    }),
    renew: unary(
      (call) => {
        if (!auth.tls) return undefined;
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
    setWireguardKey: unary(asHost, async (req: SetWireguardKeyRequest) => {
      await coord.setWireguardKey(req.name, req.publicKey, req.port, req.generation);
      return {};
    }),
    traceResult: unary(asHost, (req: TraceResultRequest) => {
      broker.answer(req.name, req.id, req.hop, req.error);
      return {};
    }),
  } as grpc.UntypedServiceImplementation;
}
