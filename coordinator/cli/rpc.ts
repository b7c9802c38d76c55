// coordctl's side of gRPC: credentials (admin certificate or --insecure), one unary call with
// its errors turned into one-line messages, and failover across several coordinators.
// gRPC and the generated client are loaded only once a command is about to dial:
// --help and usage errors answer in about the time of a bare `node`.
import type * as G from '@grpc/grpc-js';
import * as fs from 'node:fs';
import type { AdminServiceClient } from '../../proto/gen/gremesh/v1/gremesh.js';
import type { DialTls } from '../../common/grpc-tls.js';
import type { Values } from './args.js';

type Call<Req, Res> = (
  req: Req,
  md: G.Metadata,
  opts: Partial<G.CallOptions>,
  cb: (e: G.ServiceError | null, r: Res) => void,
) => G.ClientUnaryCall;

export type Rpc = <Res>(m: keyof AdminServiceClient, req: unknown) => Promise<Res>;

export interface Dialled {
  grpc: typeof G;
  /** the first coordinator's client (streams go there) */
  client: AdminServiceClient;
  rpc: Rpc;
  close: () => void;
}

function call<Req, Res>(
  grpc: typeof G,
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

/** TLS with the admin certificate, unless --insecure */
function credentials(
  grpc: typeof G,
  coordinatorTls: typeof import('../../common/grpc-tls.js').coordinatorTls,
  v: Values,
  addr: string,
): DialTls {
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

/** Clients for every comma-separated address; a call goes to the next one when one cannot be reached. */
export async function dial(values: Values, addr: string, timeoutS: number): Promise<Dialled> {
  const [grpc, tlsModule, proto] = await Promise.all([
    import('@grpc/grpc-js'),
    import('../../common/grpc-tls.js'),
    import('../../proto/gen/gremesh/v1/gremesh.js'),
  ]);
  const addresses = addr.split(',').filter(Boolean);
  const clients = addresses.map((a) => {
    const d = credentials(grpc, tlsModule.coordinatorTls, values, a);
    return new proto.AdminServiceClient(a, d.credentials, d.options);
  });
  const rpc = async <Res>(m: keyof AdminServiceClient, req: unknown): Promise<Res> => {
    for (let i = 0; ; i++) {
      try {
        return await call<unknown, Res>(grpc, clients[i]!, m, req, timeoutS * 1000, addresses[i]!);
      } catch (e) {
        if (!(e as { unreachable?: boolean }).unreachable || i === clients.length - 1) throw e;
      }
    }
  };
  return {
    grpc,
    client: clients[0]!,
    rpc,
    close: () => {
      for (const c of clients) c.close();
    },
  };
}
