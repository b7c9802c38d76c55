// A persistent OpenFlow 1.4 connection to the bridge's management socket: the way flow
// changes reach ovs-vswitchd without a process (one atomic bundle per change), and the
// way the agent learns, without a process a second, that ovs-vswitchd lost its flows:
// it keeps them only in memory, so when this connection drops and comes back
// (vswitchd restarted, or the bridge was made again) every flow must be installed
// again: `onReconnect` says so. Antrea and ovn-controller replay flows on the same signal.
import * as net from 'node:net';
import { Backoff } from '../../../common/backoff.js';
import type { Logger } from '../../../common/log.js';
import {
  bundleAdd,
  bundleControl,
  describeError,
  flowMod,
  ofMessage,
  OFPBCT,
  OFPT,
  OFP_VERSION,
  splitMessages,
} from './codec.js';
import type { Flow } from '../flows/flow.js';

export interface OpenflowConnectionOptions {
  /** the bridge's management socket (unix path) */
  socket: string;
  log: Logger;
  /** connected again after the connection was lost: the switch may have lost its flows */
  onReconnect: () => void;
  /** the first wait before connecting again (doubling, up to 4×) */
  retryMs?: number;
  /** how long a bundle may take before the connection is dropped (and made again) */
  timeoutMs?: number;
}

export class OpenflowConnection {
  private sock: net.Socket | undefined;
  private stopped = false;
  private timer: NodeJS.Timeout | undefined;
  private everConnected = false;
  private lostSinceConnect = false;
  private ready = false;
  private xid = 1;
  private readonly backoff: Backoff;
  private bundleId = 1;
  /** replies awaited, by xid */
  private waiting = new Map<number, (m: { type: number; msg: Buffer }) => void>();

  constructor(private readonly o: OpenflowConnectionOptions) {
    // the first retry after retryMs, then doubling up to 4×: a restarted ovs-vswitchd is found soon
    const min = o.retryMs ?? 500;
    this.backoff = new Backoff({ minMs: min, maxMs: min * 4 });
  }

  /** HELLO exchanged at OpenFlow 1.4: bundles can be sent */
  get connected(): boolean {
    return this.ready;
  }

  start(): void {
    this.connect();
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.sock?.destroy();
  }

  /**
   * Deletes (strict: table, priority, match) and adds these flows as one atomic, ordered
   * bundle, the way `ovs-ofctl --bundle` does: open, every message, a barrier (so a bad
   * message is known before anything is committed; then the bundle is discarded), commit.
   */
  async updateFlows(remove: Flow[], add: Flow[]): Promise<void> {
    const sock = this.sock;
    if (!sock || !this.ready) throw new Error('no OpenFlow connection to the bridge');
    const mods = [
      ...remove.map((k) => flowMod(k, 'delete_strict', this.nextXid())),
      ...add.map((f) => flowMod(f, 'add', this.nextXid())),
    ];
    const id = this.bundleId++;
    const open = this.nextXid();
    const barrier = this.nextXid();
    const xids = [open, ...mods.map((m) => m.readUInt32BE(4))];
    const errors: string[] = [];
    for (const x of xids)
      this.waiting.set(x, (m) => {
        if (m.type === OFPT.ERROR) errors.push(describeError(m.msg));
      });
    try {
      const barrierDone = this.reply(barrier);
      sock.write(
        Buffer.concat([
          bundleControl(id, OFPBCT.OPEN_REQUEST, open),
          ...mods.map((m) => bundleAdd(id, m)),
          ofMessage(OFPT.BARRIER_REQUEST, barrier),
        ]),
      );
      if ((await barrierDone).type === OFPT.ERROR) throw new Error('the OpenFlow connection to the bridge was lost');
      if (errors.length) {
        sock.write(bundleControl(id, OFPBCT.DISCARD_REQUEST, this.nextXid()));
        throw new Error(`flow bundle refused: ${errors[0]}`);
      }
      const commit = this.nextXid();
      const done = this.reply(commit);
      sock.write(bundleControl(id, OFPBCT.COMMIT_REQUEST, commit));
      const r = await done;
      if (r.type === OFPT.ERROR) throw new Error(`flow bundle not committed: ${describeError(r.msg)}`);
    } finally {
      for (const x of xids) this.waiting.delete(x);
    }
  }

  private nextXid(): number {
    this.xid = this.xid >= 0xfffffff0 ? 1 : this.xid + 1;
    return this.xid;
  }

  /** the reply (or error) to xid; a timeout drops the connection */
  private reply(xid: number): Promise<{ type: number; msg: Buffer }> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiting.delete(xid);
        reject(new Error('ovs-vswitchd did not answer on OpenFlow in time'));
        this.sock?.destroy();
      }, this.o.timeoutMs ?? 10_000);
      this.waiting.set(xid, (m) => {
        clearTimeout(timer);
        this.waiting.delete(xid);
        resolve(m);
      });
    });
  }

  private retry(): void {
    if (this.stopped || this.timer) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.connect();
    }, this.backoff.next());
  }

  private connect(): void {
    if (this.stopped) return;
    const sock = net.connect(this.o.socket);
    this.sock = sock;
    let buf: Buffer = Buffer.alloc(0);
    let helloSeen = false;
    sock.on('connect', () => sock.write(ofMessage(OFPT.HELLO, this.nextXid())));
    sock.on('data', (d: Buffer) => {
      const { messages, rest } = splitMessages(Buffer.concat([buf, d]));
      buf = rest;
      for (const m of messages) {
        if (m.type === OFPT.HELLO && !helloSeen) {
          helloSeen = true;
          this.backoff.reset();
          // the version both speak is the lower of the two HELLOs; bundles need 1.4
          this.ready = m.msg.readUInt8(0) >= OFP_VERSION;
          if (!this.ready) this.o.log.warn({ socket: this.o.socket }, 'the bridge does not speak OpenFlow 1.4');
          if (this.everConnected && this.lostSinceConnect) {
            this.o.log.info({ socket: this.o.socket }, 'ovs-vswitchd answers again: installing every flow again');
            this.o.onReconnect();
          }
          this.everConnected = true;
          this.lostSinceConnect = false;
        } else if (m.type === OFPT.ECHO_REQUEST) {
          const reply = Buffer.from(m.msg);
          reply.writeUInt8(OFPT.ECHO_REPLY, 1);
          sock.write(reply);
        } else this.waiting.get(m.xid)?.(m);
      }
    });
    sock.on('error', () => {});
    sock.on('close', () => {
      if (this.sock !== sock) return;
      this.ready = false;
      // whatever was awaited will not come
      for (const [x, f] of [...this.waiting]) {
        this.waiting.delete(x);
        f({ type: OFPT.ERROR, msg: Buffer.alloc(8) });
      }
      if (this.everConnected && !this.lostSinceConnect) {
        this.lostSinceConnect = true;
        this.o.log.debug({ socket: this.o.socket }, 'OpenFlow connection to ovs-vswitchd lost');
      }
      this.retry();
    });
  }
}
