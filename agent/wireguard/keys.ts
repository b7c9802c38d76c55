// This host's WireGuard key pair: made here (Curve25519, node:crypto), kept in one file of
// mode 0600 in the state dir, never sent anywhere; only the public key is published.
import { createPrivateKey, createPublicKey, generateKeyPairSync } from 'node:crypto';
import { isWireguardKey } from '../../common/wireguard.js';
import { readJson, writeFileAtomic } from '../state-file.js';

export interface WireguardKey {
  privateKey: string;
  publicKey: string;
  /** the rotation (coordctl rotate-keys) this key answers */
  generation: number;
}

/** A new key pair, both halves base64 as `wg genkey | wg pubkey` print them. */
export function newKey(generation: number): WireguardKey {
  const jwk = generateKeyPairSync('x25519').privateKey.export({ format: 'jwk' });
  const b64 = (s: string | undefined) => Buffer.from(s ?? '', 'base64url').toString('base64');
  return { privateKey: b64(jwk.d), publicKey: b64(jwk.x), generation };
}

/** The key file: read (undefined when absent or unreadable), written atomically with mode 0600. */
export class KeyFile {
  constructor(readonly path: string) {}

  read(): WireguardKey | undefined {
    const k = readJson<WireguardKey>(this.path);
    if (!k || !isWireguardKey(k.privateKey) || !isWireguardKey(k.publicKey) || !Number.isInteger(k.generation))
      return undefined;
    return k;
  }

  write(k: WireguardKey): void {
    writeFileAtomic(this.path, JSON.stringify(k) + '\n', 0o600);
  }
}

/** Pure: the key to use, given the one on disk and what the coordinator asks (a rotation past it: a new one). */
export function keyDecision(onDisk: WireguardKey | undefined, rotation: number): 'keep' | 'new' {
  if (!onDisk) return 'new';
  return onDisk.generation < rotation ? 'new' : 'keep';
}

/** The public half of a private key (base64 both). */
export function publicKeyOf(privateKey: string): string {
  // PKCS#8 of an X25519 key: a fixed 16-byte header, then the 32 key bytes
  const der = Buffer.concat([
    Buffer.from('302e020100300506032b656e04220420', 'hex'),
    Buffer.from(privateKey, 'base64'),
  ]);
  const k = createPrivateKey({ key: der, format: 'der', type: 'pkcs8' });
  return Buffer.from(createPublicKey(k).export({ format: 'jwk' }).x ?? '', 'base64url').toString('base64');
}
