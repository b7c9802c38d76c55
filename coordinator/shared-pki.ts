// The CA and the admin credentials in a store several coordinators share (etcd), so every
// coordinator signs and verifies the same identities. Certificates are stored as they are;
// the two private keys are sealed with AES-256-GCM under a key file every coordinator is
// given (--secrets-key-file, mode 0600): what is in etcd, or in a backup of it, signs
// nothing alone; each sealed key is bound to its certificate (a certificate swapped in etcd
// opens nothing). The shared admin certificate is not renewed (825 days).
// The first coordinator makes the material (or takes its own local pki/ along) and stores
// it with a write that only succeeds where nothing is stored yet; every later one reads it.
import {
  X509Certificate,
  createCipheriv,
  createDecipheriv,
  createHash,
  createPublicKey,
  randomBytes,
} from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { newPkiMaterial, paths, type PkiMaterial } from './pki.js';
import type { SharedSecrets } from './store.js';

/** the name the material is stored under */
export const PKI_SECRET = 'pki';

interface StoredPki {
  v: 1;
  /** which secrets key sealed it: sha256 of the key, 16 hex digits */
  keyId: string;
  caCert: string;
  adminCert: string;
  caKey: string;
  adminKey: string;
}

export const keyIdOf = (key: Buffer) => createHash('sha256').update(key).digest('hex').slice(0, 16);

/** Pure: text sealed with AES-256-GCM under key, bound to what it is (aad): base64 of iv | tag | ciphertext */
export function sealSecret(key: Buffer, aad: string, text: string): string {
  const iv = randomBytes(12);
  const c = createCipheriv('aes-256-gcm', key, iv).setAAD(Buffer.from(aad));
  const body = Buffer.concat([c.update(text, 'utf8'), c.final()]);
  return Buffer.concat([iv, c.getAuthTag(), body]).toString('base64');
}

/** Pure: sealSecret's text back; throws if the key or aad is another or the text was changed */
export function openSecret(key: Buffer, aad: string, sealed: string): string {
  const raw = Buffer.from(sealed, 'base64');
  const d = createDecipheriv('aes-256-gcm', key, raw.subarray(0, 12)).setAAD(Buffer.from(aad));
  d.setAuthTag(raw.subarray(12, 28));
  return Buffer.concat([d.update(raw.subarray(28)), d.final()]).toString('utf8');
}

/** The secrets key: 64 hex digits in a file (mode 0600). Made when missing only if create. */
export function readSecretsKey(file: string, create: boolean): Buffer | undefined {
  if (!fs.existsSync(file)) {
    if (!create) return undefined;
    fs.mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
    fs.writeFileSync(file, `${randomBytes(32).toString('hex')}\n`, { mode: 0o600, flag: 'wx' });
  }
  const mode = fs.statSync(file).mode & 0o777;
  if (mode & 0o077)
    throw new Error(`secrets key file ${file} is open to others (mode ${mode.toString(8)}): chmod 600 ${file}`);
  const text = fs.readFileSync(file, 'utf8').trim();
  if (!/^[0-9a-f]{64}$/.test(text)) throw new Error(`secrets key file ${file}: want 64 hex digits (32 random bytes)`);
  return Buffer.from(text, 'hex');
}

/** what a sealed key is bound to: its name and its certificate (a certificate swapped in etcd opens nothing) */
const aadOf = (name: string, certPem: string) => `${name}:${createHash('sha256').update(certPem).digest('hex')}`;

/** true if the private key (PEM) is the one of the certificate */
function keyMatches(keyPem: string, certPem: string): boolean {
  const spki = (k: { export(o: { type: 'spki'; format: 'der' }): Buffer }) => k.export({ type: 'spki', format: 'der' });
  return spki(createPublicKey(keyPem)).equals(spki(new X509Certificate(certPem).publicKey));
}

function open(stored: StoredPki, key: Buffer, keyFile: string): PkiMaterial {
  if (stored.keyId !== keyIdOf(key))
    throw new Error(
      `the CA in the store was sealed with another secrets key than ${keyFile}: copy the key file of the coordinator that made it`,
    );
  let m: PkiMaterial;
  try {
    m = {
      caCert: stored.caCert,
      adminCert: stored.adminCert,
      caKey: openSecret(key, aadOf('ca.key', stored.caCert), stored.caKey),
      adminKey: openSecret(key, aadOf('admin.key', stored.adminCert), stored.adminKey),
    };
  } catch {
    throw new Error(`the CA record in the store does not open with ${keyFile}: it was changed after it was sealed`);
  }
  if (!keyMatches(m.caKey, m.caCert) || !keyMatches(m.adminKey, m.adminCert))
    throw new Error('the CA record in the store does not hold matching keys and certificates');
  return m;
}

/** The material in a directory made by a coordinator that ran alone (taken along on its first start on etcd). */
function localMaterial(dir: string): PkiMaterial | undefined {
  const p = paths(dir);
  if (![p.caCrt, p.caKey, p.adminCrt, p.adminKey].every((f) => fs.existsSync(f))) return undefined;
  const r = (f: string) => fs.readFileSync(f, 'utf8');
  return { caCert: r(p.caCrt), caKey: r(p.caKey), adminCert: r(p.adminCrt), adminKey: r(p.adminKey) };
}

/** The CA and admin credentials every coordinator on this store shares (made by the first one). */
export async function sharedPkiMaterial(
  secrets: SharedSecrets,
  keyFile: string,
  localDir: string,
): Promise<{ material: PkiMaterial; made: boolean }> {
  const text = await secrets.get(PKI_SECRET);
  if (text !== undefined) {
    const key = readSecretsKey(keyFile, false);
    if (!key)
      throw new Error(
        `the CA in the store is sealed: copy the secrets key file of the coordinator that made it to ${keyFile}`,
      );
    return { material: open(JSON.parse(text) as StoredPki, key, keyFile), made: false };
  }
  const key = readSecretsKey(keyFile, true)!;
  const m = localMaterial(localDir) ?? (await newPkiMaterial());
  const mine: StoredPki = {
    v: 1,
    keyId: keyIdOf(key),
    caCert: m.caCert,
    adminCert: m.adminCert,
    caKey: sealSecret(key, aadOf('ca.key', m.caCert), m.caKey),
    adminKey: sealSecret(key, aadOf('admin.key', m.adminCert), m.adminKey),
  };
  const mineText = JSON.stringify(mine);
  const stored = await secrets.putIfAbsent(PKI_SECRET, mineText);
  return { material: open(JSON.parse(stored) as StoredPki, key, keyFile), made: stored === mineText };
}
