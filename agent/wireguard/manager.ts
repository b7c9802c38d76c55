// Encryption on this host (the coordinator's --encryption wireguard): one loop that makes the
// WireGuard device and the path GRE takes through it, keeps this host's key (a new one when
// coordctl rotate-keys asks: switched here first, then published, so peers never hold a key
// this host no longer has), and keeps the device's peers as the snapshot says. The bridge's
// tunnels wait for `ready` (fail closed: no GRE to a peer until WireGuard carries it).
import type { Runner } from '../../common/exec.js';
import type { Logger } from '../../common/log.js';
import { Loop } from '../loop.js';
import type { Snapshot } from '../model.js';
import type { WireguardDevice } from './device.js';
import { KeyFile, keyDecision, newKey, type WireguardKey } from './keys.js';
import { desiredWgPeers, diffWgPeers } from './peers.js';
import { ensureTransport } from './transport.js';
import type { WgPeerState } from './uapi.js';

export interface WireguardManagerOptions {
  device: WireguardDevice;
  keyFile: KeyFile;
  port: number;
  datapath: 'system' | 'netdev';
  ovsDb: string;
  underlayMtu: number;
  run: Runner;
  snapshot: () => Snapshot | undefined;
  publish: (publicKey: string, port: number, generation: number) => Promise<void>;
  /** ready changed: the bridge's tunnels follow */
  onReady: (ready: boolean) => void;
  log: Logger;
  /** a pass this often: repairs the device and refreshes the figures (handshakes, bytes) */
  refreshMs?: number;
}

/** how long a rotation waits after this host's peers changed */
const SETTLE_MS = 1000;
/** how long after switching keys this host publishes the new one (its own handshakes refused first) */
const ROTATE_PUBLISH_MS = 300;

export class WireguardManager {
  private readonly loop: Loop;
  private timer: NodeJS.Timeout | undefined;
  private key: WireguardKey | undefined;
  private transportFor = '';
  /** when the device's peers last changed (ms) */
  private peersChangedAt = 0;
  /** true while WireGuard carries this host's tunnels */
  ready = false;
  /** the device's peers at the last pass, by public key */
  peers = new Map<string, WgPeerState>();

  constructor(private readonly o: WireguardManagerOptions) {
    this.loop = new Loop({
      name: 'wireguard',
      log: o.log,
      pass: () => this.pass(),
      onError: (e) => {
        this.transportFor = '';
        this.setReady(false);
        o.log.error({ err: e.message }, 'WireGuard is not up: no tunnel is built (nothing leaves in cleartext)');
      },
      backoffMaxMs: 10_000,
    });
  }

  start(): void {
    this.timer = setInterval(() => this.loop.markDirty('refresh'), this.o.refreshMs ?? 10_000);
    this.loop.markDirty('start');
  }
  stop(): void {
    clearInterval(this.timer);
    this.loop.stop();
  }
  markDirty(reason: string): void {
    this.loop.markDirty(reason);
  }
  /** resolves once a pass that starts after this call has finished */
  nextPass(): Promise<void> {
    return this.loop.markDirtyAndWait('asked');
  }
  /** the peer host's WireGuard figures, if it is one of the device's peers */
  peerOf(host: string): WgPeerState | undefined {
    const p = this.o.snapshot()?.peers.find((x) => x.name === host);
    return p?.wireguard ? this.peers.get(p.wireguard.publicKey) : undefined;
  }

  /** a tunnel's WireGuard figures for the coordinator's status (none without encryption) */
  figuresOf(host: string): Partial<Record<'wireguardHandshakeMs' | 'wireguardRxBytes' | 'wireguardTxBytes', number>> {
    const p = this.peerOf(host);
    return p
      ? { wireguardHandshakeMs: p.lastHandshakeMs, wireguardRxBytes: p.rxBytes, wireguardTxBytes: p.txBytes }
      : {};
  }

  /** for the metrics: up while encryption is on, and each peer host's figures */
  figures(): {
    up: boolean | undefined;
    peers: { peer: string; lastHandshakeMs: number; rxBytes: number; txBytes: number }[];
  } {
    const s = this.o.snapshot();
    if (!s?.encryption) return { up: undefined, peers: [] };
    const peers = s.peers.flatMap((p) => {
      const w = p.wireguard && this.peers.get(p.wireguard.publicKey);
      return w ? [{ peer: p.name, lastHandshakeMs: w.lastHandshakeMs, rxBytes: w.rxBytes, txBytes: w.txBytes }] : [];
    });
    return { up: this.ready, peers };
  }

