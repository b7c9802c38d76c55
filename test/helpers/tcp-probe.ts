#!/usr/bin/env node
// A TCP client and server for tests, run inside a container's network namespace
// (nsenter -t PID -n node tcp-probe.js ...). One JSON line per result.
//   serve PORT [PORT ...]      answer every connection with "ok PORT\n"; prints {"ready":true}
//   connect IP PORT [--timeout MS]
//                              {"ok":true,"reply":"ok PORT","ms":N} when a reply came back
//                              (both directions of the connection passed), else
//                              {"ok":false,"error":"...","ms":N}
//   until IP PORT [--every MS] [--timeout MS]
//                              a new connection every MS (each given up after 100 ms) until
//                              one is answered: {"ready":true} once the first is on its way,
//                              then {"at":EPOCH_MS} (or {"timeout":true})
import * as net from 'node:net';
import { parseArgs } from 'node:util';

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    timeout: { type: 'string', default: '1000' },
    every: { type: 'string', default: '2' },
    /** serve: the address to listen on ('::' takes IPv6 and IPv4) */
    host: { type: 'string', default: '0.0.0.0' },
  },
});
const [mode, ...rest] = positionals;
const print = (o: object) => process.stdout.write(`${JSON.stringify(o)}\n`);

if (mode === 'serve') {
  let listening = 0;
  for (const p of rest) {
    const port = Number(p);
    net
      .createServer((s) => {
        s.on('error', () => {});
        s.end(`ok ${port}\n`);
      })
      .listen(port, values.host, () => {
        if (++listening === rest.length) print({ ready: true });
      });
  }
} else if (mode === 'connect') {
  const [host, port] = rest;
  const t0 = Date.now();
  let reply = '';
  const done = (o: object) => {
    print({ ...o, ms: Date.now() - t0 });
    process.exit(0);
  };
  const s = net.connect({ host: host!, port: Number(port) });
  s.setTimeout(Number(values.timeout));
  s.on('data', (d) => (reply += String(d)));
  s.on('end', () => done(reply ? { ok: true, reply: reply.trim() } : { ok: false, error: 'closed without a reply' }));
  s.on('timeout', () => done({ ok: false, error: 'timeout' }));
  s.on('error', (e) => done({ ok: false, error: e.message }));
} else if (mode === 'until') {
  const [host, port] = rest;
  const attempt = () => {
    const s = net.connect({ host: host!, port: Number(port) });
    const giveUp = setTimeout(() => s.destroy(), 100);
    s.on('data', (d) => {
      if (String(d).startsWith('ok')) {
        print({ at: Date.now() });
        process.exit(0);
      }
    });
    s.on('error', () => {});
    s.on('close', () => clearTimeout(giveUp));
  };
  attempt();
  print({ ready: true });
  setInterval(attempt, Number(values.every));
  setTimeout(() => {
    print({ timeout: true });
    process.exit(0);
  }, Number(values.timeout));
} else {
  process.stderr.write(
    'usage: tcp-probe serve PORT... | connect IP PORT [--timeout MS] | until IP PORT [--every MS] [--timeout MS]\n',
  );
  process.exit(2);
}
