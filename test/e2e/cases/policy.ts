// Policy inside a network on a real 3-host lab (the cases run on day2.test.ts's lab, after
// the names cases): a network "pol" with containers in groups web (h1, h3), db (h2) and
// none (h3). Isolation none is today's behaviour; isolation groups with one allow rule
// lets exactly that traffic through (a reply coming back proves both directions), denies
// the rest, keeps a group's members together across hosts, and trace names the rule; the
// rule is in the event log, and holds through an agent kill -9 and a coordinator restart.
import test from 'ava';
import { execa } from 'execa';
import { fileURLToPath } from 'node:url';
import { isRoot } from '../../helpers/cli.js';
import type { TestLab } from '../../helpers/lab.js';
import { sh, waitUntil } from '../../helpers/endpoint.js';
import { coordctl, startAgent, startCoordinator, stopProcess } from '../../../deploy/lab/mesh.js';
import { IMAGE } from '../../../deploy/lab/plan.js';

const serial = isRoot ? test.serial : test.skip;
const PROBE = fileURLToPath(new URL('../../helpers/tcp-probe.js', import.meta.url));
const NET = 'pol';
let lab: TestLab;
let args: Record<string, string[]> = {};
const ip: Record<string, string> = {};
const servers: { kill: () => void }[] = [];

const docker = async (h: string, a: string[]) => (await lab.exec(h, ['docker', ...a])).stdout.trim();
const pidOf = async (h: string, c: string) => Number(await docker(h, ['inspect', '-f', '{{.State.Pid}}', c]));
const where: Record<string, string> = { web1: 'h1', db: 'h2', web2: 'h3', other: 'h3' };
const ctl = async (a: string[]) => {
  const r = await coordctl(lab.dir, a);
  if (r.exitCode !== 0) throw new Error(`coordctl ${a.join(' ')}: ${r.stderr}`);
  return r.stdout;
};
/** `coordctl policy allow` of one TCP port on the network, as JSON: the rule's id */
const allowTcp = async (from: string, to: string, port: number) =>
  JSON.parse(
    await ctl([
      'policy',
      'allow',
      '--network',
      NET,
      '--from',
      from,
      '--to',
      to,
      '--proto',
      'tcp',
      '--port',
      String(port),
      '-o',
      'json',
    ]),
  ) as { id: string };
/** a TCP connection from container `from` to `to`:port; true when the reply came back */
const tcp = async (from: string, to: string, port: number, timeoutMs = 800): Promise<boolean> => {
  const pid = await pidOf(where[from]!, from);
  const r = await sh([
    'nsenter',
    '-t',
    String(pid),
    '-n',
    process.execPath,
    PROBE,
    'connect',
    ip[to]!,
    String(port),
    '--timeout',
    String(timeoutMs),
  ]);
  const o = JSON.parse(r.stdout.trim()) as { ok: boolean; reply?: string };
  return o.ok && o.reply === `ok ${port}`;
};
const ping = async (from: string, to: string) =>
  (
    await sh(
      ['nsenter', '-t', String(await pidOf(where[from]!, from)), '-n', 'ping', '-c', '1', '-W', '1', ip[to]!],
      {},
      false,
    )
  ).exitCode === 0;
/** the container's address once the agent plugged it in (its eth0 in its namespace) */
async function addressOf(c: string): Promise<string> {
  let addr = '';
  await waitUntil(
    async () => {
      const pid = await pidOf(where[c]!, c);
      const r = await sh(['nsenter', '-t', String(pid), '-n', 'ip', '-4', '-o', 'addr', 'show', 'eth0'], {}, false);
      addr = /inet (\S+)\//.exec(r.stdout)?.[1] ?? '';
      return addr !== '';
    },
    20_000,
    50,
  );
  if (!addr) throw new Error(`${c} got no address`);
  return addr;
}
/** every probe at once: name -> whether it passed */
const probeAll = async (probes: Record<string, () => Promise<boolean>>) =>
  Object.fromEntries(await Promise.all(Object.entries(probes).map(async ([k, f]) => [k, await f()] as const)));

