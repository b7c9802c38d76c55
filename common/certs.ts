// Certificates in process, without openssl: P-256 keys, CSRs, issuing and checking,
// with @peculiar/x509 on Node's WebCrypto. Keys are kept as PKCS#8 PEM; keys that an
// earlier version made with openssl (PKCS#8 or SEC1 PEM, P-256) load as they are.
// Shared by the coordinator (its CA issues certificates) and the agent (its key and CSR).
// @peculiar/x509 resolves its parts through tsyringe, which needs the Reflect metadata API
import 'reflect-metadata';
import { createPrivateKey, createPublicKey, randomBytes, webcrypto } from 'node:crypto';
import * as x509 from '@peculiar/x509';

x509.cryptoProvider.set(webcrypto as unknown as Crypto);

const subtle = webcrypto.subtle;
/** ECDSA P-256 with SHA-256: keys, CSRs and certificate signatures */
export const EC = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' } as const;
const DAY_MS = 86_400_000;
/** certificates start a little in the past: clocks of hosts differ */
const BACKDATE_MS = 5 * 60_000;

export interface KeyPair {
  privateKey: CryptoKey;
  publicKey: CryptoKey;
}

function pem(der: ArrayBuffer | Buffer, label: string): string {
  const b64 = Buffer.from(der as ArrayBuffer).toString('base64');
  return `-----BEGIN ${label}-----\n${b64.match(/.{1,64}/g)!.join('\n')}\n-----END ${label}-----\n`;
}

/** PEM text as files and TLS want it: LF line ends, one newline at the end (so PEMs concatenate) */
function pemText(s: string): string {
  return `${s.replace(/\r\n/g, '\n').trimEnd()}\n`;
}

export async function newKeyPair(): Promise<KeyPair> {
  return (await subtle.generateKey(EC, true, ['sign', 'verify'])) as unknown as KeyPair;
}

export async function privateKeyPem(k: KeyPair): Promise<string> {
  return pem(await subtle.exportKey('pkcs8', k.privateKey), 'PRIVATE KEY');
}

/** A P-256 key pair from a PEM private key (PKCS#8 or SEC1). */
export async function keyPairFromPem(privatePem: string): Promise<KeyPair> {
  const priv = createPrivateKey(privatePem);
  const pkcs8 = priv.export({ type: 'pkcs8', format: 'der' });
  const spki = createPublicKey(priv).export({ type: 'spki', format: 'der' });
  const privateKey = (await subtle.importKey('pkcs8', pkcs8, EC, true, ['sign'])) as unknown as CryptoKey;
  const publicKey = (await subtle.importKey('spki', spki, EC, true, ['verify'])) as unknown as CryptoKey;
  return { privateKey, publicKey };
}

/** A certificate signing request for `subject` (e.g. "O=gremesh, CN=host:h1"), PEM. */
export async function makeCsr(keys: KeyPair, subject: string): Promise<string> {
  const csr = await x509.Pkcs10CertificateRequestGenerator.create({ name: subject, keys, signingAlgorithm: EC });
  return pemText(csr.toString('pem'));
}

/** A positive serial number of 12 random bytes, hex */
function serial(): string {
  const b = randomBytes(12);
  b[0] = b[0]! & 0x7f || 0x01;
  return b.toString('hex');
}

export type Usage = 'ca' | 'server' | 'client';

export interface IssueOptions {
  subject: string;
  days: number;
  /** lifetime in ms instead of days (short-lived host certificates) */
  ttlMs?: number;
  usage: Usage;
  /** server certificates: "DNS:name" / "IP:address" */
  sans?: string[];
}

function extensions(o: IssueOptions): x509.Extension[] {
  if (o.usage === 'ca')
    return [
      new x509.BasicConstraintsExtension(true, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
    ];
  const ext: x509.Extension[] = [
    new x509.BasicConstraintsExtension(false, undefined, false),
    new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
    new x509.ExtendedKeyUsageExtension([
      o.usage === 'server' ? x509.ExtendedKeyUsage.serverAuth : x509.ExtendedKeyUsage.clientAuth,
    ]),
  ];
  if (o.sans?.length)
    ext.push(
      new x509.SubjectAlternativeNameExtension(
        o.sans.map((s): x509.JsonGeneralName =>
          s.startsWith('IP:') ? { type: 'ip', value: s.slice(3) } : { type: 'dns', value: s.slice(4) },
        ),
      ),
    );
  return ext;
}

/** A self-signed CA certificate, PEM. */
export async function selfSignedCa(keys: KeyPair, subject: string, days: number): Promise<string> {
  const now = Date.now();
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: serial(),
    name: subject,
    notBefore: new Date(now - BACKDATE_MS),
    notAfter: new Date(now + days * DAY_MS),
    signingAlgorithm: EC,
    keys,
    extensions: [
      ...extensions({ subject, days, usage: 'ca' }),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  });
  return pemText(cert.toString('pem'));
}

export interface Issuer {
  certPem: string;
  keys: KeyPair;
}

/** A certificate for `publicKey` signed by the issuer, PEM. */
export async function issue(ca: Issuer, publicKey: CryptoKey | x509.PublicKey, o: IssueOptions): Promise<string> {
  const now = Date.now();
  const caCert = new x509.X509Certificate(ca.certPem);
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: serial(),
    subject: o.subject,
    issuer: caCert.subject,
    // backdated for clock skew, by a tenth of the lifetime at most (a 30 s certificate is not 5 min old)
    notBefore: new Date(now - Math.min(BACKDATE_MS, (o.ttlMs ?? o.days * DAY_MS) / 10)),
    notAfter: new Date(now + (o.ttlMs ?? o.days * DAY_MS)),
    signingAlgorithm: EC,
    publicKey,
    signingKey: ca.keys.privateKey,
    extensions: [...extensions(o), await x509.AuthorityKeyIdentifierExtension.create(ca.keys.publicKey)],
  });
  return pemText(cert.toString('pem'));
}

/** The public key of a CSR whose own signature checks out; throws otherwise. */
export async function verifiedCsrKey(csrPem: string): Promise<x509.PublicKey> {
  let csr: x509.Pkcs10CertificateRequest;
  try {
    csr = new x509.Pkcs10CertificateRequest(csrPem);
  } catch (e) {
    throw new Error(`not a PEM certificate request: ${(e as Error).message}`);
  }
  if (!(await csr.verify())) throw new Error('the certificate request is not signed by its own key');
  return csr.publicKey;
}
