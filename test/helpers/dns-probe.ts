#!/usr/bin/env node
// A DNS client for tests and benchmarks, run inside a container's network namespace
// (nsenter --net=/proc/PID/ns/net node dns-probe.js ...). Prints one JSON line per result:
//   once:   one query, its answer
//   until:  query every --every ms until the name has addresses (--want present) or not
//           (--want absent, NXDOMAIN or none), or --timeout ms; prints when (epoch ms)
//   watch:  query every --every ms for --for ms, each answer (churn: never a gone address)
import * as dgram from 'node:dgram';
import { parseArgs } from 'node:util';
import { answerAddresses, buildQuery, replyHeader, TYPE } from '../../agent/dns/codec.js';

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    server: { type: 'string', default: '127.0.0.11' },
    name: { type: 'string' },
    type: { type: 'string', default: 'A' },
    want: { type: 'string', default: 'present' },
    every: { type: 'string', default: '5' },
    timeout: { type: 'string', default: '10000' },
    for: { type: 'string', default: '1000' },
    wait: { type: 'string', default: '1000' },
    // print {"ready":true} once the first query is answered (a benchmark starts its clock then)
    ready: { type: 'boolean', default: false },
  },
});
const mode = positionals[0] ?? 'once';
const [host, port] = values.server!.split(':');
const type = values.type === 'AAAA' ? TYPE.AAAA : TYPE.A;
const sock = dgram.createSocket('udp4');
let nextId = 1;

interface Result {
  ms: number;
  at: number;
  rcode?: number;
  addresses?: string[];
  timeout?: true;
}

function query(): Promise<Result> {
  const id = nextId++ & 0xffff;
  const t0 = performance.now();
  return new Promise((resolve) => {
    const timer = setTimeout(() => done({ timeout: true }), Number(values.wait));
    const onMsg = (m: Buffer) => {
      if (replyHeader(m)?.id !== id) return;
      done({ rcode: replyHeader(m)!.rcode, addresses: answerAddresses(m) });
    };
    const done = (r: Omit<Result, 'ms' | 'at'>) => {
      clearTimeout(timer);
      sock.off('message', onMsg);
      resolve({ ...r, ms: Math.round((performance.now() - t0) * 100) / 100, at: Date.now() });
    };
    sock.on('message', onMsg);
    sock.send(buildQuery(id, values.name!, type), Number(port ?? 53), host);
  });
}

const out = (r: object) => process.stdout.write(`${JSON.stringify(r)}\n`);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function main(): Promise<void> {
  if (!values.name) throw new Error('--name is required');
  if (mode === 'once') out(await query());
  else if (mode === 'until') {
    const deadline = Date.now() + Number(values.timeout);
    for (let first = true; ; first = false) {
      const r = await query();
      if (first && values.ready) out({ ready: true });
      const present = !!r.addresses?.length;
      if ((values.want === 'present') === present && !r.timeout) {
        out({ ...r, done: true });
        return;
      }
      if (Date.now() > deadline) {
        out({ ...r, done: false });
        return;
      }
      await sleep(Number(values.every));
    }
  } else if (mode === 'watch') {
    const end = Date.now() + Number(values.for);
    while (Date.now() < end) {
      out(await query());
      await sleep(Number(values.every));
    }
  } else throw new Error(`unknown mode ${mode}`);
}

main()
  .then(() => sock.close())
  .catch((e: Error) => {
    process.stderr.write(`dns-probe: ${e.message}\n`);
    process.exit(2);
  });
