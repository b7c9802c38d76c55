// Unary handlers: decode check, caller check, the call, errors to statuses; and each
// unary handler's errors counted by method and status code (streams are left as they are).
import * as grpc from '@grpc/grpc-js';
import type { Logger } from '../../common/log.js';
import { checkDecoded, toStatus } from './errors.js';
import type { Identity } from './auth.js';

export type Unary = <Req, Res>(
  check: (call: grpc.ServerUnaryCall<Req, Res>) => Identity | undefined,
  f: (req: Req, id: Identity | undefined) => Res | Promise<Res>,
) => grpc.handleUnaryCall<Req, Res>;

export function unaryWith(log: Logger): Unary {
  return (check, f) => (call, cb) => {
    Promise.resolve()
      .then(() => {
        checkDecoded(call.request);
        return f(call.request, check(call));
      })
      .then(
        (r) => cb(null, r),
        (e: unknown) => cb(toStatus(e, log)),
      );
  };
}

export function counted(
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
