// WireGuard's cross-platform userspace API (wireguard.com/xplatform), spoken in process
// over the device's unix socket (/var/run/wireguard/NAME.sock, served by wireguard-go):
// `get=1` reads the device, `set=1` changes it. Keys go in hex on this wire.
import * as net from 'node:net';
import { keyFromHex, keyToHex } from '../../common/wireguard.js';

export const UAPI_DIR = '/var/run/wireguard';

export interface WgPeerState {
  publicKey: string;
  endpoint: string;
  allowedIps: string[];
  /** unix ms of the last handshake; 0 never */
  lastHandshakeMs: number;
  rxBytes: number;
  txBytes: number;
  persistentKeepalive: number;
}
export interface WgDeviceState {
  /** '' when no private key is set */
  publicKey: string;
  listenPort: number;
  peers: WgPeerState[];
}

/** Pure: a `get=1` answer read into the device's state (the public key is derived by the caller). */
export function parseGet(text: string): {
  privateKeyHex: string;
  listenPort: number;
  peers: WgPeerState[];
  errno: number;
} {
  let privateKeyHex = '';
  let listenPort = 0;
  let errno = -1;
  const peers: WgPeerState[] = [];
  let p: WgPeerState | undefined;
  let sec = 0;
  for (const line of text.split('\n')) {
    const i = line.indexOf('=');
    if (i < 0) continue;
    const k = line.slice(0, i);
    const v = line.slice(i + 1);
    if (k === 'public_key') {
      p = {
        publicKey: keyFromHex(v),
        endpoint: '',
        allowedIps: [],
        lastHandshakeMs: 0,
        rxBytes: 0,
        txBytes: 0,
        persistentKeepalive: 0,
      };
      peers.push(p);
    } else if (k === 'private_key') privateKeyHex = v;
    else if (k === 'listen_port') listenPort = Number(v);
    else if (k === 'errno') errno = Number(v);
    else if (p) {
      if (k === 'endpoint') p.endpoint = v;
      else if (k === 'allowed_ip') p.allowedIps.push(v);
      else if (k === 'last_handshake_time_sec') sec = Number(v);
      else if (k === 'last_handshake_time_nsec') p.lastHandshakeMs = sec * 1000 + Math.floor(Number(v) / 1e6);
      else if (k === 'rx_bytes') p.rxBytes = Number(v);
      else if (k === 'tx_bytes') p.txBytes = Number(v);
      else if (k === 'persistent_keepalive_interval') p.persistentKeepalive = Number(v);
    }
  }
  return { privateKeyHex, listenPort, peers, errno };
}

/** What to change on a device: one `set=1` request. */
export interface WgSet {
  privateKey?: string;
  listenPort?: number;
  removePeers?: string[];
  /** added or updated; a new peer with a keepalive sends one at once (a handshake now, not on first traffic) */
  peers?: { publicKey: string; endpoint: string; allowedIps: string[]; persistentKeepalive: number }[];
}

/** Pure: the `set=1` request text. */
export function renderSet(s: WgSet): string {
  const l = ['set=1'];
  if (s.privateKey !== undefined) l.push(`private_key=${keyToHex(s.privateKey)}`);
  if (s.listenPort !== undefined) l.push(`listen_port=${s.listenPort}`);
  for (const k of s.removePeers ?? []) l.push(`public_key=${keyToHex(k)}`, 'remove=true');
  for (const p of s.peers ?? []) {
    l.push(`public_key=${keyToHex(p.publicKey)}`, `endpoint=${p.endpoint}`, 'replace_allowed_ips=true');
    for (const a of p.allowedIps) l.push(`allowed_ip=${a}`);
    l.push(`persistent_keepalive_interval=${p.persistentKeepalive}`);
  }
  return l.join('\n') + '\n\n';
}

/** One request on the device's socket; resolves with the answer up to its blank line. */
export function uapiRequest(socketPath: string, request: string, timeoutMs = 3000): Promise<string> {
  return new Promise((resolve, reject) => {
    const sock = net.connect(socketPath);
    let buf = '';
    const timer = setTimeout(() => {
      sock.destroy();
      reject(new Error(`${socketPath}: no answer in ${timeoutMs} ms`));
    }, timeoutMs);
    sock.setEncoding('utf8');
    sock.on('connect', () => sock.write(request));
    sock.on('data', (d: string) => {
      buf += d;
      if (buf.endsWith('\n\n')) {
        clearTimeout(timer);
        sock.end();
        resolve(buf);
      }
    });
    sock.on('error', (e) => {
      clearTimeout(timer);
      reject(new Error(`${socketPath}: ${e.message}`));
    });
    sock.on('close', () => {
      clearTimeout(timer);
      if (!buf.endsWith('\n\n')) reject(new Error(`${socketPath}: closed before the answer ended`));
    });
  });
}

export function errnoOf(answer: string): number {
  const m = /(?:^|\n)errno=(-?\d+)/.exec(answer);
  return m ? Number(m[1]) : -1;
}
