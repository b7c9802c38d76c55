// Day-2 tools on a real lab: `coordctl trace` across hosts (delivered, tunnel down,
// spoofed source, another network, the NAT step), Prometheus metrics scraped from the
// agents and the coordinator, and the event history (`coordctl events --follow`); then, on
// the same lab, names across hosts (cases/names.ts).
import test from 'ava';
import { execa, type ResultPromise } from 'execa';
import { isRoot } from '../helpers/cli.js';
import { cutUnderlay, labUp, type TestLab } from '../helpers/lab.js';
import { waitUntil } from '../helpers/endpoint.js';
import {
  coordctl,
  coordctlCommand,
  joinAll,
  startAgent,
  startCoordinator,
  stopProcess,
} from '../../deploy/lab/mesh.js';
import { IMAGE } from '../../deploy/lab/plan.js';
import { nameCases } from './cases/names.js';
import { policyCases } from './cases/policy.js';

const serial = isRoot ? test.serial : test.skip;
let lab: TestLab;
let args: Record<string, string[]> = {};
const HOSTS = ['h1', 'h2', 'h3'];
const METRICS = '127.0.0.1:9477';
const COORDINATOR_ARGS = ['--metrics', '127.0.0.1:9478'];
let events: ResultPromise | undefined;
let eventsOut = '';

const docker = async (h: string, a: string[]) => (await lab.exec(h, ['docker', ...a])).stdout.trim();
const run = (h: string, name: string, network: string) =>
  docker(h, [
    'run',
    '-d',
    '--net=none',
    '--name',
    name,
    '--label',
    `gremesh.network=${network}`,
    IMAGE,
    'sleep',
    '3600',
  ]);
interface Report {
  src: string;
  dst: string;
  verdict: string;
  hops: { host: string; verdict: string; detail: string; tunnel: string; steps: { tableName: string }[] }[];
}
const trace = async (...a: string[]) => {
  const r = await coordctl(lab.dir, ['trace', ...a, '-o', 'json']);
  if (r.exitCode !== 0) throw new Error(`coordctl trace ${a.join(' ')}: ${r.stderr}`);
  return JSON.parse(r.stdout) as Report;
};
/** the Prometheus text of a lab node's metrics endpoint (fetched from inside its namespace) */
const scrape = async (node: string, addr = METRICS) =>
  (
    await lab.exec(node, [
      'node',
      '-e',
      `fetch('http://${addr}/metrics').then((r) => r.text()).then((t) => process.stdout.write(t))`,
    ])
  ).stdout;
/** one sample's value: the line of `name` whose labels include all of `labels` (a="x",b="y") */
const sample = (text: string, name: string, labels = ''): number | undefined => {
  const want = labels ? labels.split(',') : [];
  const line = text.split('\n').find((l) => {
    const m = /^([a-z_]+)(?:\{(.*)\})? /.exec(l);
    return m?.[1] === name && want.every((w) => (m[2] ?? '').split(',').includes(w));
  });
  return line === undefined ? undefined : Number(line.split(' ').at(-1));
};
const eventLines = () =>
  eventsOut
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as { kind: string; host: string; peer: string; detail: string; timeMs: string });

test.before(async () => {
  if (!isRoot) return;
  lab = await labUp(3);
  await startCoordinator(lab.dir, COORDINATOR_ARGS);
  args = await joinAll(lab.dir, HOSTS, ['--metrics', METRICS]);
  const r = await coordctl(lab.dir, [
    'network',
    'create',
    'blue',
    '--cidr',
    '198.19.0.0/16',
    '--host-prefix-len',
    '24',
  ]);
  if (r.exitCode !== 0) throw new Error(r.stderr);
  // every event from now on, as an operator following them would see it
  const follow = coordctlCommand(lab.dir, ['events', '--follow', '-o', 'json']);
  events = execa(follow.argv[0]!, follow.argv.slice(1), { env: follow.env, reject: false });
  events.stdout!.on('data', (d: Buffer) => (eventsOut += String(d)));
  await run('h1', 'c-h1', 'default');
  await run('h2', 'c-h2', 'default');
  await run('h2', 'b-h2', 'blue');
  // every container reported to the coordinator (trace finds them there)
  const reported = await waitUntil(async () => {
    const s = JSON.parse((await coordctl(lab.dir, ['status', '-o', 'json'])).stdout) as {
      hosts: { name: string; endpoints: number; tunnels: { forwarding: boolean }[] }[];
    };
    const h = (n: string) => s.hosts.find((x) => x.name === n)!;
    return (
      h('h1').endpoints >= 1 && h('h2').endpoints >= 2 && s.hosts.every((x) => x.tunnels.every((t) => t.forwarding))
    );
  }, 60_000);
  if (reported === undefined) throw new Error('containers not reported, or tunnels not up');
});
test.after.always(async () => {
  events?.kill('SIGTERM');
  if (lab) await lab.down();
});

