// Encryption between hosts (--encryption wireguard): each host publishes its own WireGuard
// public key (the private key never leaves it); the coordinator keeps it on the host's
// record (one store transaction, so it persists and revisions on memory, SQLite and etcd
// alike) and hands it out with the peer list, beside the peer's tunnel IP (tunnelIpOf).
// coordctl rotate-keys asks hosts for new keys: a host switches to its new key first, then
// publishes it; its peers replace the old one when the change reaches them.
import { isWireguardKey, type Encryption as EncryptionMode } from '../common/wireguard.js';
import { invalid, notFound, precondition } from './errors.js';
import type { HostRec } from './model.js';
import type { CoordState } from './state.js';
import { trunc } from './validate.js';

/** what a host's DesiredState carries of its own encryption */
export interface WireguardSelfView {
  tunnelIp: string;
  tunnelCidr: string;
  publicKey: string;
  rotation: number;
  generation: number;
}

/** Pure: the host whose queued rotation goes next (by name), if any. */
export function nextQueued(hosts: HostRec[]): HostRec | undefined {
  return hosts.filter((h) => h.wireguard?.queued).sort((a, b) => a.name.localeCompare(b.name))[0];
}

/** Pure: host h asked for its new key now. */
export function startRotation(h: HostRec): HostRec {
  const w = h.wireguard!;
  const { queued: _q, ...rest } = w;
  return { ...h, wireguard: { ...rest, rotation: Math.max(w.rotation, w.generation) + 1 } };
}

export class Encryption {
  constructor(private readonly s: CoordState) {}

  get mode(): EncryptionMode {
    return this.s.encryption;
  }

  selfOf(name: string): WireguardSelfView | undefined {
    const h = this.s.hostMap.get(name);
    const tunnelIp = h && this.s.tunnelIpOf(h);
    if (!h || !tunnelIp) return undefined;
    return {
      tunnelIp,
      tunnelCidr: this.s.tunnelCidr,
      publicKey: h.wireguard?.publicKey ?? '',
      rotation: h.wireguard?.rotation ?? 0,
      generation: h.wireguard?.generation ?? 0,
    };
  }

  /**
   * Host `name` (the caller, already authenticated as that host) publishes its key. Refused:
   * not a WireGuard key, a key another host holds, a port out of range, a coordinator without
   * encryption. The same key again changes nothing.
   */
  async setKey(name: string, publicKey: string, port: number, generation: number): Promise<void> {
    const s = this.s;
    if (s.encryption !== 'wireguard')
      throw precondition('this coordinator runs without encryption (--encryption none): no key to publish');
    if (!isWireguardKey(publicKey))
      throw invalid(`"${trunc(publicKey)}" is not a WireGuard public key (base64 of 32 bytes, as wg pubkey prints it)`);
    if (!Number.isInteger(port) || port < 1 || port > 65535) throw invalid(`WireGuard port ${port} is not 1..65535`);
    const same = (h: HostRec | undefined) =>
      h?.wireguard?.publicKey === publicKey && h.wireguard.port === port && h.wireguard.generation === generation;
    if (!s.store.shared && same(s.hostMap.get(name))) return;
    await s.change('wireguard key', (t) => {
      const h = t.host(name);
      if (!h) throw notFound(`no host named "${trunc(name)}"`);
      const other = t.hosts().find((x) => x.name !== name && x.wireguard?.publicKey === publicKey);
      if (other) throw invalid(`WireGuard public key ${publicKey} is already host ${other.name}'s`);
      if (same(h)) return { result: undefined, upserts: [], removes: [] };
      const w = { publicKey, port, generation, rotation: h.wireguard?.rotation ?? 0 };
      const wasRotating = !h.wireguard?.queued && (h.wireguard?.rotation ?? 0) > (h.wireguard?.generation ?? 0);
      t.putHost({ ...h, wireguard: h.wireguard?.queued ? { ...w, queued: true } : w });
      // this host's rotation done: the next queued one starts
      const next = wasRotating && generation >= w.rotation ? nextQueued(t.hosts()) : undefined;
      if (next) t.putHost(startRotation(next));
      return { result: undefined, upserts: next ? [name, next.name] : [name], removes: [] };
    });
    s.log.info({ host: name, key: publicKey, generation }, 'WireGuard key published');
    s.events.add({
      timeMs: s.now(),
      kind: 'key-published',
      host: name,
      peer: '',
      detail: `WireGuard key ${publicKey.slice(0, 8)}… (generation ${generation})`,
    });
  }

  /** coordctl rotate-keys [HOST]: every named host (all when '') is asked for a new key. */
  async rotate(host: string): Promise<string[]> {
    const s = this.s;
    if (s.encryption !== 'wireguard')
      throw precondition('this coordinator runs without encryption (--encryption none): no keys to rotate');
    if (host && !s.hostMap.has(host)) throw notFound(`no host named "${trunc(host)}"`);
    // one host at a time: a host switches, its peers follow, then the next one (two hosts
    // switching at once would each drop what it queued for the other's old key)
    const names = await s.change('rotate keys', (t) => {
      const hosts = t.hosts().filter((h) => !host || h.name === host);
      for (const h of hosts) {
        const w = h.wireguard ?? { publicKey: '', port: 0, generation: 0, rotation: 0 };
        if (!w.queued && w.rotation <= w.generation) t.putHost({ ...h, wireguard: { ...w, queued: true } });
      }
      const rotating = t
        .hosts()
        .some((h) => h.wireguard && !h.wireguard.queued && h.wireguard.rotation > h.wireguard.generation);
      const next = rotating ? undefined : nextQueued(t.hosts());
      if (next) t.putHost(startRotation(next));
      const names = hosts.map((h) => h.name);
      return { result: names, upserts: next ? [next.name] : [], removes: [] };
    });
    s.log.info({ hosts: names }, 'WireGuard key rotation asked');
    return names;
  }
}
