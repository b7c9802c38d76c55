// Names across hosts on a real 3-host lab (the cases run on day2.test.ts's lab: 3 hosts,
// networks default and blue, agents with --metrics): containers (plugin and label path)
// resolve every container of their network on any host by name, alias and hostname through
// Docker's own resolver (or, on the label path, their resolv.conf's server); outside names
// still resolve; names are per network; churn leaves no stale answer; the resolver answers
// only its own network's containers, not the underlay or another network.
import test from 'ava';
import { fileURLToPath } from 'node:url';
import { isRoot } from '../../helpers/cli.js';
import type { TestLab } from '../../helpers/lab.js';
import { sh, waitUntil } from '../../helpers/endpoint.js';
import { coordctl, startAgent, stopProcess } from '../../../deploy/lab/mesh.js';
import { IMAGE, OUTSIDE_IP, OUTSIDE_NAME } from '../../../deploy/lab/plan.js';

const serial = isRoot ? test.serial : test.skip;
const PROBE = fileURLToPath(new URL('../../helpers/dns-probe.js', import.meta.url));
let lab: TestLab;
let args: Record<string, string[]> = {};
let METRICS = '';

interface Answer {
  ms: number;
  at: number;
  rcode?: number;
  addresses?: string[];
  timeout?: true;
  done?: boolean;
}

const docker = async (h: string, a: string[]) => (await lab.exec(h, ['docker', ...a])).stdout.trim();
const pidOf = async (h: string, c: string) => Number(await docker(h, ['inspect', '-f', '{{.State.Pid}}', c]));
/** a plugin-path container (docker run --network) */
const runNet = (h: string, name: string, network: string, more: string[] = []) =>
  docker(h, ['run', '-d', '--name', name, '--network', network, ...more, IMAGE, 'sleep', '3600']);
/** a label-path container (--net=none + gremesh.network) */
const runLabel = (h: string, name: string, more: string[] = []) =>
  docker(h, [
    'run',
    '-d',
    '--net=none',
    '--name',
    name,
    '-l',
    'gremesh.network=default',
    ...more,
    IMAGE,
    'sleep',
    '3600',
  ]);
/** dns-probe.js inside a container's network namespace */
const probe = async (h: string, c: string, a: string[]): Promise<Answer[]> => {
  const r = await sh(['nsenter', '-t', String(await pidOf(h, c)), '-n', process.execPath, PROBE, ...a], {}, false);
  if (r.exitCode !== 0) throw new Error(`dns-probe ${a.join(' ')}: ${r.stderr}`);
  return r.stdout
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as Answer);
};
/** one A query through Docker's resolver (plugin path) or the resolv.conf server (label path) */
const lookup = async (h: string, c: string, name: string, server = '127.0.0.11') =>
  (await probe(h, c, ['once', '--server', server, '--name', name]))[0]!;
const ipOf = async (h: string, c: string, network = 'gremesh-default') =>
  docker(h, ['inspect', '-f', `{{(index .NetworkSettings.Networks "${network}").IPAddress}}`, c]);
const labelIp = async (h: string, c: string) => {
  const r = await sh(['nsenter', '-t', String(await pidOf(h, c)), '-n', 'ip', '-j', '-4', 'addr', 'show', 'eth0']);
  return (JSON.parse(r.stdout) as { addr_info: { local: string }[] }[])[0]!.addr_info[0]!.local;
};
const NXDOMAIN = 3;
const ip: Record<string, string> = {};

let ready: Promise<void> | undefined;
/** the cases' containers, started once, by the first case that runs */
const setup = () => (ready ??= startContainers());
async function startContainers(): Promise<void> {
  // the Docker network the agents make for blue
  const blue = await waitUntil(async () => {
    const ls = await Promise.all(['h1', 'h2'].map((h) => docker(h, ['network', 'ls', '--format', '{{.Name}}'])));
    return ls.every((l) => l.split('\n').includes('blue'));
  }, 30_000);
  if (blue === undefined) throw new Error('no Docker network blue');
  await Promise.all([
    runNet('h2', 'web', 'gremesh-default', ['--hostname', 'webhost', '--network-alias', 'www']),
    runNet('h3', 'api1', 'gremesh-default', ['--network-alias', 'api']),
    runLabel('h2', 'api2', ['-l', 'gremesh.aliases=api']),
    runLabel('h2', 'lbl'),
    runNet('h2', 'nb-h2', 'blue'),
    runNet('h1', 'bad_name', 'gremesh-default'),
    runNet('h1', 'p-h1', 'gremesh-default'),
    runLabel('h1', 'q-h1'),
    runNet('h1', 'pb-h1', 'blue'),
    runNet('h3', 'p-h3', 'gremesh-default'),
  ]);
  ip.web = await ipOf('h2', 'web');
  ip.api1 = await ipOf('h3', 'api1');
  ip['nb-h2'] = await ipOf('h2', 'nb-h2', 'blue');
  ip.bad = await ipOf('h1', 'bad_name');
  const labelled = await waitUntil(async () => {
    try {
      ip.api2 = await labelIp('h2', 'api2');
      ip.lbl = await labelIp('h2', 'lbl');
      return true;
    } catch {
      return false;
    }
  }, 30_000);
  if (labelled === undefined) throw new Error('label-path containers not attached');
  // every name known everywhere: the last one reported answers on h1
  const known = await waitUntil(async () => (await lookup('h1', 'p-h1', 'api')).addresses?.length === 2, 30_000);
  if (known === undefined) throw new Error('names not answered on h1');
}