  private setReady(r: boolean): void {
    if (this.ready === r) return;
    this.ready = r;
    this.o.onReady(r);
  }

  private async pass(): Promise<void> {
    const s = this.o.snapshot();
    const enc = s?.encryption;
    if (!s || !enc) {
      this.setReady(false);
      return;
    }
    if (!enc.tunnelIp) throw new Error('the coordinator asks for an encryption this agent does not know');
    const d = this.o.device;
    await d.ensure();
    const onDisk = this.key ?? this.o.keyFile.read();
    // a first key, made before anything else; a rotation's new key only once the peers are current
    if (!onDisk) {
      this.key = newKey(enc.rotation);
      this.o.keyFile.write(this.key);
      this.o.log.info({ generation: this.key.generation, key: this.key.publicKey }, 'WireGuard key made');
    } else this.key = onDisk;
    let dev = await d.get();
    if (dev.publicKey !== this.key.publicKey || dev.listenPort !== this.o.port)
      await d.set({ privateKey: this.key.privateKey, listenPort: this.o.port });
    const spec = `${enc.tunnelIp}|${enc.tunnelCidr}`;
    if (this.transportFor !== spec) {
      await ensureTransport(this.o.run, {
        device: d.name,
        tunnelIp: enc.tunnelIp,
        tunnelCidr: enc.tunnelCidr,
        // the underlay's, not less: containers get MTU underlay - 60 - 42 (nothing they send
        // is fragmented), but a container started before encryption was turned on keeps its
        // larger MTU; its biggest packets are then fragmented outside WireGuard instead of dropped
        mtu: this.o.underlayMtu,
        datapath: this.o.datapath,
        ovsDb: this.o.ovsDb,
      });
      this.transportFor = spec;
    }
    const want = desiredWgPeers(s.peers, s.host);
    const change = diffWgPeers(dev.peers, want);
    if (change) {
      await d.set(change);
      this.o.log.info(
        { add: change.peers?.map((p) => p.endpoint) ?? [], remove: change.removePeers?.length ?? 0 },
        'WireGuard peers changed',
      );
      dev = await d.get();
      this.peersChangedAt = Date.now();
    }
    this.peers = new Map(dev.peers.map((p) => [p.publicKey, p]));
    this.setReady(true);
    if (keyDecision(this.key, enc.rotation) === 'new') {
      const wait = this.peersChangedAt + SETTLE_MS - Date.now();
      if (wait > 0) {
        // a peer's key just changed here: let its handshake finish before this host switches
        // (switching at once would drop what was queued for it), then rotate
        setTimeout(() => this.loop.markDirty('rotation'), wait).unref();
        return;
      }
      // switched here first: a peer that learns the new key can reach us with it at once
      this.key = newKey(Math.max(enc.rotation, this.key.generation));
      this.o.keyFile.write(this.key);
      await d.set({ privateKey: this.key.privateKey });
      // a handshake to every peer now (a keepalive turned on anew sends one): each is refused
      // while the peer holds the old key, and this host then waits 5 s before it tries again,
      // so the handshake that works is the peer's, once it has the new key. Handshakes from both
      // sides at once (ours arriving just after the peer learnt the key) stalled a pair for a
      // second in the lab; published after ROTATE_PUBLISH_MS, ours have been refused by then.
      const peers = want.map(({ host: _h, ...p }) => p);
      await d.set({ peers: peers.map((p) => ({ ...p, persistentKeepalive: 0 })) });
      await d.set({ peers });
      await new Promise((r) => setTimeout(r, ROTATE_PUBLISH_MS));
      this.o.log.info({ generation: this.key.generation, key: this.key.publicKey }, 'new WireGuard key');
    }
    const key = this.key;
    // published after the switch: a peer that learns the new key can reach us with it at once
    if (enc.publicKey !== key.publicKey || enc.generation !== key.generation) {
      await this.o.publish(key.publicKey, this.o.port, key.generation);
      this.o.log.info({ generation: key.generation }, 'WireGuard key published');
    }
  }
}
