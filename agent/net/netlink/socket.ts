// NetlinkSocket: a thin synchronous driver of an rtnetlink socket through libc (koffi):
// send a request, read its ACK or answer (SO_RCVTIMEO bounds a missing reply), enter a
// process's network namespace just long enough to open sockets there, and the one
// ethtool ioctl we need (TX checksum offload off).
import koffi from 'koffi';
import { NetlinkError, NLMSG, parseReplies, type Reply } from './codec.js';

const AF_NETLINK = 16;
const AF_INET = 2;
const SOCK_RAW = 3;
const SOCK_DGRAM = 2;
const SOCK_CLOEXEC = 0o2000000;
const NETLINK_ROUTE = 0;
const SOL_SOCKET = 1;
const SO_RCVTIMEO = 20;
const O_RDONLY_CLOEXEC = 0o2000000;
const CLONE_NEWNET = 0x40000000;
const SIOCETHTOOL = 0x8946;
const ETHTOOL_STXCSUM = 0x17;

interface Libc {
  socket: (d: number, t: number, p: number) => number;
  setsockopt: (fd: number, l: number, n: number, v: Buffer, len: number) => number;
  sendto: (fd: number, b: Buffer, len: number, fl: number, a: Buffer, alen: number) => number;
  recv: (fd: number, b: Buffer, len: number, fl: number) => number;
  close: (fd: number) => number;
  open: (p: string, fl: number) => number;
  setns: (fd: number, t: number) => number;
  ioctl: (fd: number, req: number, arg: Buffer) => number;
  write: (fd: number, b: Buffer, len: number) => number;
}

let libc: Libc | undefined;
function lib(): Libc {
  if (libc) return libc;
  const l = koffi.load('libc.so.6');
  libc = {
    socket: l.func('int socket(int, int, int)'),
    setsockopt: l.func('int setsockopt(int, int, int, void *, uint32_t)'),
    sendto: l.func('intptr_t sendto(int, void *, size_t, int, void *, uint32_t)'),
    recv: l.func('intptr_t recv(int, _Out_ void *, size_t, int)'),
    close: l.func('int close(int)'),
    open: l.func('int open(const char *, int)'),
    setns: l.func('int setns(int, int)'),
    ioctl: l.func('int ioctl(int, unsigned long, void *)'),
    write: l.func('intptr_t write(int, void *, size_t)'),
  };
  return libc;
}

function check(op: string, r: number): number {
  if (r < 0) throw new NetlinkError(op, koffi.errno());
  return r;
}

function openNetlink(): number {
  const c = lib();
  const fd = check('socket(AF_NETLINK)', c.socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE));
  const tv = Buffer.alloc(16);
  tv.writeBigInt64LE(2n, 0); // 2 s: the kernel answers at once, this only bounds a bug
  if (c.setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, tv, 16) < 0) {
    const e = koffi.errno();
    c.close(fd);
    throw new NetlinkError('setsockopt(SO_RCVTIMEO)', e);
  }
  return fd;
}

/**
 * Run open() inside the network namespace of pid and come back at once: no await in
 * between, so no other JS runs while this thread is in the other namespace. Sockets
 * keep the namespace they were created in.
 */
export function inNetns<T>(pid: number, open: () => T): T {
  const c = lib();
  const self = check('open(/proc/thread-self/ns/net)', c.open('/proc/thread-self/ns/net', O_RDONLY_CLOEXEC));
  try {
    const target = check(`open(/proc/${pid}/ns/net)`, c.open(`/proc/${pid}/ns/net`, O_RDONLY_CLOEXEC));
    try {
      check(`setns(${pid})`, c.setns(target, CLONE_NEWNET));
    } finally {
      c.close(target);
    }
    let out: T | undefined;
    let err: unknown;
    try {
      out = open();
    } catch (e) {
      err = e;
    }
    // if this fails the thread is stranded in the container's namespace: nothing else is safe
    if (c.setns(self, CLONE_NEWNET) < 0) throw new NetlinkError('setns(back)', koffi.errno());
    if (err !== undefined) throw err;
    return out as T;
  } finally {
    c.close(self);
  }
}