async function setup(): Promise<void> {
  await ctl(['network', 'create', NET, '--cidr', '198.18.128.0/18', '--host-prefix-len', '24']);
  const group: Record<string, string | undefined> = { web1: 'web', db: 'db', web2: 'web', other: undefined };
  await Promise.all(
    Object.entries(where).map(([c, h]) =>
      docker(h, [
        'run',
        '-d',
        '--net=none',
        '--name',
        c,
        '-l',
        `gremesh.network=${NET}`,
        ...(group[c] ? ['-l', `gremesh.group=${group[c]}`] : []),
        IMAGE,
        'sleep',
        '3600',
      ]),
    ),
  );
  for (const c of Object.keys(where)) ip[c] = await addressOf(c);
  // servers on db (5432, 80) and web1 (5432: the reverse direction), in the containers' namespaces
  for (const [c, ports] of [
    ['db', ['5432', '80']],
    ['web1', ['5432']],
    ['web2', ['80']],
  ] as const) {
    // under timeout: gone on their own should the after hook never run
    const p = execa(
      'nsenter',
      ['-t', String(await pidOf(where[c]!, c)), '-n', 'timeout', '300', process.execPath, PROBE, 'serve', ...ports],
      { reject: false },
    );
    servers.push({ kill: () => p.kill('SIGTERM') });
  }
  const ready = await waitUntil(() => tcp('web1', 'db', 5432, 300), 20_000, 100);
  if (!ready) throw new Error('web1 never reached db before any policy');
}

