#!/usr/bin/env node
// gremesh-lab: N simulated Docker hosts on one machine, each a network namespace with
// its own ovsdb-server/ovs-vswitchd (userspace datapath) and dockerd.
import { spawn } from 'node:child_process';
import { parse, outputFormat, runMain, table, UsageError } from '../../common/cli.js';
import { systemPath } from '../../common/exec.js';
import * as os from 'node:os';
import { hostEnv, validateControlPlane, DEFAULT_PREFIX, TEST_PREFIX } from './plan.js';
import { DEFAULT_DIR, down, nodeByName, nsPrefix, requireState, status, sweep, up } from './lab.js';
import { coordinatorAddrs, startCoordinators } from './mesh.js';

const HELP = `gremesh-lab: simulated multi-host lab on one machine (root)

Usage:
  gremesh-lab up [--hosts N] [--dir DIR] [--prefix P] [--bare-docker]
                 [--etcd M] [--coordinators K [--coordinator-flags "FLAGS"]]
                                              create N hosts (1..32, default 3); namespaces
                                              are named P-ID-NODE (P default ${DEFAULT_PREFIX}); each
                                              host's dockerd runs with Docker's defaults
                                              (iptables on, docker0), or with --bare-docker
                                              without networking of its own.
                                              --etcd M (1, 3 or 5): an etcd cluster, members
                                              e1..eM on 198.18.0.3.. in namespaces of their own.
                                              --coordinators K (1..3): start K coordinators
                                              (ctl 198.18.0.2, ctl2 .8, ctl3 .9), on the etcd
                                              cluster when there is one; without the flag no
                                              coordinator is started. --coordinator-flags:
                                              more gremesh-coordinator flags for each of them
                                              (--coordinator-flags="--host-prefix-len 26")
  gremesh-lab down [--dir DIR]                stop and remove everything the lab made
  gremesh-lab sweep --prefix P [--tmp DIR]    remove every lab with prefix P whose dir is
                                              DIR/P-* (default the OS temp dir), also ones
                                              killed halfway: what \`make test\` runs
                                              before and after the suite (P=${TEST_PREFIX})
  gremesh-lab status [--dir DIR] [-o table|json]
  gremesh-lab env HOST [--dir DIR]            print exports pointing docker/ovs-vsctl at HOST
  gremesh-lab exec [--dir DIR] HOST -- CMD... run CMD in HOST's namespace with that environment

Hosts are h1..hN; "ctl" (198.18.0.2, for the coordinator) and "out" (the outside,
198.51.100.1, router 198.18.0.254) are namespaces too. DIR defaults to ${DEFAULT_DIR}
(or GREMESH_LAB_DIR).
`;

const common = { dir: { type: 'string' as const }, output: { type: 'string' as const, short: 'o' } };
const dirOf = (v: unknown) => (v as string | undefined) ?? process.env.GREMESH_LAB_DIR ?? DEFAULT_DIR;

/** gremesh-lab up: create the lab, and its coordinators with --coordinators. */
async function labUp(rest: string[]): Promise<number> {
  const { values, positionals } = parse(
    rest,
    {
      ...common,
      hosts: { type: 'string', short: 'n' },
      prefix: { type: 'string' },
      'bare-docker': { type: 'boolean' },
      etcd: { type: 'string' },
      coordinators: { type: 'string' },
      'coordinator-flags': { type: 'string' },
    },
    false,
  );
  if (values.help) {
    process.stdout.write(HELP);
    return 0;
  }
  void positionals;
  const raw = (values.hosts as string | undefined) ?? '3';
  if (!/^\d+$/.test(raw)) throw new UsageError(`--hosts must be a whole number from 1 to 32, got ${raw}`);
  const whole = (flag: string, v: unknown, dflt: number) => {
    if (v === undefined) return dflt;
    if (!/^\d+$/.test(String(v))) throw new UsageError(`--${flag} must be a whole number, got ${String(v)}`);
    return Number(v);
  };
  const etcd = whole('etcd', values.etcd, 0);
  const coordinators = whole('coordinators', values.coordinators, 1);
  const err = validateControlPlane(etcd, coordinators);
  if (err) throw new UsageError(err);
  const coordFlags = ((values['coordinator-flags'] as string | undefined) ?? '').split(/\s+/).filter(Boolean);
  if (coordFlags.length && values.coordinators === undefined)
    throw new UsageError('--coordinator-flags needs --coordinators');
  const dir = dirOf(values.dir);
  const progress = (l: string) => process.stdout.write(`${l}\n`);
  await up({
    dir,
    hosts: Number(raw),
    prefix: values.prefix as string | undefined,
    docker: values['bare-docker'] ? 'bare' : 'default',
    etcd,
    coordinators,
    progress,
  });
  if (values.coordinators !== undefined) {
    try {
      await startCoordinators(dir, coordFlags);
    } catch (e) {
      progress(`coordinators failed: ${(e as Error).message}; removing the lab`);
      await down({ dir, progress: () => {} });
      throw e;
    }
    progress(`${coordinators} coordinator(s) serving${etcd ? ' on etcd' : ''}: ${coordinatorAddrs(dir)}`);
  }
  return 0;
}

