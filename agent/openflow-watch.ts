// Knowing, without a process a second, when ovs-vswitchd lost our flows: a persistent
// OpenFlow connection to the bridge's management socket (HELLO, then echo replies; no
// flow traffic). ovs-vswitchd keeps flows only in its memory, so when that connection
// drops and comes back (vswitchd restarted, or the bridge was made again), the flows
// must be installed again in full: `onReconnect` says so. Antrea and ovn-controller
// replay their flows on the same signal.
import * as net from 'node:net';
import type { Logger } from '../common/log.js';

const OFP_VERSION_1_4 = 0x05;
export const OFPT_HELLO = 0;
export const OFPT_ECHO_REQUEST = 2;
export const OFPT_ECHO_REPLY = 3;

/** Pure: an OpenFlow message header (+ body) */
export function ofMessage(type: number, xid: number, body = Buffer.alloc(0), version = OFP_VERSION_1_4): Buffer {
  const h = Buffer.alloc(8);
  h.writeUInt8(version, 0);
  h.writeUInt8(type, 1);
  h.writeUInt16BE(8 + body.length, 2);
  h.writeUInt32BE(xid, 4);
  return Buffer.concat([h, body]);
}

/** Pure: whole messages out of a byte stream; the rest waits for more bytes. */
export function splitMessages(buf: Buffer): { messages: { type: number; xid: number; msg: Buffer }[]; rest: Buffer } {
  const messages: { type: number; xid: number; msg: Buffer }[] = [];
  let off = 0;
  while (buf.length - off >= 8) {
    const len = buf.readUInt16BE(off + 2);
    if (len < 8 || buf.length - off < len) break;
    const msg = buf.subarray(off, off + len);
    messages.push({ type: msg.readUInt8(1), xid: msg.readUInt32BE(4), msg });
    off += len;
  }
  return { messages, rest: buf.subarray(off) };
}

export interface OpenflowWatchOptions {
  /** the bridge's management socket (unix path) */
  socket: string;
  log: Logger;
  /** connected again after the connection was lost: the switch may have lost its flows */
  onReconnect: () => void;
  retryMs?: number;
}

export class OpenflowWatch {
  private sock: net.Socket | undefined;
  private stopped = false;
  private timer: NodeJS.Timeout | undefined;
  private everConnected = false;
  private lostSinceConnect = false;

  constructor(private readonly o: OpenflowWatchOptions) {}

  start(): void {
    this.connect();
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.sock?.destroy();
  }

  private retry(): void {
    if (this.stopped || this.timer) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.connect();
    }, this.o.retryMs ?? 500);
  }

  private connect(): void {
    if (this.stopped) return;
    const sock = net.connect(this.o.socket);
    this.sock = sock;
    let buf: Buffer = Buffer.alloc(0);
    let helloSeen = false;
    sock.on('connect', () => sock.write(ofMessage(OFPT_HELLO, 1)));
    sock.on('data', (d: Buffer) => {
      const { messages, rest } = splitMessages(Buffer.concat([buf, d]));
      buf = rest;
      for (const m of messages) {
        if (m.type === OFPT_HELLO && !helloSeen) {
          helloSeen = true;
          if (this.everConnected && this.lostSinceConnect) {
            this.o.log.info({ socket: this.o.socket }, 'ovs-vswitchd answers again: installing every flow again');
            this.o.onReconnect();
          }
          this.everConnected = true;
          this.lostSinceConnect = false;
        } else if (m.type === OFPT_ECHO_REQUEST) {
          const reply = Buffer.from(m.msg);
          reply.writeUInt8(OFPT_ECHO_REPLY, 1);
          sock.write(reply);
        }
      }
    });
    sock.on('error', () => {});
    sock.on('close', () => {
      if (this.sock !== sock) return;
      if (this.everConnected && !this.lostSinceConnect) {
        this.lostSinceConnect = true;
        this.o.log.debug({ socket: this.o.socket }, 'OpenFlow connection to ovs-vswitchd lost');
      }
      this.retry();
    });
  }
}
