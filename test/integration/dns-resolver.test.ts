// The names resolver on real sockets (loopback, no root): it answers the network's names over
// UDP and TCP, relays the rest to an upstream (the client's id kept), says SERVFAIL when no
// upstream answers, answers nobody outside its network, and holds a source to its rate.
import test from 'ava';
import * as dgram from 'node:dgram';
import * as net from 'node:net';
import { DnsResolver, type DnsOutcome } from '../../agent/dns/resolver.js';
import {
  answerAddresses,
  buildAnswer,
  buildQuery,
  parseQuery,
  RCODE,
  replyHeader,
  type Question,
} from '../../agent/dns/codec.js';
import type { Snapshot } from '../../agent/model.js';
import { createLogger } from '../../common/log.js';

const log = createLogger('test', 'error');
const base = 20_000 + (process.pid % 20_000);
const snapshot: Snapshot = {
  revision: 1,
  host: 'h1',
  underlayIp: '198.18.0.11',
  networks: [],
  slices: [],
  peers: [
    {
      name: 'h2',
      underlayIp: '198.18.0.12',
      slices: [],
      endpoints: [
        {
          network: 'default',
          host: 'h2',
          mac: '02:00:00:00:00:01',
          ip: '198.18.65.2',
          containerId: 'c',
          names: ['web'],
        },
      ],
    },
  ],
};

/** an upstream that knows upstream.example and nothing else */
async function upstream(port: number): Promise<dgram.Socket> {
  const s = dgram.createSocket('udp4');
  s.on('message', (m, r) => {
    const q = parseQuery(m) as Question;
    const known = q.name === 'upstream.example';
    s.send(buildAnswer(m, q, known ? RCODE.NOERROR : RCODE.NXDOMAIN, known ? ['192.0.2.7'] : []), r.port, r.address);
  });
  await new Promise<void>((r) => s.bind(port, '127.0.0.1', () => r()));
  return s;
}

function ask(port: number, name: string, id = 42, waitMs = 1000): Promise<Buffer | undefined> {
  const s = dgram.createSocket('udp4');
  return new Promise((resolve) => {
    const t = setTimeout(() => done(undefined), waitMs);
    const done = (m: Buffer | undefined) => {
      clearTimeout(t);
      s.close();
      resolve(m);
    };
    s.on('message', (m) => done(m));
    s.send(buildQuery(id, name), port, '127.0.0.1');
  });
}

async function resolverOn(
  port: number,
  cidr: string,
  upstreamPort: number,
  more: Partial<ConstructorParameters<typeof DnsResolver>[0]> = {},
) {
  const outcomes: DnsOutcome[] = [];
  const r = new DnsResolver({
    upstreams: [{ ip: '127.0.0.1', port: upstreamPort }],
    log,
    port,
    forwardTimeoutMs: 300,
    onQuery: (_n, o) => outcomes.push(o),
    ...more,
  });
  r.update(snapshot, [{ network: 'default', ip: '127.0.0.1', cidr }], []);
  // listening: a name answers (a resolver that answers no one here: give it a moment)
  if (cidr.startsWith('127.')) for (let i = 0; i < 50 && !(await ask(port, 'web', 1, 100)); i++);
  else await new Promise((res) => setTimeout(res, 200));
  outcomes.length = 0;
  return { r, outcomes };
}

test.serial(
  'answers the network’s names, relays the rest with the client’s id, SERVFAIL when the upstream is silent',
  async (t) => {
    const up = await upstream(base + 1);
    const { r, outcomes } = await resolverOn(base, '127.0.0.0/8', base + 1);
    try {
      const web = (await ask(base, 'web'))!;
      t.deepEqual(answerAddresses(web), ['198.18.65.2']);
      const relayed = (await ask(base, 'upstream.example', 4321))!;
      t.deepEqual(replyHeader(relayed), { id: 4321, rcode: 0 });
      t.deepEqual(answerAddresses(relayed), ['192.0.2.7']);
      t.is(replyHeader((await ask(base, 'nosuch.example'))!)?.rcode, RCODE.NXDOMAIN);
      up.close();
      t.is(replyHeader((await ask(base, 'upstream.example'))!)?.rcode, RCODE.SERVFAIL);
      t.deepEqual(outcomes, ['answered', 'forwarded', 'nxdomain', 'failed']);
      // over TCP, framed
      const tcpReply = await new Promise<Buffer>((resolve, reject) => {
        const c = net.connect({ host: '127.0.0.1', port: base }, () => {
          const m = buildQuery(9, 'WEB');
          const len = Buffer.alloc(2);
          len.writeUInt16BE(m.length);
          c.write(Buffer.concat([len, m]));
        });
        c.on('data', (d) => {
          c.destroy();
          resolve(d.subarray(2));
        });
        c.on('error', reject);
      });
      t.deepEqual(answerAddresses(tcpReply), ['198.18.65.2']);
      // names follow the snapshot
      r.update({ ...snapshot, peers: [] }, [{ network: 'default', ip: '127.0.0.1', cidr: '127.0.0.0/8' }], []);
      t.not(answerAddresses((await ask(base, 'web'))!).length, 1);
    } finally {
      r.stop();
    }
  },
);

test.serial('answers no one outside its network, and holds each source to its rate', async (t) => {
  const up = await upstream(base + 3);
  const outside = await resolverOn(base + 2, '10.0.0.0/8', base + 3);
  try {
    t.is(await ask(base + 2, 'web', 1, 300), undefined);
    t.deepEqual(outside.outcomes, ['refused']);
  } finally {
    outside.r.stop();
  }
  const limited = await resolverOn(base + 4, '127.0.0.0/8', base + 3, { rate: 1, burst: 3 });
  try {
    const replies = await Promise.all(Array.from({ length: 8 }, (_, i) => ask(base + 4, 'web', i, 300)));
    t.true(replies.filter(Boolean).length <= 3);
    t.true(limited.outcomes.includes('limited'));
  } finally {
    limited.r.stop();
    up.close();
  }
});