const O_WRONLY_CLOEXEC = 0o1 | 0o2000000;

/**
 * Write a sysctl of pid's network namespace (/proc/sys/net/... resolves to the namespace of
 * the thread that opens it): `ipv6/conf/eth0/disable_ipv6` = "0". In this process, no `sysctl`.
 */
export function writeSysctlIn(pid: number, key: string, value: string): void {
  const c = lib();
  inNetns(pid, () => {
    const fd = check(`open(${key})`, c.open(`/proc/sys/net/${key}`, O_WRONLY_CLOEXEC));
    try {
      const b = Buffer.from(`${value}\n`);
      check(`write(${key})`, c.write(fd, b, b.length));
    } finally {
      c.close(fd);
    }
  });
}

export class NetlinkSocket {
  private seq = Math.floor(Math.random() * 0x7fffffff);
  private readonly buf = Buffer.alloc(32768);
  private readonly dest = Buffer.alloc(12);
  private inet = -1;

  private constructor(private readonly fd: number) {
    this.dest.writeUInt16LE(AF_NETLINK, 0);
  }

  /** an rtnetlink socket in this thread's current namespace */
  static open(): NetlinkSocket {
    return new NetlinkSocket(openNetlink());
  }

  /** an rtnetlink socket (with an AF_INET socket for ioctls) in pid's network namespace */
  static openIn(pid: number): NetlinkSocket {
    return inNetns(pid, () => {
      const s = NetlinkSocket.open();
      try {
        s.inetFd();
      } catch (e) {
        s.close();
        throw e;
      }
      return s;
    });
  }

  nextSeq(): number {
    this.seq = (this.seq + 1) & 0x7fffffff;
    return this.seq;
  }

  /** send one request built with seq, return the replies up to its ACK/answer; errors throw */
  request(op: string, build: (seq: number) => Buffer): Reply[] {
    const c = lib();
    const seq = this.nextSeq();
    const msg = build(seq);
    check(`${op}: sendto`, c.sendto(this.fd, msg, msg.length, 0, this.dest, 12));
    const got: Reply[] = [];
    for (;;) {
      const n = check(`${op}: recv`, c.recv(this.fd, this.buf, this.buf.length, 0));
      for (const r of parseReplies(this.buf.subarray(0, n))) {
        if (r.seq !== seq) continue; // a stale answer of an earlier, timed-out request
        if (r.type === NLMSG.ERROR) {
          if (r.errno) throw new NetlinkError(op, r.errno);
          return got;
        }
        if (r.type === NLMSG.DONE) return got;
        got.push(r);
        return got; // a GET by name is answered by one message
      }
    }
  }

  private inetFd(): number {
    if (this.inet < 0) this.inet = check('socket(AF_INET)', lib().socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
    return this.inet;
  }

  /** `ethtool -K dev tx off`: ETHTOOL_STXCSUM 0 (clears every tx-checksum-* feature) */
  txChecksumOff(dev: string): void {
    const c = lib();
    const ev = koffi.alloc('uint32_t', 2);
    try {
      koffi.encode(ev, 'uint32_t', ETHTOOL_STXCSUM);
      koffi.encode(ev, 4, 'uint32_t', 0);
      const ifr = Buffer.alloc(40);
      if (Buffer.byteLength(dev) > 15) throw new Error(`interface name too long: ${dev}`);
      ifr.write(dev, 0);
      ifr.writeBigUInt64LE(koffi.address(ev), 16);
      check(`ethtool ${dev} tx off`, c.ioctl(this.inetFd(), SIOCETHTOOL, ifr));
    } finally {
      koffi.free(ev);
    }
  }

  close(): void {
    const c = lib();
    c.close(this.fd);
    if (this.inet >= 0) c.close(this.inet);
    this.inet = -1;
  }
}
