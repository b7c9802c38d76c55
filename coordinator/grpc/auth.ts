// Who is calling and may they: the verified TLS client certificate's identity, the admin
// check, the host check (certificate with TLS, credential without), and the server TLS setup.
import * as grpc from '@grpc/grpc-js';
import { denied, unauthenticated } from '../errors.js';
import type { Coordinator } from '../coordinator.js';
import { ADMIN_CN, hostCn, type Pki } from '../pki.js';

export type AnyCall = grpc.ServerUnaryCall<unknown, unknown> | grpc.ServerWritableStream<unknown, unknown>;
export interface Identity {
  cn: string;
  fingerprint: string;
}

/** The verified client certificate's identity, if the caller presented one the CA signed. */
export function identityOf(call: AnyCall): Identity | undefined {
  const c = call.getAuthContext?.()?.sslPeerCertificate;
  if (!c?.subject?.CN) return undefined;
  return { cn: String(c.subject.CN), fingerprint: c.fingerprint256 };
}

export interface Auth {
  tls: boolean;
  /** admin calls: with TLS only the admin certificate */
  admin: (call: AnyCall) => Identity | undefined;
  /** agent calls after registration: with TLS the host's current certificate, else its credential */
  asHost: (call: AnyCall, name: string, credential: string) => void;
}

export function peerAuth(coord: Coordinator, tls: boolean): Auth {
  return {
    tls,
    admin: (call) => {
      if (!tls) return undefined;
      const id = identityOf(call);
      if (!id) throw unauthenticated('admin calls need the admin client certificate (coordctl --cert/--key/--ca)');
      if (id.cn !== ADMIN_CN) throw denied(`certificate "${id.cn}" may not make admin calls`);
      return id;
    },
    asHost: (call, name, credential) => {
      if (!tls) {
        coord.authenticate(name, credential);
        return;
      }
      const id = identityOf(call);
      if (!id) throw unauthenticated('agent calls need the host client certificate');
      if (id.cn !== hostCn(name)) throw denied(`certificate "${id.cn}" may not act as host ${name}`);
      coord.authenticateCert(name, id.fingerprint);
    },
  };
}

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