/**
 * Registers the names cases on a lab that has hosts h1..h3, networks default and blue (with
 * their Docker networks), and agents started with `--metrics ADDR` from the join args `args`.
 */
export function nameCases(ctx: { lab: () => TestLab; args: () => Record<string, string[]>; metrics: string }): void {
  const use = async () => {
    lab = ctx.lab();
    args = ctx.args();
    METRICS = ctx.metrics;
    await setup();
  };

  serial(
    'names across hosts: container name, hostname and alias, plugin and label path, through Docker’s resolver',
    async (t) => {
      await use();
      for (const [name, want] of [
        ['web', ip.web],
        ['WWW', ip.web],
        ['webhost', ip.web],
        ['lbl', ip.lbl],
        ['api1', ip.api1],
        ['api2', ip.api2],
      ] as const) {
        const a = await lookup('h1', 'p-h1', name);
        t.deepEqual(a.addresses, [want], `${name} from a plugin container on h1`);
      }
      // an alias two containers hold (on h2 and h3, label and plugin path): both, rotated
      const api = [await lookup('h1', 'p-h1', 'api'), await lookup('h1', 'p-h1', 'api')];
      t.deepEqual([...api[0]!.addresses!].sort(), [ip.api1, ip.api2].sort());
      t.notDeepEqual(api[0]!.addresses, api[1]!.addresses, 'round-robin: the next answer starts elsewhere');
      // a label-path container asks its resolv.conf's server (the host's upstream): the same answers
      t.deepEqual((await lookup('h1', 'q-h1', 'web', OUTSIDE_IP)).addresses, [ip.web]);
      t.is((await lookup('h1', 'q-h1', 'api', OUTSIDE_IP)).addresses?.length, 2);
      // the outside world resolves as before, through the host's upstream
      t.deepEqual((await lookup('h1', 'p-h1', OUTSIDE_NAME)).addresses, [OUTSIDE_IP]);
      t.deepEqual((await lookup('h1', 'q-h1', OUTSIDE_NAME, OUTSIDE_IP)).addresses, [OUTSIDE_IP]);
      t.is((await lookup('h1', 'p-h1', 'nosuch.gremesh.test')).rcode, NXDOMAIN);
      // what an application does: ping by name
      const ping = await lab.exec('h1', ['docker', 'exec', 'p-h1', 'ping', '-c', '1', '-W', '2', 'web'], {
        reject: false,
      });
      t.is(ping.exitCode, 0, ping.stdout + ping.stderr);
      // coordctl names: every name with its holders; the shared alias said
      const names = JSON.parse((await coordctl(lab.dir, ['names', 'default', '-o', 'json'])).stdout) as {
        name: string;
        holders: { ip: string; host: string }[];
      }[];
      const api2 = names.find((n) => n.name === 'api')!;
      t.deepEqual(api2.holders.map((h) => h.host).sort(), ['h2', 'h3']);
      t.deepEqual(
        names.find((n) => n.name === 'webhost')?.holders.map((h) => h.ip),
        [ip.web],
      );
      t.regex((await coordctl(lab.dir, ['names'])).stdout, /api .*shared by 2/);
      t.is((await coordctl(lab.dir, ['names', 'nosuch'])).exitCode, 1);
    },
  );

  serial('names are per network; an invalid name is attached but not named, and said so', async (t) => {
    await use();
    t.deepEqual((await lookup('h1', 'pb-h1', 'nb-h2')).addresses, [ip['nb-h2']]);
    t.is((await lookup('h1', 'pb-h1', 'web')).rcode, NXDOMAIN, 'blue does not resolve default’s names');
    t.is((await lookup('h1', 'p-h1', 'nb-h2')).rcode, NXDOMAIN, 'default does not resolve blue’s names');
    // bad_name (an underscore): reachable, not named (Docker's resolver still knows it on h1 itself)
    t.is((await lookup('h3', 'p-h3', 'bad_name')).rcode, NXDOMAIN);
    const ping = await lab.exec('h3', ['docker', 'exec', 'p-h3', 'ping', '-c', '1', '-W', '2', ip.bad!], {
      reject: false,
    });
    t.is(ping.exitCode, 0);
    const h1 = JSON.parse((await coordctl(lab.dir, ['host', 'h1', '-o', 'json'])).stdout) as {
      attachErrors: { container: string; reason: string }[];
    };
    t.true(
      h1.attachErrors.some((e) => e.container === 'bad_name' && /attached, but not named "bad_name"/.test(e.reason)),
      JSON.stringify(h1.attachErrors),
    );
  });

  serial(
    'churn: a name answers on other hosts right after docker run, and is gone within 1 s of docker rm -f; never stale',
    async (t) => {
      await use();
      const cycles = 5;
      // h1 watches the shared alias through the whole run; every answer is checked against who lived then
      const watch = probe('h1', 'p-h1', ['watch', '--name', 'churn', '--every', '10', '--for', String(cycles * 1200)]);
      const lived: { ip: string; from: number; to: number }[] = [];
      const appear: number[] = [];
      const vanish: number[] = [];
      for (let i = 0; i < cycles; i++) {
        const name = `churn-${i}`;
        const from = Date.now();
        await runNet('h2', name, 'gremesh-default', ['--network-alias', 'churn']);
        const started = Date.now();
        const seen = await probe('h3', 'p-h3', ['until', '--name', name, '--want', 'present', '--every', '2']);
        t.true(seen[0]!.done, `${name} answered on h3`);
        appear.push(seen[0]!.at - started);
        const cip = await ipOf('h2', name);
        t.deepEqual(seen[0]!.addresses, [cip]);
        await docker('h2', ['rm', '-f', name]);
        const removed = Date.now();
        lived.push({ ip: cip, from, to: removed });
        const gone = await probe('h3', 'p-h3', ['until', '--name', name, '--want', 'absent', '--every', '2']);
        t.true(gone[0]!.done);
        t.is(gone[0]!.rcode, NXDOMAIN);
        vanish.push(gone[0]!.at - removed);
      }
      const answers = await watch;
      const stale = answers.filter((a) =>
        (a.addresses ?? []).some((x) => !lived.some((l) => l.ip === x && a.at >= l.from && a.at <= l.to + 1000)),
      );
      t.log(
        `answered on h3 after docker run returned: ${appear.join(', ')} ms; NXDOMAIN after rm -f: ${vanish.join(', ')} ms`,
      );
      t.log(`${answers.length} lookups of the alias on h1 during the churn, ${stale.length} naming a gone container`);
      t.true(answers.length > 100);
      t.is(stale.length, 0, JSON.stringify(stale.slice(0, 3)));
      t.true(
        vanish.every((ms) => ms <= 1000),
        `NXDOMAIN within 1 s of docker rm -f: ${vanish.join(', ')} ms`,
      );
    },
  );

  serial('the resolver answers only its network’s containers: not the underlay, not another network', async (t) => {
    await use();
    const gw = '198.18.64.1'; // h1's gateway on default
    const direct = (h: string, c: string) => probe(h, c, ['once', '--server', gw, '--name', 'web', '--wait', '800']);
    t.deepEqual((await direct('h1', 'p-h1'))[0]!.addresses, [ip.web], 'positive control: default’s container on h1');
    t.true((await direct('h1', 'pb-h1'))[0]!.timeout, 'a blue container gets no answer');
    // from the underlay: the coordinator's namespace, routed straight to h1
    await lab.exec('ctl', [
      'ip',
      'route',
      'add',
      `${gw}/32`,
      'via',
      lab.state.plan.nodes.find((n) => n.name === 'h1')!.ip,
    ]);
    try {
      const r = await lab.exec('ctl', [
        process.execPath,
        PROBE,
        'once',
        '--server',
        gw,
        '--name',
        'web',
        '--wait',
        '1500',
      ]);
      t.true((JSON.parse(r.stdout) as Answer).timeout, 'the underlay gets no answer');
    } finally {
      await lab.exec('ctl', ['ip', 'route', 'del', `${gw}/32`]);
    }
  });

  serial('day-2: trace shows the DNS step and takes DNS names; metrics count queries by outcome', async (t) => {
    await use();
    const r = await coordctl(lab.dir, ['trace', 'p-h1', `outside:${OUTSIDE_IP}`, '--proto', 'udp', '--port', '53']);
    t.is(r.exitCode, 0, r.stderr);
    t.regex(r.stdout, /DNS: to the names resolver on 198\.18\.64\.1:53 by `iifname "gmgw1" .* dnat to 198\.18\.64\.1`/);
    const byAlias = await coordctl(lab.dir, ['trace', 'p-h1', 'www']);
    t.regex(byAlias.stdout, /verdict: delivered to web on h2/);
    const text = (
      await lab.exec('h1', [
        'node',
        '-e',
        `fetch('http://${METRICS}/metrics').then((r) => r.text()).then((t) => process.stdout.write(t))`,
      ])
    ).stdout;
    for (const outcome of ['answered', 'forwarded', 'nxdomain'])
      t.regex(
        text,
        new RegExp(`gremesh_dns_queries_total\\{network="default",outcome="${outcome}",host="h1"\\} [1-9]`),
        outcome,
      );
  });

  serial('after an agent restart the names answer again as soon as the agent is back', async (t) => {
    await use();
    await stopProcess(lab.dir, 'h1', 'agent', 'SIGKILL');
    startAgent(lab.dir, 'h1', args.h1!, ['--metrics', METRICS]);
    const back = await waitUntil(async () => (await lookup('h1', 'p-h1', 'web')).addresses?.[0] === ip.web, 30_000);
    t.not(back, undefined);
    t.log(`answers again ${back} ms after the agent started`);
  });
}
