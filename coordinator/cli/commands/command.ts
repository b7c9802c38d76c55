// What a coordctl command is: an optional check of its arguments before dialling, and a run.
import type * as G from '@grpc/grpc-js';
import type { AdminServiceClient } from '../../../proto/gen/gremesh/v1/gremesh.js';
import type { Values } from '../args.js';
import type { Out } from '../output.js';
import type { Rpc } from '../rpc.js';

export interface Ctx {
  values: Values;
  /** the positionals after the command name */
  args: string[];
  fmt: string;
  addr: string;
  timeoutS: number;
  rpc: Rpc;
  client: AdminServiceClient;
  grpc: typeof G;
  out: Out;
}

export interface Command {
  /** usage errors found before dialling (no certificate is read, nothing is loaded) */
  check?: (values: Values, args: string[]) => void;
  run: (ctx: Ctx) => Promise<number>;
}
