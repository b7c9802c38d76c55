// The coordinator's small PKI, made with the openssl CLI through the exec runner:
// a CA, the serving certificate, the admin client certificate, and client
// certificates for hosts signed from the CSR each agent makes with its own key.
// Identities: CN "admin" for coordctl, CN "host:NAME" for agents.
import { X509Certificate, createHash, randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { Runner } from '../common/exec.js';

export const ADMIN_CN = 'admin';
export const hostCn = (name: string) => `host:${name}`;

export interface Pki {
  dir: string;
  caPem: string;
  caHash: string;
  serverKey: string;
  /** serving certificate followed by the CA */
  serverChain: string;
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

/** Creates the CA and the serving and admin certificates on first start; loads them after. */
export async function ensurePki(dir: string, sans: string[], run: Runner): Promise<Pki> {
  const p = paths(dir);
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'gmpki-'));
  try {
    if (!fs.existsSync(p.caCrt)) {
      await run([
        'openssl',
        'req',
        '-x509',
        '-newkey',
        'ec',
        '-pkeyopt',
        'ec_paramgen_curve:P-256',
        '-nodes',
        '-keyout',
        p.caKey,
        '-out',
        p.caCrt,
        '-days',
        '3650',
        '-subj',
        '/O=gremesh/CN=gremesh coordinator CA',
        '-addext',
        'basicConstraints=critical,CA:TRUE',
        '-addext',
        'keyUsage=critical,keyCertSign,cRLSign',
      ]);
    }
    const sanList = [...new Set(['DNS:localhost', 'IP:127.0.0.1', ...sans])].join(',');
    const wantSan = `${p.serverCrt}.san`;
    if (!fs.existsSync(p.serverCrt) || (fs.existsSync(wantSan) ? fs.readFileSync(wantSan, 'utf8') : '') !== sanList) {
      await issue(
        run,
        tmp,
        p,
        p.serverKey,
        p.serverCrt,
        '/O=gremesh/CN=gremesh-coordinator',
        `subjectAltName=${sanList}\nextendedKeyUsage=serverAuth\n`,
        825,
      );
      fs.writeFileSync(wantSan, sanList);
    }
    if (!fs.existsSync(p.adminCrt)) {
      await issue(
        run,
        tmp,
        p,
        p.adminKey,
        p.adminCrt,
        `/O=gremesh/CN=${ADMIN_CN}`,
        'extendedKeyUsage=clientAuth\n',
        825,
      );
    }
    for (const k of [p.caKey, p.serverKey, p.adminKey]) fs.chmodSync(k, 0o600);
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
  const caPem = fs.readFileSync(p.caCrt, 'utf8');
  return {
    dir,
    caPem,
    caHash: certHash(caPem),
    serverKey: fs.readFileSync(p.serverKey, 'utf8'),
    serverChain: fs.readFileSync(p.serverCrt, 'utf8') + caPem,
  };
}

async function issue(
  run: Runner,
  tmp: string,
  p: ReturnType<typeof paths>,
  keyOut: string,
  crtOut: string,
  subj: string,
  ext: string,
  days: number,
): Promise<void> {
  const csr = `${tmp}/req.csr`;
  const extFile = `${tmp}/ext.cnf`;
  fs.writeFileSync(extFile, ext);
  await run([
    'openssl',
    'req',
    '-new',
    '-newkey',
    'ec',
    '-pkeyopt',
    'ec_paramgen_curve:P-256',
    '-nodes',
    '-keyout',
    keyOut,
    '-out',
    csr,
    '-subj',
    subj,
  ]);
  await run([
    'openssl',
    'x509',
    '-req',
    '-in',
    csr,
    '-CA',
    p.caCrt,
    '-CAkey',
    p.caKey,
    '-set_serial',
    `0x${randomBytes(12).toString('hex')}`,
    '-days',
    String(days),
    '-out',
    crtOut,
    '-extfile',
    extFile,
  ]);
}

/** Signs a host's CSR; the subject is always CN=host:NAME, whatever the CSR asked for. */
export async function signHostCsr(pki: Pki, run: Runner, csrPem: string, name: string): Promise<string> {
  const p = paths(pki.dir);
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'gmcsr-'));
  try {
    fs.writeFileSync(`${tmp}/req.csr`, csrPem);
    fs.writeFileSync(`${tmp}/ext.cnf`, 'extendedKeyUsage=clientAuth\n');
    await run(['openssl', 'req', '-in', `${tmp}/req.csr`, '-noout', '-verify'], { timeoutMs: 10_000 });
    await run(
      [
        'openssl',
        'x509',
        '-req',
        '-in',
        `${tmp}/req.csr`,
        '-CA',
        p.caCrt,
        '-CAkey',
        p.caKey,
        '-set_serial',
        `0x${randomBytes(12).toString('hex')}`,
        '-days',
        '365',
        '-subj',
        `/O=gremesh/CN=${hostCn(name)}`,
        '-extfile',
        `${tmp}/ext.cnf`,
        '-out',
        `${tmp}/host.crt`,
      ],
      { timeoutMs: 10_000 },
    );
    return fs.readFileSync(`${tmp}/host.crt`, 'utf8');
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}
