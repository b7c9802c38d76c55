// The coordinator's small PKI, made in process (common/certs.ts, no openssl): a CA, the
// serving certificate, the admin client certificate, and client certificates for hosts
// signed from the CSR each agent makes with its own key.
// Identities: CN "admin" for coordctl, CN "host:NAME" for agents.
import { renewAt } from '../common/renewal.js';
import { X509Certificate, createHash } from 'node:crypto';
import * as fs from 'node:fs';
import {
  issue,
  keyPairFromPem,
  newKeyPair,
  privateKeyPem,
  selfSignedCa,
  verifiedCsrKey,
  type Issuer,
} from '../common/certs.js';

export const ADMIN_CN = 'admin';
export const hostCn = (name: string) => `host:${name}`;
const subject = (cn: string) => `O=gremesh, CN=${cn}`;

export interface Pki {
  /** the coordinator's own certificates, for coordctl status */
  certificates: { name: string; notBeforeMs: number; notAfterMs: number }[];
  dir: string;
  caPem: string;
  caHash: string;
  serverKey: string;
  /** serving certificate followed by the CA */
  serverChain: string;
  /** the CA's certificate and keys, in memory: every host certificate is signed in process */
  issuer: Issuer;
}

export const paths = (dir: string) => ({
  caKey: `${dir}/ca.key`,
  caCrt: `${dir}/ca.crt`,
  serverKey: `${dir}/server.key`,
  serverCrt: `${dir}/server.crt`,
  adminKey: `${dir}/admin.key`,
  adminCrt: `${dir}/admin.crt`,
});

/** "sha256:<hex>" of a PEM certificate's DER */
export function certHash(pem: string): string {
  return `sha256:${createHash('sha256').update(new X509Certificate(pem).raw).digest('hex')}`;
}

export function fingerprint(pem: string): string {
  return new X509Certificate(pem).fingerprint256;
}

/** SHA-256 of a certificate's public key (SubjectPublicKeyInfo, DER), hex */
export function keyFingerprint(pem: string): string {
  return createHash('sha256')
    .update(new X509Certificate(pem).publicKey.export({ type: 'spki', format: 'der' }))
    .digest('hex');
}

/** SHA-256 of a CSR's public key (SubjectPublicKeyInfo, DER), hex: the same as keyFingerprint of a certificate for that key */
export async function csrKeyFingerprint(csrPem: string): Promise<string> {
  const key = await verifiedCsrKey(csrPem);
  return createHash('sha256').update(Buffer.from(key.rawData)).digest('hex');
}

/** a file written whole (a temporary file renamed over it) */
function writeWhole(file: string, text: string, mode = 0o644): void {
  fs.writeFileSync(`${file}.tmp`, text, { mode });
  fs.renameSync(`${file}.tmp`, file);
}

/** key (0600) then certificate, each written whole */
function writeKeyAndCert(keyFile: string, keyPem: string, certFile: string, certPem: string): void {
  writeWhole(keyFile, keyPem, 0o600);
  writeWhole(certFile, certPem);
}

/** The CA and the admin client credentials (PEM): what coordinators on a shared store share. */
export interface PkiMaterial {
  caCert: string;
  caKey: string;
  adminCert: string;
  adminKey: string;
}

const newCa = async () => {
  const keys = await newKeyPair();
  return { keys, certPem: await selfSignedCa(keys, subject('gremesh coordinator CA'), 3650) };
};
const newAdmin = async (issuer: Issuer) => {
  const keys = await newKeyPair();
  const cert = await issue(issuer, keys.publicKey, { subject: subject(ADMIN_CN), days: 825, usage: 'client' });
  return { keyPem: await privateKeyPem(keys), cert };
};

/** A new CA and an admin client certificate it signed. */
export async function newPkiMaterial(): Promise<PkiMaterial> {
  const ca = await newCa();
  const admin = await newAdmin(ca);
  return { caCert: ca.certPem, caKey: await privateKeyPem(ca.keys), adminCert: admin.cert, adminKey: admin.keyPem };
}

/** true if pem was signed by the CA caPem */
function issuedBy(pem: string, caPem: string): boolean {
  const ca = new X509Certificate(caPem);
  const c = new X509Certificate(pem);
  return c.checkIssued(ca) && c.verify(ca.publicKey);
}

