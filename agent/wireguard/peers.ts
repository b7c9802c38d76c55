// Pure: the WireGuard peers this host should have (one per peer host that published a key:
// its underlay address and port as endpoint, its tunnel IP as the only allowed IP) and the
// one `set` that gets the device there. Peers are changed in place, never replaced as a
// whole (replace_peers would end every session): only a peer whose key went is removed.
import type { PeerSpec } from '../model.js';
import type { WgPeerState, WgSet } from './uapi.js';

/** a keepalive every 25 s (WireGuard's advice behind NAT); set on a new peer it also starts a handshake at once */
export const KEEPALIVE_S = 25;

export interface DesiredWgPeer {
  publicKey: string;
  endpoint: string;
  allowedIps: string[];
  persistentKeepalive: number;
  /** the peer host's name (for status and metrics) */
  host: string;
}

export function desiredWgPeers(peers: PeerSpec[], self: string): DesiredWgPeer[] {
  return peers
    .filter((p) => p.name !== self && p.wireguard)
    .map((p) => ({
      publicKey: p.wireguard!.publicKey,
      endpoint: `${p.underlayIp}:${p.wireguard!.port}`,
      allowedIps: [`${p.wireguard!.tunnelIp}/32`],
      persistentKeepalive: KEEPALIVE_S,
      host: p.name,
    }))
    .sort((a, b) => a.host.localeCompare(b.host));
}

/** Pure: what to change so the device's peers are `want`; undefined when nothing. */
export function diffWgPeers(cur: WgPeerState[], want: DesiredWgPeer[]): WgSet | undefined {
  const wanted = new Set(want.map((w) => w.publicKey));
  const byKey = new Map(cur.map((c) => [c.publicKey, c]));
  const removePeers = cur.filter((c) => !wanted.has(c.publicKey)).map((c) => c.publicKey);
  const peers = want
    .filter((w) => {
      const c = byKey.get(w.publicKey);
      return (
        !c ||
        c.endpoint !== w.endpoint ||
        c.persistentKeepalive !== w.persistentKeepalive ||
        [...c.allowedIps].sort().join(',') !== [...w.allowedIps].sort().join(',')
      );
    })
    .map(({ host: _h, ...p }) => p);
  if (!removePeers.length && !peers.length) return undefined;
  return { ...(removePeers.length ? { removePeers } : {}), ...(peers.length ? { peers } : {}) };
}
