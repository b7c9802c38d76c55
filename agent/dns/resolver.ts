// The names resolver: one per network on this host, on its gateway address, port 53 (UDP
// and TCP). The host's nftables send there what the network's containers (and Docker's
// embedded resolver, which forwards from the container's namespace) ask the host's upstream
// servers; it answers the network's names and relays everything else to those upstreams.
import * as dgram from 'node:dgram';
import * as net from 'node:net';
import { randomInt } from 'node:crypto';
import { cidrContains, parseCidr, parseIp, type Cidr } from '../../common/ipv4.js';
import type { Logger } from '../../common/log.js';
import type { LocalPort, Snapshot } from '../model.js';
import { buildAnswer, buildError, parseQuery, RCODE, replyHeader, withId } from './codec.js';
import { buildNameTable, decide, type NameTable } from './names.js';
import type { Upstream } from './upstreams.js';

export const DNS_PORT = 53;
/** queries per second one source may ask (twice that in a burst); answers go only to the network's own containers */
export const RATE_PER_SOURCE = 1000;

/** what happened to a query: answered here, relayed, refused (not from the network, malformed), over the rate */
export type DnsOutcome = 'answered' | 'forwarded' | 'nxdomain' | 'refused' | 'limited' | 'failed';

export interface ResolverOptions {
  upstreams: Upstream[];
  log: Logger;
  onQuery?: (network: string, outcome: DnsOutcome) => void;
  /** queries per second per source address, and the burst allowed above it */
  rate?: number;
  burst?: number;
  /** per upstream tried, before the next (then SERVFAIL) */
  forwardTimeoutMs?: number;
  /** the port to serve on (tests); default 53 */
  port?: number;
}

export interface ResolverGateway {
  network: string;
  ip: string;
  cidr: string;
}

/** Pure: a token bucket per source: whether one more query may pass now (the map is updated). */
export function takeToken(
  buckets: Map<string, { tokens: number; at: number }>,
  source: string,
  now: number,
  rate: number,
  burst: number,
): boolean {
  const b = buckets.get(source) ?? { tokens: burst, at: now };
  b.tokens = Math.min(burst, b.tokens + ((now - b.at) / 1000) * rate);
  b.at = now;
  buckets.set(source, b);
  if (b.tokens < 1) return false;
  b.tokens -= 1;
  return true;
}

interface Listener {
  gw: ResolverGateway;
  cidr: Cidr;
  udp: dgram.Socket;
  tcp: net.Server;
}

export class DnsResolver {
  private table: NameTable = new Map();
  private readonly listeners = new Map<string, Listener>();
  private readonly failedAt = new Map<string, number>();
  private readonly buckets = new Map<string, { tokens: number; at: number }>();
  private turn = 0;
  /** relayed queries in flight (ended on stop) */
  private readonly pending = new Set<(reply: Buffer | undefined) => void>();
  private readonly sweep: NodeJS.Timeout;

  constructor(private readonly o: ResolverOptions) {
    this.sweep = setInterval(() => this.buckets.clear(), 60_000);
    this.sweep.unref();
  }

  /** the names as of this pass; listeners opened on new gateways, closed on gone ones */
  update(s: Snapshot | undefined, gateways: ResolverGateway[], locals: LocalPort[]): void {
    this.table = buildNameTable(s, locals);
    const wanted = new Map(gateways.map((g) => [`${g.network}/${g.ip}`, g]));
    for (const [key, l] of this.listeners)
      if (!wanted.has(key)) {
        this.close(l);
        this.listeners.delete(key);
      }
    for (const [key, g] of wanted) {
      if (this.listeners.has(key)) continue;
      // a gateway address not up yet: try again at a later pass, at most once a second
      if (Date.now() - (this.failedAt.get(key) ?? 0) < 1000) continue;
      void this.listen(key, g);
    }
  }

  /** the names table (coordctl trace and tests ask what would be answered) */
  get names(): NameTable {
    return this.table;
  }

  stop(): void {
    clearInterval(this.sweep);
    for (const l of this.listeners.values()) this.close(l);
    this.listeners.clear();
    for (const done of [...this.pending]) done(undefined);
  }

  private close(l: Listener): void {
    l.udp.close();
    l.tcp.close();
  }

  private async listen(key: string, gw: ResolverGateway): Promise<void> {
    const cidr = parseCidr(gw.cidr)!;
    const port = this.o.port ?? DNS_PORT;
    const udp = dgram.createSocket({ type: 'udp4' });
    const tcp = net.createServer((c) => this.serveTcp(c, gw, cidr));
    const l: Listener = { gw, cidr, udp, tcp };
    this.listeners.set(key, l);
    try {
      await new Promise<void>((resolve, reject) => {
        udp.once('error', reject);
        udp.bind({ address: gw.ip, port, exclusive: true }, () => resolve());
      });
      await new Promise<void>((resolve, reject) => {
        tcp.once('error', reject);
        tcp.listen({ host: gw.ip, port }, () => resolve());
      });
    } catch (e) {
      this.failedAt.set(key, Date.now());
      if (this.listeners.get(key) === l) this.listeners.delete(key);
      udp.close();
      tcp.close();
      this.o.log.debug(
        { network: gw.network, ip: gw.ip, err: (e as Error).message },
        'names resolver not listening yet',
      );
      return;
    }
    udp.on('error', (e) => this.o.log.warn({ network: gw.network, err: e.message }, 'names resolver socket error'));
    tcp.on('error', (e) => this.o.log.warn({ network: gw.network, err: e.message }, 'names resolver TCP error'));
    udp.on('message', (m, rinfo) => {
      this.handle(m, gw, cidr, rinfo.address, false)
        .then((reply) => {
          // the listener may have closed while a relay was pending (its gateway went away)
          if (reply && this.listeners.get(key) === l) udp.send(reply, rinfo.port, rinfo.address, () => {});
        })
        .catch((e: Error) => this.o.log.warn({ network: gw.network, err: e.message }, 'names resolver reply failed'));
    });
    this.o.log.info({ network: gw.network, address: `${gw.ip}:${port}` }, 'names resolver listening');
  }

