// TLS credentials for dialling the coordinator. The identity checked is the address
// dialled (the serving certificate carries it as an IP SAN), as usual. What changes is
// the name sent in SNI: grpc-js would send the IP address, which SNI may not carry
// (RFC 6066) and for which Node prints a deprecation warning (DEP0123) on every call.
// So when the coordinator is dialled by address, SNI carries a fixed name instead and
// the certificate is still checked against the address.
import * as grpc from '@grpc/grpc-js';
import * as net from 'node:net';
import * as tls from 'node:tls';

/** the SNI name sent when the coordinator is dialled by IP address */
export const COORDINATOR_SNI = 'gremesh-coordinator';

export interface DialTls {
  credentials: grpc.ChannelCredentials;
  /** channel options to merge into the client's */
  options: grpc.ChannelOptions;
}

/** host part of ADDR:PORT */
export function hostOf(addr: string): string {
  return addr.replace(/:\d+$/, '');
}

export function coordinatorTls(addr: string, ca: Buffer, key?: Buffer, cert?: Buffer): DialTls {
  const host = hostOf(addr);
  if (!net.isIP(host)) return { credentials: grpc.credentials.createSsl(ca, key ?? null, cert ?? null), options: {} };
  return {
    credentials: grpc.credentials.createSsl(ca, key ?? null, cert ?? null, {
      checkServerIdentity: (_sni, c) => tls.checkServerIdentity(host, c),
    }),
    options: { 'grpc.ssl_target_name_override': COORDINATOR_SNI },
  };
}
