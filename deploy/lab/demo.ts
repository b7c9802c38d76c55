#!/usr/bin/env node
// The README's main job: a local multi-host lab with the whole of gremesh running in
// it: coordinator, hosts joined with coordctl, an agent per host, a container on each
// host, and the cross-host ping matrix. Replaces any lab already in the dir.
import { execa } from 'execa';
import { parse, runMain, elapsed, UsageError } from '../../common/cli.js';
import { systemPath } from '../../common/exec.js';
import { DEFAULT_DIR, down, requireState, up } from './lab.js';
import { coordctl, coordinatorDir, joinAll, startCoordinator } from './mesh.js';
import { IMAGE, OUTSIDE_IP, OUTSIDE_NAME, hostEnv } from './plan.js';

const HELP = `gremesh demo: a local multi-host lab running gremesh, with a cross-host ping matrix

Usage: node dist/deploy/lab/demo.js [--hosts N] [--dir DIR]     (root; N 2..8, default 3)

Brings up N simulated hosts (network namespaces with their own OVS and dockerd), starts
the coordinator, joins every host with "coordctl join", starts an agent per host, runs a
container per host with "docker run --network gremesh-default" (the Docker network each
agent makes for the gremesh network "default"), and
prints which container pings which. "make demo-down" removes it all.
`;

/** What every step of the demo works on; `ips` and `fails` fill in as the steps run. */
interface Demo {
  dir: string;
  n: number;
  hosts: string[];
  say: (l: string) => void;
  step: (l: string) => void;
  inNode: ReturnType<typeof nodeRunner>;
  ips: Record<string, string>;
  fails: number;
}

/** The flags: undefined after --help (printed). */
function parseDemoArgs(argv: string[]): { dir: string; n: number } | undefined {
  const { values } = parse(argv, { hosts: { type: 'string' }, dir: { type: 'string' } }, false);
  if (values.help) {
    process.stdout.write(HELP);
    return undefined;
  }
  const dir = (values.dir as string | undefined) ?? DEFAULT_DIR;
  const raw = (values.hosts as string | undefined) ?? '3';
  if (!/^\d+$/.test(raw) || Number(raw) < 2 || Number(raw) > 8)
    throw new UsageError(`--hosts must be 2..8 for the demo, got ${raw}`);
  const n = Number(raw);
  return { dir, n };
}

/** Runs a command in a lab node's namespace with its environment. */
function nodeRunner(dir: string) {
  const s = requireState(dir);
  const inNode = async (name: string, cmd: string[], reject = true) => {
    const node = s.plan.nodes.find((x) => x.name === name)!;
    return execa('nsenter', [`--net=/run/netns/${node.ns}`, ...cmd], {
      env: { PATH: systemPath(), ...hostEnv(dir, node) },
      reject,
    });
  };
  return inNode;
}

/** A fresh lab with the coordinator serving and every host joined (one agent per host). */
async function startLabAndMesh(dir: string, n: number): Promise<Demo> {
  const started = performance.now();
  const say = (l: string) => process.stdout.write(`${l}\n`);
  const step = (l: string) => say(`[${elapsed(started).padStart(7)}] ${l}`);
  if (await down({ dir, progress: () => {} })) step(`removed the previous lab in ${dir}`);
  await up({ dir, hosts: n, progress: (l) => say(`  lab ${l}`) });
  const hosts = Array.from({ length: n }, (_, i) => `h${i + 1}`);
  await startCoordinator(dir);
  step('coordinator listening on 198.18.0.2:7420 (namespace ctl)');
  await joinAll(dir, hosts);
  step(`joined ${hosts.join(', ')} with coordctl join; one gremesh-agent per host`);
  const inNode = nodeRunner(dir);
  return { dir, n, hosts, say, step, inNode, ips: {}, fails: 0 };
}

/** Once each agent has made the Docker network, a container per host on it. */
async function startContainers({ dir, hosts, step, inNode }: Demo): Promise<void> {
  // each agent makes the Docker network gremesh-default (the gremesh network "default") on its host
  for (const h of hosts) await waitDockerNetwork((cmd, reject) => inNode(h, cmd, reject), h, dir);
  step(`Docker network ${DOCKER_NETWORK} on every host (made by the agents)`);
  for (const h of hosts) {
    await inNode(h, [
      'docker',
      'run',
      '-d',
      '--network',
      DOCKER_NETWORK,
      '--name',
      `web-${h}`,
      IMAGE,
      'sleep',
      'infinity',
    ]);
  }
}