  private serveTcp(c: net.Socket, gw: ResolverGateway, cidr: Cidr): void {
    let buf = Buffer.alloc(0);
    c.setTimeout(5000, () => c.destroy());
    c.on('error', () => c.destroy());
    c.on('data', (d) => {
      buf = Buffer.concat([buf, d]);
      if (buf.length > 65_537) return c.destroy();
      while (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) {
        const m = buf.subarray(2, 2 + buf.readUInt16BE(0));
        buf = buf.subarray(2 + m.length);
        void this.handle(Buffer.from(m), gw, cidr, c.remoteAddress?.replace(/^::ffff:/, '') ?? '', true).then(
          (reply) => {
            if (!reply || c.destroyed) return;
            const len = Buffer.alloc(2);
            len.writeUInt16BE(reply.length);
            c.write(Buffer.concat([len, reply]));
          },
        );
      }
    });
  }

  /** one query from `source`: the reply to send, or undefined to send none */
  private async handle(m: Buffer, gw: ResolverGateway, cidr: Cidr, source: string, tcp: boolean) {
    const ip = parseIp(source);
    const count = (outcome: DnsOutcome) => this.o.onQuery?.(gw.network, outcome);
    // only this network's containers (nftables sends nothing else here; this holds without it)
    if (ip === undefined || !cidrContains(cidr, ip)) return void count('refused');
    if (
      !takeToken(this.buckets, source, Date.now(), this.o.rate ?? RATE_PER_SOURCE, this.o.burst ?? 2 * RATE_PER_SOURCE)
    )
      return void count('limited');
    const q = parseQuery(m);
    if ('error' in q) {
      count('refused');
      return q.id === undefined ? undefined : buildError(q.id, 0, RCODE.FORMERR);
    }
    const d = decide(this.table, gw.network, q, this.turn++);
    if (d.answer) {
      count('answered');
      return buildAnswer(m, q, d.rcode, d.addresses);
    }
    const reply = tcp ? await this.forwardTcp(m) : await this.forwardUdp(m);
    if (!reply) {
      count('failed');
      return buildError(q.id, q.flags, RCODE.SERVFAIL);
    }
    count(replyHeader(reply)?.rcode === RCODE.NXDOMAIN ? 'nxdomain' : 'forwarded');
    return reply;
  }

  /**
   * Relay over UDP from the host, each upstream in turn; undefined when none answered. Each
   * query gets its own socket (a random source port) and a random id, and only a reply from
   * the upstream asked, with that id, counts: an off-path forger must guess both (as Docker's
   * own resolver, which also dials per query).
   */
  private async forwardUdp(m: Buffer): Promise<Buffer | undefined> {
    const clientId = m.readUInt16BE(0);
    for (const up of this.o.upstreams) {
      const id = randomInt(65536);
      const reply = await new Promise<Buffer | undefined>((resolve) => {
        const s = dgram.createSocket('udp4');
        const timer = setTimeout(() => done(undefined), this.o.forwardTimeoutMs ?? 1500);
        const done = (r: Buffer | undefined) => {
          clearTimeout(timer);
          this.pending.delete(done);
          s.close();
          resolve(r);
        };
        this.pending.add(done);
        s.on('error', () => done(undefined));
        s.on('message', (r, rinfo) => {
          if (rinfo.address === up.ip && rinfo.port === up.port && replyHeader(r)?.id === id) done(r);
        });
        s.send(withId(m, id), up.port, up.ip, (err) => err && done(undefined));
      });
      if (reply) return withId(reply, clientId);
    }
    return undefined;
  }

  private async forwardTcp(m: Buffer): Promise<Buffer | undefined> {
    for (const up of this.o.upstreams) {
      const reply = await new Promise<Buffer | undefined>((resolve) => {
        const c = net.connect({ host: up.ip, port: up.port });
        let buf = Buffer.alloc(0);
        const done = (r: Buffer | undefined) => {
          c.destroy();
          resolve(r);
        };
        c.setTimeout(this.o.forwardTimeoutMs ?? 1500, () => done(undefined));
        c.on('error', () => done(undefined));
        c.on('connect', () => {
          const len = Buffer.alloc(2);
          len.writeUInt16BE(m.length);
          c.write(Buffer.concat([len, m]));
        });
        c.on('data', (d) => {
          buf = Buffer.concat([buf, d]);
          if (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) done(buf.subarray(2, 2 + buf.readUInt16BE(0)));
        });
      });
      if (reply) return reply;
    }
    return undefined;
  }
}
