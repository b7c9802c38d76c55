// Names across hosts, measured on a 3-host lab: how soon a container's name answers on the
// other hosts after `docker run` returns on its own, how soon it is gone after `docker rm -f`,
// whether a lookup ever names a gone container while containers come and go, and what a
// lookup costs from a container through Docker's resolver: a gremesh name on another host
// beside a name Docker answers itself (a container on the same host), same run.
// Usage: node dist/test/bench/dns.js [--count 30]
import * as fs from 'node:fs';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { execa } from 'execa';
import { BIN, cli, tempDir } from '../helpers/cli.js';
import { readState } from '../../deploy/lab/lab.js';
import { joinAll, startCoordinator } from '../../deploy/lab/mesh.js';
import { IMAGE, hostEnv } from '../../deploy/lab/plan.js';
import { systemPath } from '../../common/exec.js';

const { values } = parseArgs({ options: { count: { type: 'string', default: '30' } } });
const count = Number(values.count);
const PROBE = fileURLToPath(new URL('../helpers/dns-probe.js', import.meta.url));
const NETWORK = 'gremesh-default';
const dir = tempDir('gmn');
const hosts = ['h1', 'h2', 'h3'];

interface Answer {
  at: number;
  ms: number;
  rcode?: number;
  addresses?: string[];
  timeout?: true;
  done?: boolean;
  ready?: true;
}
const pct = (xs: number[], p: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)]! : NaN;
};
const inHost = async (h: string, argv: string[]) => {
  const n = readState(dir)!.plan.nodes.find((x) => x.name === h)!;
  const r = await execa('nsenter', [`--net=/run/netns/${n.ns}`, ...argv], {
    env: { PATH: systemPath(), ...hostEnv(dir, n) },
  });
  return String(r.stdout).trim();
};
const docker = (h: string, a: string[]) => inHost(h, ['docker', ...a]);
const pids = new Map<string, number>();
const pidOf = async (h: string, c: string) => {
  if (!pids.has(c)) pids.set(c, Number(await docker(h, ['inspect', '-f', '{{.State.Pid}}', c])));
  return pids.get(c)!;
};
/** a probe in container c's namespace; resolves its answers; `ready` once it is querying */
async function startProbe(h: string, c: string, args: string[]) {
  const p = execa('nsenter', ['-t', String(await pidOf(h, c)), '-n', process.execPath, PROBE, ...args], {
    env: { PATH: systemPath() },
    reject: false,
  });
  let buf = '';
  let onReady: () => void = () => {};
  const ready = new Promise<void>((r) => (onReady = r));
  p.stdout!.on('data', (d: Buffer) => {
    buf += String(d);
    if (buf.includes('"ready"')) onReady();
  });
  // a probe ended by stop() may leave half a line at the end: only whole lines count
  const answers = p.then(() =>
    buf
      .split('\n')
      .filter((l) => l.endsWith('}'))
      .map((l) => JSON.parse(l) as Answer)
      .filter((a) => !a.ready),
  );
  // stop: end a watch early (its answers so far are kept)
  return { ready, answers, stop: () => p.kill('SIGTERM') };
}

