// Bench: per-op ms of IpLinkDriver vs NetlinkLinkDriver in one run (root; a throwaway
// network namespace gmnl-*, veths gmnl*, 198.18.x.x only): plug+activate, makeVeth, delete.
// Usage: node dist/test/bench/links.js [rounds=20]
import { execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { IpLinkDriver, type LinkDriver } from '../../agent/net/link-driver.js';
import { NetlinkLinkDriver } from '../../agent/net/netlink/driver.js';
import { createRunner, processesStarted } from '../../common/exec.js';

const rounds = Number(process.argv[2] ?? 20);
const q = (xs: number[], p: number): number =>
  [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(p * xs.length))]!;

async function time(f: () => Promise<void>): Promise<number> {
  const t0 = process.hrtime.bigint();
  await f();
  return Number(process.hrtime.bigint() - t0) / 1e6;
}

async function bench(name: string, d: LinkDriver, pid: number, tag: string): Promise<void> {
  const ms: Record<string, number[]> = { 'plug+activate': [], makeVeth: [], delete: [] };
  const p0 = processesStarted();
  for (let i = 0; i < rounds; i++) {
    const host = `gmnl${tag}${i}`;
    ms['plug+activate']!.push(
      await time(async () => {
        await d.plugContainer(pid, host, {
          iface: 'eth1',
          mac: '0a:58:c6:12:00:07',
          mtu: 1400,
          cidr: '198.18.0.7/24',
          gateway: '198.18.0.1',
          userspace: true,
        });
        await d.activateContainer(pid, 'eth1', '198.18.0.1');
      }),
    );
    ms['delete']!.push(await time(() => d.deleteLink(host)));
    ms.makeVeth!.push(
      await time(() => d.makeVeth(host, `gmnq${tag}${i}`, { mac: '0a:58:c6:12:00:08', mtu: 1400, userspace: true })),
    );
    await d.deleteLink(host);
  }
  const per = ((processesStarted() - p0) / rounds).toFixed(1);
  for (const [op, xs] of Object.entries(ms))
    console.log(
      `${name.padEnd(8)} ${op.padEnd(14)} p50 ${q(xs, 0.5).toFixed(2).padStart(7)} ms  p90 ${q(xs, 0.9).toFixed(2).padStart(7)} ms`,
    );
  console.log(`${name.padEnd(8)} processes started per round: ${per}`);
}

async function main(): Promise<void> {
  const tag = randomBytes(2).toString('hex');
  const ns = `gmnl-${tag}`;
  execFileSync('ip', ['netns', 'add', ns]);
  const child = spawn('ip', ['netns', 'exec', ns, 'sleep', '600'], { stdio: 'ignore' });
  const nlDriver = new NetlinkLinkDriver(createRunner());
  try {
    await new Promise((r) => setTimeout(r, 200));
    await bench('ip', new IpLinkDriver(createRunner()), child.pid!, `${tag}i`);
    await bench('netlink', nlDriver, child.pid!, `${tag}n`);
  } finally {
    nlDriver.close();
    child.kill('SIGKILL');
    execFileSync('ip', ['netns', 'del', ns]);
  }
}

void main();
