#!/usr/bin/env node
// The README's main job: a local multi-host lab. Replaces any lab already in the dir.
import { parse, runMain, elapsed } from '../../common/cli.js';
import { DEFAULT_DIR, down, status, up } from './lab.js';

const HELP = `gremesh demo: bring up a local multi-host lab and show it

Usage: node dist/deploy/lab/demo.js [--hosts N] [--dir DIR]
`;

async function main(argv: string[]): Promise<number> {
  const { values } = parse(argv, { hosts: { type: 'string' }, dir: { type: 'string' } }, false);
  if (values.help) { process.stdout.write(HELP); return 0; }
  const dir = (values.dir as string | undefined) ?? DEFAULT_DIR;
  const hosts = Number((values.hosts as string | undefined) ?? '3');
  const started = performance.now();
  const say = (l: string) => process.stdout.write(`${l}\n`);
  if (await down({ dir, progress: () => {} })) say(`removed the previous lab in ${dir}`);
  await up({ dir, hosts, progress: say });
  const s = status(dir)!;
  for (const n of s.nodes) say(`  ${n.name.padEnd(4)} ${n.role.padEnd(8)} ${n.underlayIp.padEnd(14)} ${n.processes.map((p) => p.what).join(', ')}`);
  say(`demo ready in ${elapsed(started)}; "make demo-down" removes it`);
  return 0;
}

runMain('demo', main);
