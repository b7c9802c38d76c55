// The WireGuard device: made if it is missing (a kernel device, else wireguard-go), then read
// and changed. A userspace device is spoken to over its UAPI socket in process; a kernel
// device through `wg` (wireguard-tools), which speaks netlink to it. wireguard-go runs
// detached: an agent restart (even kill -9) leaves it and its sessions alone, as OVS is.
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import { ExecError, which, type Runner } from '../../common/exec.js';
import { keyFromHex } from '../../common/wireguard.js';
import { UAPI_DIR, errnoOf, parseGet, renderSet, uapiRequest, type WgDeviceState, type WgSet } from './uapi.js';
import { publicKeyOf } from './keys.js';

export type WireguardImpl = 'auto' | 'kernel' | 'userspace';

export interface WireguardDevice {
  readonly name: string;
  /** the device exists and answers: made if needed; throws with the reason when it cannot be */
  ensure(): Promise<'kernel' | 'userspace'>;
  get(): Promise<WgDeviceState>;
  set(s: WgSet): Promise<void>;
}

const socketAnswers = (path: string) =>
  new Promise<boolean>((resolve) => {
    const s = net.connect(path);
    s.on('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.on('error', () => resolve(false));
  });

export class SystemWireguardDevice implements WireguardDevice {
  private impl: 'kernel' | 'userspace' | undefined;

  constructor(
    readonly name: string,
    private readonly o: { run: Runner; impl: WireguardImpl; logFile: string },
  ) {}

  get socket(): string {
    return `${UAPI_DIR}/${this.name}.sock`;
  }

  async ensure(): Promise<'kernel' | 'userspace'> {
    if (this.o.impl !== 'kernel' && (await socketAnswers(this.socket))) return (this.impl = 'userspace');
    const exists = (await this.o.run(['ip', 'link', 'show', 'dev', this.name], { okCodes: [0, 1] })).exitCode === 0;
    if (exists && this.o.impl !== 'userspace') return (this.impl = 'kernel');
    if (this.o.impl !== 'userspace') {
      const r = await this.o.run(['ip', 'link', 'add', 'dev', this.name, 'type', 'wireguard'], { okCodes: [0, 1, 2] });
      if (r.exitCode === 0) return (this.impl = 'kernel');
      if (this.o.impl === 'kernel')
        throw new Error(`no kernel WireGuard (ip link add type wireguard: ${r.stderr.trim().split('\n')[0]})`);
    }
    const bin = await which('wireguard-go');
    if (!bin) throw new Error('no kernel WireGuard and no wireguard-go (Debian package wireguard-go)');
    fs.mkdirSync(UAPI_DIR, { recursive: true });
    const log = fs.openSync(this.o.logFile, 'a');
    const child = spawn(bin, ['-f', this.name], {
      detached: true,
      stdio: ['ignore', log, log],
      env: { ...process.env, LOG_LEVEL: process.env.GREMESH_WIREGUARD_LOG ?? 'error' },
    });
    fs.closeSync(log);
    child.unref();
    for (let i = 0; i < 100; i++) {
      if (await socketAnswers(this.socket)) return (this.impl = 'userspace');
      if (child.exitCode !== null) break;
      await new Promise((r) => setTimeout(r, 30));
    }
    throw new Error(`wireguard-go ${this.name} did not come up (see ${this.o.logFile})`);
  }

  async get(): Promise<WgDeviceState> {
    if (this.impl === 'kernel') return this.getKernel();
    const g = parseGet(await uapiRequest(this.socket, 'get=1\n\n'));
    if (g.errno !== 0) throw new Error(`WireGuard ${this.name}: get failed (errno ${g.errno})`);
    return {
      publicKey: g.privateKeyHex ? publicKeyOf(keyFromHex(g.privateKeyHex)) : '',
      listenPort: g.listenPort,
      peers: g.peers,
    };
  }

  async set(s: WgSet): Promise<void> {
    if (this.impl === 'kernel') return this.setKernel(s);
    const errno = errnoOf(await uapiRequest(this.socket, renderSet(s)));
    if (errno !== 0) throw new Error(`WireGuard ${this.name}: set refused (errno ${errno})`);
  }

  /** `wg show NAME dump`: the interface line, then one line per peer (tab-separated) */
  private async getKernel(): Promise<WgDeviceState> {
    const out = (await this.o.run(['wg', 'show', this.name, 'dump'])).stdout.trim().split('\n');
    const [, pub, port] = (out[0] ?? '').split('\t');
    return {
      publicKey: pub && pub !== '(none)' ? pub : '',
      listenPort: Number(port ?? 0),
      peers: out.slice(1).map((l) => {
        const [publicKey, , endpoint, ips, hs, rx, tx, ka] = l.split('\t');
        return {
          publicKey: publicKey!,
          endpoint: endpoint === '(none)' ? '' : endpoint!,
          allowedIps: ips && ips !== '(none)' ? ips.split(',') : [],
          lastHandshakeMs: Number(hs ?? 0) * 1000,
          rxBytes: Number(rx ?? 0),
          txBytes: Number(tx ?? 0),
          persistentKeepalive: ka === 'off' ? 0 : Number(ka ?? 0),
        };
      }),
    };
  }

  private async setKernel(s: WgSet): Promise<void> {
    const argv = ['wg', 'set', this.name];
    if (s.privateKey !== undefined) argv.push('private-key', '/dev/stdin');
    if (s.listenPort !== undefined) argv.push('listen-port', String(s.listenPort));
    for (const k of s.removePeers ?? []) argv.push('peer', k, 'remove');
    for (const p of s.peers ?? [])
      argv.push(
        'peer',
        p.publicKey,
        'endpoint',
        p.endpoint,
        'allowed-ips',
        p.allowedIps.join(','),
        'persistent-keepalive',
        String(p.persistentKeepalive || 'off'),
      );
    try {
      await this.o.run(argv, s.privateKey !== undefined ? { input: s.privateKey + '\n' } : {});
    } catch (e) {
      throw new Error(`wg set ${this.name}: ${e instanceof ExecError ? e.message.split('\n')[0] : String(e)}`);
    }
  }
}
