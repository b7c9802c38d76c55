// Errors on the gRPC side, mapped once: a CoordError becomes its gRPC status, anything else
// INTERNAL (logged); a request whose bytes did not decode is marked and answered INVALID_ARGUMENT.
import * as grpc from '@grpc/grpc-js';
import type { Logger } from '../../common/log.js';
import { CoordError, GRPC_STATUS, invalid } from '../errors.js';
import { trunc } from '../validate.js';

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

/** a request whose bytes did not decode: grpc-js would answer INTERNAL; the handler answers INVALID_ARGUMENT */
const UNDECODABLE = Symbol('undecodable');
export function undecodable(req: unknown): string | undefined {
  return typeof req === 'object' && req !== null && UNDECODABLE in req
    ? String((req as { [UNDECODABLE]: string })[UNDECODABLE])
    : undefined;
}

/** A service definition whose request decoders never throw: a bad request is marked for its handler. */
export function decodingOrMarked<T extends object>(def: T): grpc.ServiceDefinition {
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

export const notDecoded = (why: string): CoordError => invalid(`the request could not be decoded: ${trunc(why, 128)}`);

/** throw the decode error of a marked request */
export function checkDecoded(req: unknown): void {
  const bad = undecodable(req);
  if (bad !== undefined) throw notDecoded(bad);
}
