// Pure: the part of the DNS wire format (RFC 1035 §4) the resolver needs: a query's header
// and one question read, an answer of A records (or none) written, the rcode of a relayed
// reply read. Anything else in a message is passed through untouched or refused.
import { formatIp, parseIp } from '../../common/ipv4.js';

export const TYPE = { A: 1, AAAA: 28, ANY: 255 } as const;
export const CLASS_IN = 1;
export const RCODE = { NOERROR: 0, FORMERR: 1, SERVFAIL: 2, NXDOMAIN: 3, NOTIMP: 4, REFUSED: 5 } as const;

export interface Question {
  id: number;
  /** the header's flags word as sent (opcode, RD) */
  flags: number;
  /** lowercase, without the trailing dot */
  name: string;
  type: number;
  class: number;
  /** where the question ends in the message (answers follow it) */
  end: number;
}

/** Pure: the query's single question, or a reason it is none (too short, a response, several questions, bad name). */
export function parseQuery(m: Buffer): Question | { error: string; id?: number } {
  if (m.length < 12) return { error: 'shorter than a header' };
  const id = m.readUInt16BE(0);
  const flags = m.readUInt16BE(2);
  if (flags & 0x8000) return { error: 'a response, not a query', id };
  if ((flags >> 11) & 0xf) return { error: 'not a standard query', id };
  if (m.readUInt16BE(4) !== 1) return { error: 'not exactly one question', id };
  const labels: string[] = [];
  let at = 12;
  for (;;) {
    if (at >= m.length) return { error: 'name runs past the end', id };
    const len = m[at]!;
    at++;
    if (len === 0) break;
    // compression pointers (0xc0) and the reserved label types have no place in a question
    if (len > 63) return { error: 'bad label', id };
    if (at + len > m.length) return { error: 'name runs past the end', id };
    labels.push(m.toString('latin1', at, at + len).toLowerCase());
    at += len;
  }
  if (at + 4 > m.length) return { error: 'question runs past the end', id };
  const name = labels.join('.');
  if (name.length > 253) return { error: 'name too long', id };
  return { id, flags, name, type: m.readUInt16BE(at), class: m.readUInt16BE(at + 2), end: at + 4 };
}

/**
 * Pure: the reply to `query` (its question echoed) with one A record per address, in order,
 * TTL `ttl`; no addresses and NOERROR is "the name exists, not with this type".
 */
export function buildAnswer(query: Buffer, q: Question, rcode: number, addresses: string[], ttl = 0): Buffer {
  const head = Buffer.alloc(12);
  head.writeUInt16BE(q.id, 0);
  // QR, the query's opcode and RD, AA (we are the authority for these names), RA
  head.writeUInt16BE(0x8000 | (q.flags & 0x7900) | 0x0400 | 0x0080 | (rcode & 0xf), 2);
  head.writeUInt16BE(1, 4);
  head.writeUInt16BE(addresses.length, 6);
  const question = query.subarray(12, q.end);
  const answers = addresses.map((ip) => {
    const rr = Buffer.alloc(16);
    rr.writeUInt16BE(0xc00c, 0); // the name: a pointer to the question's
    rr.writeUInt16BE(TYPE.A, 2);
    rr.writeUInt16BE(CLASS_IN, 4);
    rr.writeUInt32BE(ttl, 6);
    rr.writeUInt16BE(4, 10);
    rr.writeUInt32BE(parseIp(ip)!, 12);
    return rr;
  });
  return Buffer.concat([head, question, ...answers]);
}

/** Pure: an error reply carrying only the header (FORMERR for what could not be read). */
export function buildError(id: number, flags: number, rcode: number): Buffer {
  const head = Buffer.alloc(12);
  head.writeUInt16BE(id, 0);
  head.writeUInt16BE(0x8000 | (flags & 0x7900) | 0x0080 | (rcode & 0xf), 2);
  return head;
}

/** Pure: the id and rcode of a reply (a relayed upstream answer), or undefined when it is no reply. */
export function replyHeader(m: Buffer): { id: number; rcode: number } | undefined {
  if (m.length < 12 || !(m.readUInt16BE(2) & 0x8000)) return undefined;
  return { id: m.readUInt16BE(0), rcode: m.readUInt16BE(2) & 0xf };
}

/** Pure: the message with another id (relayed queries get one of ours; their replies get the client's back). */
export function withId(m: Buffer, id: number): Buffer {
  const out = Buffer.from(m);
  out.writeUInt16BE(id, 0);
  return out;
}

/** Pure: a query for `name` (tests, benchmarks and the lab's outside server use it). */
export function buildQuery(id: number, name: string, type: number = TYPE.A): Buffer {
  const labels = name.split('.').filter(Boolean);
  const parts = [Buffer.from([id >> 8, id & 0xff, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0])];
  for (const l of labels) parts.push(Buffer.from([l.length]), Buffer.from(l, 'latin1'));
  parts.push(Buffer.from([0, type >> 8, type & 0xff, 0, CLASS_IN]));
  return Buffer.concat(parts);
}

/** Pure: the A addresses of a reply whose answers are as buildAnswer writes them (tests and benchmarks). */
export function answerAddresses(m: Buffer): string[] {
  const q = parseQuery(Buffer.concat([m.subarray(0, 2), Buffer.from([0, 0]), m.subarray(4)]));
  if ('error' in q) return [];
  const out: string[] = [];
  let at = q.end;
  for (let i = 0; i < m.readUInt16BE(6) && at + 12 <= m.length; i++) {
    // the owner name: a pointer (2 bytes) or labels ending in 0
    if ((m[at]! & 0xc0) === 0xc0) at += 2;
    else {
      while (at < m.length && m[at] !== 0) at += m[at]! + 1;
      at++;
    }
    const type = m.readUInt16BE(at);
    const len = m.readUInt16BE(at + 8);
    if (type === TYPE.A && len === 4) out.push(formatIp(m.readUInt32BE(at + 10)));
    at += 10 + len;
  }
  return out;
}