serial('trace between containers on two hosts: every table named, sent over the tunnel, delivered', async (t) => {
  const r = await trace('c-h1', 'c-h2');
  t.is(r.hops.length, 2);
  t.is(r.hops[0]!.host, 'h1');
  t.is(r.hops[0]!.verdict, 'sent');
  t.regex(r.hops[0]!.detail, /^sent to peer h2 over gre-c612000c$/);
  t.deepEqual(
    r.hops[0]!.steps.map((s) => s.tableName),
    ['classify', 'port security', 'forward'],
  );
  t.is(r.hops[1]!.host, 'h2');
  t.regex(r.verdict, /^delivered to c-h2 on h2/);
  const text = await coordctl(lab.dir, ['trace', 'c-h1', 'c-h2']);
  t.log(text.stdout);
  t.regex(text.stdout, /port security/);
  t.regex(text.stdout, /verdict: delivered to c-h2 on h2/);
});

serial('trace: a spoofed source is dropped at port security; another network is refused with the reason', async (t) => {
  const spoofed = await trace('c-h1', 'c-h2', '--src-ip', '198.18.64.99');
  t.is(spoofed.hops.length, 1);
  t.regex(spoofed.verdict, /dropped at port security/);
  const other = await trace('c-h1', 'b-h2');
  t.regex(other.verdict, /^dropped: .*b-h2.* is in network blue, .*c-h1.* in default/);
  const bad = await coordctl(lab.dir, ['trace', 'c-h1', 'no-such-container']);
  t.is(bad.exitCode, 1);
  t.regex(bad.stderr, /destination: no container or address "no-such-container"/);
  t.is(bad.stderr.trim().split('\n').length, 1, 'one line');
  const usage = await coordctl(lab.dir, ['trace', 'c-h1', 'c-h2', '--port', '80']);
  t.is(usage.exitCode, 2);
});

