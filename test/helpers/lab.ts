// A lab for one test file: up in a temp dir, torn down even when the test fails.
import type { ExecutionContext } from 'ava';
import { execa } from 'execa';
import { systemPath } from '../../common/exec.js';
import * as fs from 'node:fs';
import { BIN, cli, tempDir } from './cli.js';
import { readState, recordNetns, type LabState } from '../../deploy/lab/lab.js';
import { hostEnv, labNs, SWITCH_BRIDGE, TEST_PREFIX } from '../../deploy/lab/plan.js';

export interface TestLab {
  dir: string;
  state: LabState;
  /** run argv inside a lab node's namespace with its docker/ovs environment */
  exec(
    node: string,
    argv: string[],
    opts?: { reject?: boolean; timeoutMs?: number; input?: string },
  ): Promise<{ stdout: string; stderr: string; exitCode: number }>;
  down(): Promise<void>;
}

/** extra: more `gremesh-lab up` flags (--etcd 3, ...) */
export async function labUp(hosts: number, extra: string[] = []): Promise<TestLab> {
  const dir = tempDir(TEST_PREFIX);
  const r = await cli(
    BIN.lab,
    ['up', '--hosts', String(hosts), '--dir', dir, '--prefix', TEST_PREFIX, ...extra],
    {},
    300_000,
  );
  if (r.exitCode !== 0) throw new Error(`lab up failed (${r.exitCode}): ${r.stderr}\n${r.stdout}`);
  const state = readState(dir)!;
  let isDown = false;
  return {
    dir,
    state,
    async exec(node, argv, opts = {}) {
      const n = state.plan.nodes.find((x) => x.name === node);
      if (!n) throw new Error(`no lab node ${node}`);
      const res = await execa('nsenter', [`--net=/run/netns/${n.ns}`, ...argv], {
        reject: false,
        env: { PATH: systemPath(), ...hostEnv(dir, n) },
        timeout: opts.timeoutMs ?? 60_000,
        input: opts.input,
      });
      const out = { stdout: String(res.stdout ?? ''), stderr: String(res.stderr ?? ''), exitCode: res.exitCode ?? -1 };
      if (opts.reject !== false && out.exitCode !== 0)
        throw new Error(`${node}: ${argv.join(' ')} exited ${out.exitCode}: ${out.stderr}`);
      return out;
    },
    async down() {
      if (isDown) return;
      isDown = true;
      const d = await cli(BIN.lab, ['down', '--dir', dir], {}, 300_000);
      if (d.exitCode !== 0) throw new Error(`lab down failed: ${d.stderr}`);
    },
  };
}

/** Register teardown on the test context so the lab goes away whatever happens. */
export function downAlways(t: ExecutionContext, lab: TestLab): void {
  t.teardown(async () => {
    await lab.down();
    fs.rmSync(lab.dir, { recursive: true, force: true });
  });
}

/** Drops underlay traffic between two lab nodes at the switch (both directions); resolves to the undo. */
export async function cutUnderlay(lab: TestLab, a: string, b: string): Promise<() => Promise<void>> {
  const sw = ['nsenter', `--net=/run/netns/${lab.state.plan.switchNs}`];
  const tbl = `cut_${a}_${b}`;
  const nft = (args: string[]) => execa(sw[0]!, [...sw.slice(1), 'nft', ...args], { env: { PATH: systemPath() } });
  await nft(['add', 'table', 'bridge', tbl]);
  await nft(['add', 'chain', 'bridge', tbl, 'cut', '{ type filter hook forward priority 0; }']);
  await nft(['add', 'rule', 'bridge', tbl, 'cut', 'iifname', `p-${a}`, 'oifname', `p-${b}`, 'drop']);
  await nft(['add', 'rule', 'bridge', tbl, 'cut', 'iifname', `p-${b}`, 'oifname', `p-${a}`, 'drop']);
  return async () => {
    await nft(['delete', 'table', 'bridge', tbl]);
  };
}

/**
 * A rogue machine on the lab's underlay switch (a namespace of the lab, swept with it) with
 * address ip/24 and more `ip` commands run in it (routes); returns its namespace.
 */
export async function addRogueHost(lab: TestLab, ip: string, more: string[][] = []): Promise<string> {
  const rogue = labNs(lab.state.plan.prefix, lab.state.id, 'rogue');
  const run = (argv: string[]) => execa(argv[0]!, argv.slice(1), { env: { PATH: systemPath() } });
  await run(['ip', 'netns', 'add', rogue]);
  recordNetns(lab.dir, rogue);
  await run([
    'ip',
    'link',
    'add',
    'name',
    'eth0',
    'netns',
    rogue,
    'type',
    'veth',
    'peer',
    'name',
    'p-rogue',
    'netns',
    lab.state.plan.switchNs,
  ]);
  await run([
    'nsenter',
    `--net=/run/netns/${lab.state.plan.switchNs}`,
    'ip',
    'link',
    'set',
    'p-rogue',
    'master',
    SWITCH_BRIDGE,
    'up',
  ]);
  for (const c of [['ip', 'link', 'set', 'eth0', 'up'], ['ip', 'addr', 'add', `${ip}/24`, 'dev', 'eth0'], ...more])
    await run(['nsenter', `--net=/run/netns/${rogue}`, ...c]);
  return rogue;
}
