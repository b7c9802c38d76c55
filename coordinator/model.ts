// Records the coordinator keeps. Plain data; the Store persists them.

export interface NetworkRec {
  name: string;
  cidr: string;
  hostPrefixLen: number;
  greKey: number;
  mtu: number;
  createdMs: number;
}

export interface HostRec {
  name: string;
  underlayIp: string;
  credentialHash: string;
  agentVersion: string;
  joinedMs: number;
  /** SHA-256 fingerprint of the host's current client certificate (TLS); '' when none */
  certFingerprint: string;
  /** SHA-256 of that certificate's public key (TLS): a join retried after a lost reply must bring the same key; '' when none */
  keyFingerprint: string;
}

/** One /hostPrefixLen slice of a network: held by a host, or free (quarantined once released). */
export interface SliceRec {
  network: string;
  idx: number;
  host: string | null;
  /** the last host that held it (a re-joining host gets its slice back) */
  lastHost: string | null;
  /** when it was released; null while held */
  releasedMs: number | null;
}

export type TokenState = 'valid' | 'used' | 'revoked';

export interface TokenRec {
  id: string;
  secretHash: string;
  host: string;
  expiresMs: number;
  state: TokenState;
  createdMs: number;
}