serial('trace to outside: to the gateway, then the masquerade rule that applies', async (t) => {
  const r = await trace('c-h1', 'outside:198.51.100.1');
  t.is(r.hops.length, 1);
  t.is(r.hops[0]!.verdict, 'gateway');
  t.regex(r.verdict, /to the gateway gmgw1 on h1/);
  t.regex(r.verdict, /masqueraded to h1's address by `ip saddr 198\.18\.64\.0\/18 .*masquerade`/);
  const ll = await trace('c-h1', 'outside:169.254.169.254');
  t.regex(ll.verdict, /dropped at the gateway: link-local/);
});

serial('metrics: agents and coordinator in Prometheus text, values as the lab is', async (t) => {
  const a = await scrape('h1');
  t.is(sample(a, 'gremesh_tunnel_up', 'peer="h2"'), 1);
  t.is(sample(a, 'gremesh_tunnel_up', 'peer="h3"'), 1);
  t.is(sample(a, 'gremesh_containers_attached', 'network="default"'), 1);
  t.is(sample(a, 'gremesh_containers_attached', 'network="blue"'), 0);
  t.true((sample(a, 'gremesh_flows_installed') ?? 0) > 10);
  t.is(sample(a, 'gremesh_attach_seconds_count', 'network="default"'), 1, 'one attach on h1');
  t.true((sample(a, 'gremesh_reconcile_pass_seconds_count') ?? 0) > 0);
  t.true(a.includes('process_cpu_seconds_total'), 'default process metrics');
  const c = await scrape('ctl', '127.0.0.1:9478');
  t.is(sample(c, 'gremesh_hosts', 'state="up"'), 3);
  t.is(sample(c, 'gremesh_watchers'), 3);
  t.is(sample(c, 'gremesh_joins_total'), 3);
  t.true((sample(c, 'gremesh_fanout_seconds_count') ?? 0) > 0);
  // a refused call is counted by method and code
  await coordctl(lab.dir, ['leave', 'nosuchhost']);
  t.is(
    sample(await scrape('ctl', '127.0.0.1:9478'), 'gremesh_rpc_errors_total', 'method="removeHost",code="NOT_FOUND"'),
    1,
  );
});

serial(
  'a cut tunnel: an event as soon as BFD says so, trace names it down, gremesh_tunnel_up is 0; then back',
  async (t) => {
    const after = (since: number, kind: string) =>
      eventLines().find((e) => e.kind === kind && e.host === 'h1' && e.peer === 'h2' && Number(e.timeMs) >= since);
    const cutAt = Date.now();
    const heal = await cutUnderlay(lab, 'h1', 'h2');
    try {
      const down = await waitUntil(() => after(cutAt, 'tunnel-down') !== undefined, 20_000, 100);
      t.not(down, undefined, 'tunnel-down event for h1 -> h2');
      const e = after(cutAt, 'tunnel-down')!;
      t.log(`tunnel-down event ${Number(e.timeMs) - cutAt} ms after the cut (BFD detects in about 3 s)`);
      t.regex(e.detail, /gre-c612000c to h2 \(198\.18\.0\.12\): BFD down/);
      const r = await trace('c-h1', 'c-h2');
      t.regex(r.verdict, /^dropped: tunnel gre-c612000c to h2 is down \(BFD/);
      t.is(sample(await scrape('h1'), 'gremesh_tunnel_up', 'peer="h2"'), 0);
    } finally {
      await heal();
    }
    const healedAt = Date.now();
    const up = await waitUntil(() => after(healedAt, 'tunnel-up') !== undefined, 30_000, 100);
    t.not(up, undefined, 'tunnel-up event after the cut healed');
    t.regex((await trace('c-h1', 'c-h2')).verdict, /^delivered/);
    t.true((sample(await scrape('h1'), 'gremesh_tunnel_flaps_total', 'peer="h2"') ?? 0) >= 1, 'a BFD flap counted');
  },
);

serial('events: host joined, attach failed, host down and up; --since filters', async (t) => {
  await run('h3', 'bad-h3', 'nosuchnet');
  const failed = await waitUntil(
    () => eventLines().some((e) => e.kind === 'attach-failed' && e.host === 'h3' && e.detail.includes('bad-h3')),
    20_000,
    100,
  );
  t.not(failed, undefined, 'attach-failed event');
  await stopProcess(lab.dir, 'h3', 'agent', 'SIGKILL');
  const down = await waitUntil(() => eventLines().some((e) => e.kind === 'host-down' && e.host === 'h3'), 30_000, 200);
  t.not(down, undefined, 'host-down event once h3 is declared down (--down-after 5s in the lab)');
  startAgent(lab.dir, 'h3', args.h3!, ['--metrics', METRICS]);
  const up = await waitUntil(() => eventLines().some((e) => e.kind === 'host-up' && e.host === 'h3'), 30_000, 200);
  t.not(up, undefined, 'host-up event');
  const all = await coordctl(lab.dir, ['events', '-o', 'json']);
  const kinds = all.stdout
    .split('\n')
    .filter(Boolean)
    .map((l) => (JSON.parse(l) as { kind: string; host: string }).kind);
  t.is(kinds.filter((k) => k === 'host-joined').length, 3);
  const recent = await coordctl(lab.dir, ['events', '--since', '2s']);
  t.false(recent.stdout.includes('host-joined'), 'joins are older than 2 s');
  const text = (await coordctl(lab.dir, ['events'])).stdout;
  t.regex(text, /host-down +h3 +no contact for \d+ s/);
  t.log(text);
  await docker('h3', ['rm', '-f', 'bad-h3']);
});

nameCases({ lab: () => lab, args: () => args, metrics: METRICS });
policyCases({ lab: () => lab, args: () => args, metrics: METRICS, coordinatorArgs: COORDINATOR_ARGS });
