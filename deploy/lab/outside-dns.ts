#!/usr/bin/env node
// The lab's "internet" DNS server, in the outside namespace on OUTSIDE_IP:53 (UDP and TCP):
// it knows outside.gremesh.test (OUTSIDE_IP) and answers NXDOMAIN for everything else, so
// lab hosts and their containers resolve through a server the lab owns, never the machine's.
import * as dgram from 'node:dgram';
import * as net from 'node:net';
import { buildAnswer, buildError, parseQuery, RCODE, TYPE } from '../../agent/dns/codec.js';
import { OUTSIDE_IP, OUTSIDE_NAME } from './plan.js';

function answer(m: Buffer): Buffer | undefined {
  const q = parseQuery(m);
  if ('error' in q) return q.id === undefined ? undefined : buildError(q.id, 0, RCODE.FORMERR);
  if (q.name !== OUTSIDE_NAME) return buildAnswer(m, q, RCODE.NXDOMAIN, []);
  return buildAnswer(m, q, RCODE.NOERROR, q.type === TYPE.A ? [OUTSIDE_IP] : [], 60);
}

const udp = dgram.createSocket('udp4');
udp.on('message', (m, r) => {
  const a = answer(m);
  if (a) udp.send(a, r.port, r.address);
});
udp.bind(53, OUTSIDE_IP, () => process.stdout.write(`outside DNS on ${OUTSIDE_IP}:53\n`));
net
  .createServer((c) => {
    c.on('error', () => c.destroy());
    c.once('data', (d) => {
      const a = d.length > 2 ? answer(d.subarray(2, 2 + d.readUInt16BE(0))) : undefined;
      if (!a) return c.destroy();
      const len = Buffer.alloc(2);
      len.writeUInt16BE(a.length);
      c.end(Buffer.concat([len, a]));
    });
  })
  .listen(53, OUTSIDE_IP);
