// The coordinator's coded errors. The gRPC layer maps each code to a gRPC status;
// coordctl prints the message as one line.
import { status } from '@grpc/grpc-js';

export type CoordErrorCode =
  | 'INVALID_ARGUMENT'
  | 'NOT_FOUND'
  | 'ALREADY_EXISTS'
  | 'FAILED_PRECONDITION'
  | 'RESOURCE_EXHAUSTED'
  | 'UNAUTHENTICATED'
  | 'PERMISSION_DENIED'
  | 'ABORTED'
  | 'UNAVAILABLE'
  | 'INTERNAL';

export class CoordError extends Error {
  constructor(
    readonly code: CoordErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'CoordError';
  }
}

export const invalid = (m: string) => new CoordError('INVALID_ARGUMENT', m);
export const notFound = (m: string) => new CoordError('NOT_FOUND', m);
export const exists = (m: string) => new CoordError('ALREADY_EXISTS', m);
export const precondition = (m: string) => new CoordError('FAILED_PRECONDITION', m);
export const exhausted = (m: string) => new CoordError('RESOURCE_EXHAUSTED', m);
export const unauthenticated = (m: string) => new CoordError('UNAUTHENTICATED', m);
export const denied = (m: string) => new CoordError('PERMISSION_DENIED', m);

/** A store-level uniqueness violation (a lost race); the caller retries or reports. */
export class StoreConflict extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'StoreConflict';
  }
}

export const GRPC_STATUS: Record<CoordErrorCode, status> = {
  INVALID_ARGUMENT: status.INVALID_ARGUMENT,
  NOT_FOUND: status.NOT_FOUND,
  ALREADY_EXISTS: status.ALREADY_EXISTS,
  FAILED_PRECONDITION: status.FAILED_PRECONDITION,
  RESOURCE_EXHAUSTED: status.RESOURCE_EXHAUSTED,
  UNAUTHENTICATED: status.UNAUTHENTICATED,
  PERMISSION_DENIED: status.PERMISSION_DENIED,
  ABORTED: status.ABORTED,
  UNAVAILABLE: status.UNAVAILABLE,
  INTERNAL: status.INTERNAL,
};