/**
 * Creates the CA and the serving and admin certificates on first start; loads them after.
 * With shared material (coordinators on etcd), the CA and admin credentials are those; the
 * CA's key stays in memory, and the serving certificate is this coordinator's own.
 */
export async function ensurePki(dir: string, sans: string[], shared?: PkiMaterial): Promise<Pki> {
  const p = paths(dir);
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  const read = (f: string) => (fs.existsSync(f) ? fs.readFileSync(f, 'utf8') : '');
  if (shared) {
    if (read(p.caCrt) !== shared.caCert) writeWhole(p.caCrt, shared.caCert);
    if (read(p.adminCrt) !== shared.adminCert || read(p.adminKey) !== shared.adminKey)
      writeKeyAndCert(p.adminKey, shared.adminKey, p.adminCrt, shared.adminCert);
  } else if (!fs.existsSync(p.caCrt) || !fs.existsSync(p.caKey)) {
    const ca = await newCa();
    writeKeyAndCert(p.caKey, await privateKeyPem(ca.keys), p.caCrt, ca.certPem);
  }
  const issuer: Issuer = {
    certPem: shared?.caCert ?? fs.readFileSync(p.caCrt, 'utf8'),
    keys: await keyPairFromPem(shared?.caKey ?? fs.readFileSync(p.caKey, 'utf8')),
  };
  const sanList = [...new Set(['DNS:localhost', 'IP:127.0.0.1', ...sans])];
  const wantSan = `${p.serverCrt}.san`;
  // past 60 % of its life a certificate is issued anew at start (the CA's hash stays: agents keep their pin)
  const late = (f: string) => {
    if (!fs.existsSync(f)) return false;
    const c = new X509Certificate(fs.readFileSync(f));
    return Date.now() >= renewAt(Date.parse(c.validFrom), Date.parse(c.validTo));
  };
  if (
    !fs.existsSync(p.serverCrt) ||
    late(p.serverCrt) ||
    !issuedBy(fs.readFileSync(p.serverCrt, 'utf8'), issuer.certPem) ||
    (fs.existsSync(wantSan) ? fs.readFileSync(wantSan, 'utf8') : '') !== sanList.join(',')
  ) {
    const keys = await newKeyPair();
    const cert = await issue(issuer, keys.publicKey, {
      subject: subject('gremesh-coordinator'),
      days: 825,
      usage: 'server',
      sans: sanList,
    });
    writeKeyAndCert(p.serverKey, await privateKeyPem(keys), p.serverCrt, cert);
    fs.writeFileSync(wantSan, sanList.join(','));
  }
  // shared admin credentials are the store's (made once, by the first coordinator)
  if (!shared && (!fs.existsSync(p.adminCrt) || late(p.adminCrt))) {
    const admin = await newAdmin(issuer);
    writeKeyAndCert(p.adminKey, admin.keyPem, p.adminCrt, admin.cert);
  }
  for (const k of [p.caKey, p.serverKey, p.adminKey]) if (fs.existsSync(k)) fs.chmodSync(k, 0o600);
  const caPem = issuer.certPem;
  const validity = (f: string) => {
    const c = new X509Certificate(fs.readFileSync(f));
    return { notBeforeMs: Date.parse(c.validFrom), notAfterMs: Date.parse(c.validTo) };
  };
  return {
    certificates: [
      { name: 'CA', ...validity(p.caCrt) },
      { name: 'serving', ...validity(p.serverCrt) },
      { name: 'admin', ...validity(p.adminCrt) },
    ],
    dir,
    caPem,
    caHash: certHash(caPem),
    serverKey: fs.readFileSync(p.serverKey, 'utf8'),
    serverChain: fs.readFileSync(p.serverCrt, 'utf8') + caPem,
    issuer,
  };
}

/** Signs a host's CSR (its own signature checked first); the subject is always CN=host:NAME, whatever the CSR asked for. */
export async function signHostCsr(pki: Pki, csrPem: string, name: string, ttlMs = HOST_CERT_TTL_MS): Promise<string> {
  const key = await verifiedCsrKey(csrPem);
  return issue(pki.issuer, key, { subject: subject(hostCn(name)), days: 365, ttlMs, usage: 'client' });
}

/** host certificates live a year unless --host-cert-ttl says otherwise; agents renew at 60 % */
export const HOST_CERT_TTL_MS = 365 * 86_400_000;