/** Each container's address, once the agent has attached it. */
async function waitContainerAddresses({ dir, hosts, step, inNode, ips }: Demo): Promise<void> {
  for (const h of hosts) {
    const end = Date.now() + 30_000;
    for (;;) {
      // attached = addressed and up (the agent raises the link once its flows exist)
      const r = await inNode(
        h,
        ['docker', 'exec', `web-${h}`, 'sh', '-c', 'ip -o link show eth0; ip -4 -o addr show eth0'],
        false,
      );
      const m = /inet (\d+\.\d+\.\d+\.\d+)/.exec(String(r.stdout));
      if (m && /[<,]UP[,>]/.test(String(r.stdout))) {
        ips[h] = m[1]!;
        break;
      }
      if (Date.now() > end) throw new Error(`container web-${h} got no address: see ${dir}/${h}/agent.log`);
      await new Promise((res) => setTimeout(res, 100));
    }
  }
  step(`containers: ${hosts.map((h) => `web-${h}@${h}=${ips[h]}`).join('  ')}`);
}

/**
 * The ping matrix by name, every container to every other (names across hosts: the agents'
 * resolvers behind Docker's own) and to the outside host (its name from the lab's outside
 * DNS server, through the same path); counts the failures.
 */
async function pingMatrix(d: Demo): Promise<void> {
  const { hosts, say, inNode } = d;
  const ping = async (h: string, name: string) => {
    for (let i = 0; i < 3; i++) {
      const r = await inNode(h, ['docker', 'exec', `web-${h}`, 'ping', '-c', '1', '-W', '1', name], false);
      if (r.exitCode === 0) return true;
    }
    return false;
  };
  say('');
  say(`ping matrix by name (from row to column), and each container to ${OUTSIDE_NAME} (${OUTSIDE_IP}):`);
  const cols = [...hosts.map((h) => `web-${h}`), 'outside'];
  say(['from \\ to'.padEnd(10), ...cols.map((c) => c.padEnd(9))].join(' '));
  let fails = 0;
  for (const a of hosts) {
    const row = [`web-${a}`.padEnd(10)];
    for (const b of hosts) {
      if (a === b) {
        row.push('-'.padEnd(9));
        continue;
      }
      const ok = await ping(a, `web-${b}`);
      if (!ok) fails++;
      row.push((ok ? 'ok' : 'FAIL').padEnd(9));
    }
    const out = await ping(a, OUTSIDE_NAME);
    if (!out) fails++;
    row.push(out ? 'ok' : 'FAIL');
    say(row.join(' '));
  }
  d.fails = fails;
}

/** `coordctl status`, once every tunnel's BFD is up (or after 10 s). */
async function printMeshStatus({ dir, n, say }: Demo): Promise<void> {
  say('');
  // tunnel health (BFD) settles within a few seconds of the tunnels coming up
  const end = Date.now() + 10_000;
  let status = await coordctl(dir, ['status', '-o', 'json']);
  while (
    Date.now() < end &&
    !(JSON.parse(status.stdout) as { hosts: { tunnels: { bfdState: string }[] }[] }).hosts.every(
      (h) => h.tunnels.length === n - 1 && h.tunnels.every((t) => t.bfdState === 'up'),
    )
  ) {
    await new Promise((res) => setTimeout(res, 250));
    status = await coordctl(dir, ['status', '-o', 'json']);
  }
  say((await coordctl(dir, ['status'])).stdout);
  say('');
  say((await coordctl(dir, ['names'])).stdout);
}

/** What to try next, and the verdict. */
async function printHints({ dir, say, step, fails }: Demo): Promise<void> {
  say('');
  say(
    `try:  GREMESH_DATA_DIR=${coordinatorDir(dir)} node dist/deploy/lab/main.js exec --dir ${dir} ctl -- node dist/coordinator/cli.js --coordinator 198.18.0.2:7420 hosts`,
  );
  say(
    `      node dist/deploy/lab/main.js exec --dir ${dir} h1 -- docker run --rm --network ${DOCKER_NETWORK} ${IMAGE} ping -c 3 web-h2`,
  );
  step(
    fails === 0
      ? 'demo ready: every container reaches every other and the outside; "make demo-down" removes it'
      : `demo up, but ${fails} pings failed`,
  );
}

/** The demo's steps after the lab and the mesh are up, in order. */
const STEPS: ((d: Demo) => Promise<void>)[] = [
  startContainers,
  waitContainerAddresses,
  pingMatrix,
  printMeshStatus,
  printHints,
];

async function main(argv: string[]): Promise<number> {
  const args = parseDemoArgs(argv);
  if (!args) return 0;
  const d = await startLabAndMesh(args.dir, args.n);
  for (const run of STEPS) await run(d);
  return d.fails === 0 ? 0 : 1;
}

/** the Docker network each agent makes for the gremesh network "default" (--docker-networks auto) */
const DOCKER_NETWORK = 'gremesh-default';

async function waitDockerNetwork(
  inNode: (cmd: string[], reject: boolean) => Promise<{ exitCode?: number }>,
  host: string,
  dir: string,
): Promise<void> {
  const end = Date.now() + 30_000;
  while ((await inNode(['docker', 'network', 'inspect', DOCKER_NETWORK], false)).exitCode !== 0) {
    if (Date.now() > end)
      throw new Error(`no Docker network ${DOCKER_NETWORK} on ${host}: see ${dir}/${host}/agent.log`);
    await new Promise((res) => setTimeout(res, 100));
  }
}

runMain('demo', main);