/** gremesh-lab sweep: remove every lab with a prefix, also ones killed halfway. */
async function labSweep(rest: string[]): Promise<number> {
  const { values } = parse(rest, { ...common, prefix: { type: 'string' }, tmp: { type: 'string' } }, false);
  if (values.help) {
    process.stdout.write(HELP);
    return 0;
  }
  const prefix = values.prefix as string | undefined;
  if (!prefix) throw new UsageError('sweep needs --prefix (the test suite uses --prefix gmt)');
  const r = await sweep({
    prefix,
    tmpDir: (values.tmp as string | undefined) ?? os.tmpdir(),
    progress: (l) => process.stdout.write(`gremesh-lab sweep: ${l}\n`),
  });
  if (values.output === 'json') process.stdout.write(`${JSON.stringify(r)}\n`);
  else if (r.labs + r.processes + r.namespaces + r.dirs === 0)
    process.stdout.write(`gremesh-lab sweep: no ${prefix} lab left over\n`);
  return 0;
}

/** gremesh-lab down: stop and remove everything the lab made. */
async function labDown(rest: string[]): Promise<number> {
  const { values } = parse(rest, common, false);
  if (values.help) {
    process.stdout.write(HELP);
    return 0;
  }
  const dir = dirOf(values.dir);
  const had = await down({ dir, progress: (l) => process.stdout.write(`${l}\n`) });
  if (!had) process.stdout.write(`no lab in ${dir}: nothing to do\n`);
  return 0;
}

/** gremesh-lab status: the lab's nodes and processes, as a table or JSON. */
async function labStatus(rest: string[]): Promise<number> {
  const { values } = parse(rest, common, false);
  if (values.help) {
    process.stdout.write(HELP);
    return 0;
  }
  const fmt = outputFormat(values.output);
  const dir = dirOf(values.dir);
  const s = status(dir);
  if (!s) {
    if (fmt === 'json') process.stdout.write('null\n');
    else process.stdout.write(`no lab in ${dir}\n`);
    return 1;
  }
  if (fmt === 'json') {
    process.stdout.write(`${JSON.stringify(s, null, 2)}\n`);
    return 0;
  }
  process.stdout.write(`lab ${s.id} (${s.status}) in ${s.dir}\n`);
  const rows = [['NODE', 'ROLE', 'NAMESPACE', 'UNDERLAY', 'PROCESSES']];
  for (const n of s.nodes) {
    rows.push([
      n.name,
      n.role,
      n.nsExists ? n.ns : `${n.ns} (missing)`,
      n.underlayIp,
      n.processes.map((p) => `${p.what}:${p.pid}${p.running ? '' : '(dead)'}`).join(' ') || '-',
    ]);
  }
  process.stdout.write(`${table(rows)}\n`);
  return 0;
}

/** gremesh-lab env HOST: exports pointing docker/ovs-vsctl at HOST. */
async function labEnv(rest: string[]): Promise<number> {
  const { values, positionals } = parse(rest, common);
  if (values.help) {
    process.stdout.write(HELP);
    return 0;
  }
  if (positionals.length !== 1) throw new UsageError('usage: gremesh-lab env HOST');
  const s = requireState(dirOf(values.dir));
  const env = hostEnv(s.dir, nodeByName(s, positionals[0]!));
  for (const [k, v] of Object.entries(env)) process.stdout.write(`export ${k}=${v}\n`);
  return 0;
}

/** gremesh-lab exec HOST -- CMD...: CMD in HOST's namespace with its environment. */
async function labExec(rest: string[]): Promise<number> {
  const dd = rest.indexOf('--');
  if (dd < 0) throw new UsageError('usage: gremesh-lab exec [--dir DIR] HOST -- CMD...');
  const { values, positionals } = parse(rest.slice(0, dd), common);
  const cmdv = rest.slice(dd + 1);
  if (positionals.length !== 1 || cmdv.length === 0)
    throw new UsageError('usage: gremesh-lab exec [--dir DIR] HOST -- CMD...');
  const s = requireState(dirOf(values.dir));
  const node = nodeByName(s, positionals[0]!);
  const argvFull = [...nsPrefix(node.ns), ...cmdv];
  const child = spawn(argvFull[0]!, argvFull.slice(1), {
    stdio: 'inherit',
    env: { ...process.env, PATH: systemPath(), ...hostEnv(s.dir, node) },
  });
  return await new Promise<number>((resolve) => {
    child.on('error', (e) => {
      process.stderr.write(`gremesh-lab: ${e.message}\n`);
      resolve(127);
    });
    child.on('exit', (code, sig) => resolve(code ?? (sig ? 128 : 1)));
  });
}

/** The subcommands, by name. */
const COMMANDS: Record<string, (rest: string[]) => Promise<number>> = {
  up: labUp,
  sweep: labSweep,
  down: labDown,
  status: labStatus,
  env: labEnv,
  exec: labExec,
};

async function main(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  if (!cmd || cmd === '--help' || cmd === '-h' || cmd === 'help') {
    process.stdout.write(HELP);
    return cmd ? 0 : 2;
  }
  if (!Object.hasOwn(COMMANDS, cmd)) throw new UsageError(`unknown command "${cmd}" (try --help)`);
  return await COMMANDS[cmd]!(rest);
}

runMain('gremesh-lab', main);