export function policyCases(ctx: {
  lab: () => TestLab;
  args: () => Record<string, string[]>;
  metrics: string;
  coordinatorArgs: string[];
}): void {
  let ready: Promise<void> | undefined;
  const use = () => {
    lab = ctx.lab();
    args = ctx.args();
    ready ??= setup();
    return ready;
  };
  test.after.always(() => servers.forEach((s) => s.kill()));

  serial('policy: isolation none is today: every container reaches every other, groups or not', async (t) => {
    await use();
    const r = await probeAll({
      'web1->db 5432': () => tcp('web1', 'db', 5432),
      'other->db 80': () => tcp('other', 'db', 80),
      'db->web1 5432': () => tcp('db', 'web1', 5432),
      'other ping db': () => ping('other', 'db'),
    });
    t.deepEqual(Object.values(r), [true, true, true, true], JSON.stringify(r));
  });

  serial(
    'policy: isolation groups + allow web -> db tcp/5432: exactly that passes (replies too), the rest is dropped; a group holds across hosts; trace names the rule',
    async (t) => {
      await use();
      t.regex(await ctl(['network', 'update', NET, '--isolation', 'groups']), /isolation groups/);
      const added = await allowTcp('web', 'db', 5432);
      t.regex(added.id, /^r\d+$/);
      // the same rule again is the same rule (idempotent)
      t.is((await allowTcp('WEB', 'db', 5432)).id, added.id);
      const enforced = await waitUntil(async () => !(await tcp('other', 'db', 5432, 300)), 10_000, 50);
      t.not(enforced, undefined, 'the rule reached h2');
      const r = await probeAll({
        'web1->db 5432 (allowed)': () => tcp('web1', 'db', 5432),
        'web2->db 5432 (allowed, from h3)': () => tcp('web2', 'db', 5432),
        'web1->web2 80 (same group)': () => tcp('web1', 'web2', 80),
        'web1 ping web2 (same group)': () => ping('web1', 'web2'),
        'web1->db 80': () => tcp('web1', 'db', 80),
        'other->db 5432': () => tcp('other', 'db', 5432),
        'db->web1 5432 (reverse)': () => tcp('db', 'web1', 5432),
        'web1 ping db': () => ping('web1', 'db'),
        'other ping web2 (same host)': () => ping('other', 'web2'),
      });
      t.deepEqual(Object.values(r), [true, true, true, true, false, false, false, false, false], JSON.stringify(r));
      const trace = async (...a: string[]) =>
        JSON.parse(await ctl(['trace', ...a, '-o', 'json'])) as { verdict: string };
      const ok = await trace('web1', 'db', '--proto', 'tcp', '--port', '5432');
      t.regex(
        ok.verdict,
        new RegExp(`delivered to db on h2.*policy: rule ${added.id} \\(allow web -> db tcp/5432\\): allowed`),
      );
      const no = await trace('web1', 'db', '--proto', 'tcp', '--port', '80');
      t.regex(no.verdict, /dropped by policy: no rule allows it \(isolation groups\)/);
      // h2's metrics count what each rule decided there (read from the flows at the scrape)
      const metrics = (
        await lab.exec('h2', [
          'node',
          '-e',
          `fetch('http://${ctx.metrics}/metrics').then((r) => r.text()).then((t) => process.stdout.write(t))`,
        ])
      ).stdout;
      const packets = (rule: string, verdict: string) =>
        Number(
          new RegExp(
            `^gremesh_policy_packets\\{[^}]*network="${NET}",rule="${rule}",verdict="${verdict}"[^}]*\\} (\\d+)`,
            'm',
          ).exec(metrics)?.[1] ?? -1,
        );
      t.true(packets(added.id, 'allowed') > 0, `${added.id} allowed packets on h2`);
      t.true(packets('default', 'dropped') > 0, 'default-dropped packets on h2');
      const list = await ctl(['policy', 'list', '--network', NET]);
      t.regex(list, new RegExp(`${NET}\\s+groups\\s+${added.id}\\s+allow web -> db tcp/5432`));
      const events = await ctl(['events', '-o', 'json']);
      t.regex(events, new RegExp(`"kind":"policy-changed".*${NET}: ${added.id} allow web -> db tcp/5432 added`));
      // one-line errors, nothing added
      for (const bad of [
        ['policy', 'allow', '--network', 'nope', '--from', 'web', '--to', 'db'],
        ['policy', 'allow', '--network', NET, '--from', 'web', '--to', 'outside'],
        ['policy', 'allow', '--network', NET, '--from', 'web', '--to', 'db', '--port', '80'],
      ]) {
        const e = await coordctl(lab.dir, bad);
        t.not(e.exitCode, 0, bad.join(' '));
        t.is(e.stderr.trim().split('\n').length, 1, `one line: ${e.stderr}`);
      }
      t.is(
        (JSON.parse(await ctl(['policy', 'list', '--network', NET, '-o', 'json'])) as { rules: unknown[] }[])[0]!.rules
          .length,
        1,
      );
    },
  );

  serial('policy: the rule holds through an agent kill -9 and a coordinator restart', async (t) => {
    await use();
    await stopProcess(lab.dir, 'h2', 'agent', 'SIGKILL');
    startAgent(lab.dir, 'h2', args.h2!, ['--metrics', ctx.metrics]);
    await stopProcess(lab.dir, 'ctl', 'coordinator');
    await startCoordinator(lab.dir, ctx.coordinatorArgs);
    t.regex(await ctl(['policy', 'list', '--network', NET]), /allow web -> db tcp\/5432/);
    // a new container in group web on h1 after both restarts: allowed to db, other still not
    await docker('h1', [
      'run',
      '-d',
      '--net=none',
      '--name',
      'web3',
      '-l',
      `gremesh.network=${NET}`,
      '-l',
      'gremesh.group=web',
      IMAGE,
      'sleep',
      '3600',
    ]);
    where.web3 = 'h1';
    ip.web3 = await addressOf('web3');
    const reached = await waitUntil(() => tcp('web3', 'db', 5432, 300), 20_000, 100);
    t.not(reached, undefined, 'web3 (new, group web) reaches db:5432 after the restarts');
    const r = await probeAll({
      'other->db 5432': () => tcp('other', 'db', 5432),
      'web3->db 80': () => tcp('web3', 'db', 80),
    });
    t.deepEqual(Object.values(r), [false, false], JSON.stringify(r));
  });
}
