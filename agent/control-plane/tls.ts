// The agent's TLS material in its state dir: the coordinator CA (pinned by the hash
// `coordctl join` printed), its own key (made here, never sent) and the client
// certificate the coordinator signed for its name.
import { X509Certificate, createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as tls from 'node:tls';
import * as net from 'node:net';

export const tlsFiles = (dir: string) => ({
  ca: `${dir}/ca.crt`,
  key: `${dir}/host.key`,
  csr: `${dir}/host.csr`,
  cert: `${dir}/host.crt`,
});

export function derHash(der: Buffer): string {
  return `sha256:${createHash('sha256').update(der).digest('hex')}`;
}

function pem(der: Buffer): string {
  return `-----BEGIN CERTIFICATE-----\n${der
    .toString('base64')
    .match(/.{1,64}/g)!
    .join('\n')}\n-----END CERTIFICATE-----\n`;
}

/**
 * Connects once without verifying, takes the certificate chain the coordinator sends,
 * and returns the CA in it whose SHA-256 is the pinned hash; the serving certificate
 * must be signed by that CA. Anything else: an error, nothing saved.
 */
export function fetchPinnedCa(addr: string, pinned: string, timeoutMs = 10_000): Promise<string> {
  const m = /^(.*):(\d+)$/.exec(addr);
  if (!m) return Promise.reject(new Error(`bad coordinator address ${addr}`));
  return new Promise((resolve, reject) => {
    // no SNI for an IP address (RFC 6066); the pinned hash, not the name, is what is checked here
    const sock = tls.connect({
      host: m[1],
      port: Number(m[2]),
      rejectUnauthorized: false,
      ALPNProtocols: ['h2'],
      servername: net.isIP(m[1]!) ? '' : m[1],
      timeout: timeoutMs,
    });
    const fail = (e: Error) => {
      sock.destroy();
      reject(e);
    };
    sock.on('timeout', () => fail(new Error(`no TLS answer from ${addr} within ${timeoutMs} ms`)));
    sock.on('error', (e) => fail(new Error(`cannot reach coordinator ${addr} over TLS: ${e.message}`)));
    sock.on('secureConnect', () => {
      const leaf = sock.getPeerCertificate(true);
      sock.end();
      const chain: Buffer[] = [];
      for (
        let c: tls.DetailedPeerCertificate | undefined = leaf;
        c?.raw && !chain.some((x) => x.equals(c!.raw));
        c = c.issuerCertificate
      )
        chain.push(c.raw);
      const ca = chain.find((der) => derHash(der) === pinned);
      if (!ca)
        return reject(
          new Error(`the coordinator at ${addr} did not present a CA with the pinned hash ${pinned}: refusing it`),
        );
      const caPem = pem(ca);
      if (!new X509Certificate(pem(chain[0]!)).verify(new X509Certificate(caPem).publicKey))
        return reject(new Error(`the coordinator's certificate is not signed by the pinned CA`));
      resolve(caPem);
    });
  });
}

/** A P-256 key (mode 0600) and a CSR for this host, made in process; the key stays in the state dir. */
export async function ensureKeyAndCsr(dir: string, name: string): Promise<string> {
  const { keyPairFromPem, makeCsr, newKeyPair, privateKeyPem } = await import('../../common/certs.js');
  const f = tlsFiles(dir);
  if (!fs.existsSync(f.key)) {
    const keys = await newKeyPair();
    fs.writeFileSync(`${f.key}.tmp`, await privateKeyPem(keys), { mode: 0o600 });
    fs.renameSync(`${f.key}.tmp`, f.key);
  }
  const csr = await makeCsr(await keyPairFromPem(fs.readFileSync(f.key, 'utf8')), `O=gremesh, CN=host:${name}`);
  fs.writeFileSync(f.csr, csr);
  return csr;
}