const up = await cli(BIN.lab, ['up', '--hosts', '3', '--dir', dir], {}, 600_000);
if (up.exitCode !== 0) throw new Error(up.stderr);
const result: Record<string, unknown> = { count };
try {
  await startCoordinator(dir);
  await joinAll(dir, hosts);
  const run = (h: string, name: string, more: string[] = []) =>
    docker(h, ['run', '-d', '--name', name, '--network', NETWORK, ...more, IMAGE, 'sleep', '3600']);
  // the Docker network each agent makes for "default"
  for (const h of hosts)
    while (!(await docker(h, ['network', 'ls', '--format', '{{.Name}}'])).split('\n').includes(NETWORK))
      await new Promise((r) => setTimeout(r, 100));
  await Promise.all([
    run('h1', 'p-h1'),
    run('h1', 'w-h1'),
    run('h1', 'local-h1'),
    run('h3', 'p-h3'),
    run('h2', 'web-h2'),
  ]);
  // every name known on h1 before timing anything
  for (;;) {
    const p = await startProbe('h1', 'p-h1', ['once', '--name', 'web-h2']);
    if ((await p.answers)[0]?.addresses?.length) break;
    await new Promise((r) => setTimeout(r, 200));
  }

  // a lookup's cost from a container, Docker's own answer beside ours, interleaved blocks
  const gw = await docker('h1', [
    'inspect',
    '-f',
    `{{(index .NetworkSettings.Networks "${NETWORK}").Gateway}}`,
    'p-h1',
  ]);
  // what the datapath alone costs on that path (the userspace datapath in the lab): ICMP to the gateway
  const rtt = await execa(
    'nsenter',
    ['-t', String(await pidOf('h1', 'p-h1')), '-n', 'ping', '-q', '-c', '200', '-i', '0.005', gw],
    {
      env: { PATH: systemPath() },
    },
  );
  const gwRtt = Number(/= [\d.]+\/([\d.]+)\//.exec(String(rtt.stdout))?.[1]);
  const lat: Record<'local' | 'remote' | 'direct', number[]> = { local: [], remote: [], direct: [] };
  for (let b = 0; b < 6; b++)
    for (const [kind, name, server] of [
      ['local', 'local-h1', '127.0.0.11'],
      ['remote', 'web-h2', '127.0.0.11'],
      ['direct', 'web-h2', gw],
    ] as const) {
      const p = await startProbe('h1', 'p-h1', [
        'watch',
        '--name',
        name,
        '--server',
        server,
        '--every',
        '2',
        '--for',
        '400',
      ]);
      lat[kind].push(...(await p.answers).filter((a) => a.addresses?.length).map((a) => a.ms));
    }

  // churn: each cycle's container also holds the alias "churn", watched from h1 throughout
  const watch = await startProbe('h1', 'w-h1', [
    'watch',
    '--name',
    'churn',
    '--every',
    '10',
    '--for',
    String(count * 3000),
  ]);
  const appear: number[] = [];
  const vanish: number[] = [];
  const lived: { ip: string; from: number; to: number }[] = [];
  let missed = 0;
  const slow: string[] = [];
  for (let i = 0; i < count; i++) {
    const name = `n${i}`;
    const seeing = await Promise.all(
      ['h1', 'h3'].map((h) =>
        startProbe(h, `p-${h}`, ['until', '--name', name, '--want', 'present', '--every', '2', '--ready']),
      ),
    );
    await Promise.all(seeing.map((s) => s.ready));
    const from = Date.now();
    await run('h2', name, ['--network-alias', 'churn']);
    const started = Date.now();
    const seen = await Promise.all(seeing.map(async (s) => (await s.answers).at(-1)!));
    for (const [k, a] of seen.entries()) {
      if (!a.done) missed++;
      else appear.push(Math.max(0, a.at - started));
      if (a.done && a.at - started > 100) slow.push(`${name} on ${['h1', 'h3'][k]}: ${a.at - started} ms`);
    }
    const ip = seen[0]!.addresses?.[0] ?? '';
    const leaving = await Promise.all(
      ['h1', 'h3'].map((h) =>
        startProbe(h, `p-${h}`, ['until', '--name', name, '--want', 'absent', '--every', '2', '--ready']),
      ),
    );
    await Promise.all(leaving.map((s) => s.ready));
    await docker('h2', ['rm', '-f', name]);
    const removed = Date.now();
    lived.push({ ip, from, to: removed });
    for (const a of await Promise.all(leaving.map(async (s) => (await s.answers).at(-1)!))) {
      if (!a.done) missed++;
      else vanish.push(Math.max(0, a.at - removed));
    }
  }
  watch.stop();
  const answers = await watch.answers;
  const stale = answers.filter((a) =>
    (a.addresses ?? []).some((x) => !lived.some((l) => l.ip === x && a.at >= l.from && a.at <= l.to)),
  );
  const late = answers.filter((a) =>
    (a.addresses ?? []).some((x) => !lived.some((l) => l.ip === x && a.at >= l.from && a.at <= l.to + 1000)),
  );
  const f = (xs: number[]) => `p50 ${pct(xs, 50).toFixed(1)} / p99 ${pct(xs, 99).toFixed(1)} ms`;
  const ratio = pct(lat.remote, 50) / pct(lat.local, 50);
  const lines = [
    `names across hosts, ${count} containers started and removed on h2, looked up from containers on h1 and h3 through Docker's resolver:`,
    `  docker run returned -> name answered on h1 and h3: ${f(appear)} (n=${appear.length}; target p50 <= 30, p99 <= 100)`,
    `  docker rm -f returned -> NXDOMAIN on h1 and h3: ${f(vanish)} (n=${vanish.length}; target p99 <= 1000)`,
    `  ${answers.length} lookups of the churning alias from h1 meanwhile: ${late.length} naming a container gone for more than 1 s, ${stale.length} naming one gone at all (removed, not yet gone everywhere)`,
    `  lookups that never settled within 10 s: ${missed}; answered after more than 100 ms: ${slow.join(', ') || 'none'}`,
    `lookup from a container through 127.0.0.11, same run: a name Docker answers itself (same host) ${f(lat.local)}, a gremesh name on another host ${f(lat.remote)}; gremesh / Docker p50 ${ratio.toFixed(2)} (target <= 1.5); the same name asked of the gateway's resolver directly (what Docker's forwarding adds is the difference) ${f(lat.direct)}, / Docker p50 ${(pct(lat.direct, 50) / pct(lat.local, 50)).toFixed(2)}; an ICMP echo container -> gateway alone (the datapath) avg ${gwRtt.toFixed(2)} ms`,
  ];
  process.stdout.write(`${lines.join('\n')}\n`);
  Object.assign(result, {
    appear: { p50: pct(appear, 50), p99: pct(appear, 99), n: appear.length },
    vanish: { p50: pct(vanish, 50), p99: pct(vanish, 99), n: vanish.length },
    lookups: answers.length,
    stale: stale.length,
    late: late.length,
    missed,
    local: { p50: pct(lat.local, 50), p99: pct(lat.local, 99) },
    remote: { p50: pct(lat.remote, 50), p99: pct(lat.remote, 99) },
    direct: { p50: pct(lat.direct, 50), p99: pct(lat.direct, 99) },
    gatewayRttMs: gwRtt,
    ratio,
  });
} finally {
  await cli(BIN.lab, ['down', '--dir', dir], {}, 600_000);
  fs.rmSync(dir, { recursive: true, force: true });
}
if (process.env.GREMESH_BENCH_JSON) fs.writeFileSync(process.env.GREMESH_BENCH_JSON, JSON.stringify(result, null, 2));
