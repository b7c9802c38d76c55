// A real etcd member (Debian's etcd-server 3.4) on loopback in a temporary directory, for
// the EtcdStore's and the coordinators' tests. Ended by PID.
import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { EtcdStore } from '../../coordinator/etcd-store.js';

export const ETCD_BIN = ['/usr/bin/etcd', '/usr/local/bin/etcd'].find((p) => fs.existsSync(p));

async function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const p = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(p));
    });
  });
}

/** members still running when this process exits (a benchmark or test that threw) go with it */
const members = new Set<EtcdMember>();
process.on('exit', () => {
  for (const m of members) m.killNow();
});

export class EtcdMember {
  private proc: ChildProcess | undefined;
  private constructor(
    readonly dir: string,
    readonly endpoint: string,
    private readonly peer: string,
  ) {}

  static async start(): Promise<EtcdMember> {
    const m = new EtcdMember(
      fs.mkdtempSync(path.join(os.tmpdir(), 'gmetcd-')),
      `http://127.0.0.1:${await freePort()}`,
      `http://127.0.0.1:${await freePort()}`,
    );
    members.add(m);
    await m.run();
    return m;
  }

  /** (again) on the same data dir; resolves once it answers */
  async run(): Promise<void> {
    this.proc = spawn(
      ETCD_BIN!,
      [
        '--name=t',
        `--data-dir=${this.dir}`,
        `--listen-client-urls=${this.endpoint}`,
        `--advertise-client-urls=${this.endpoint}`,
        `--listen-peer-urls=${this.peer}`,
        `--initial-advertise-peer-urls=${this.peer}`,
        `--initial-cluster=t=${this.peer}`,
        '--logger=zap',
        '--log-level=error',
      ],
      { stdio: 'ignore' },
    );
    const probe = new EtcdStore({ endpoints: [this.endpoint], prefix: '/probe/', timeoutMs: 500 });
    try {
      for (const end = Date.now() + 20_000; ;) {
        try {
          await probe.tx((x) => x.meta('up'));
          return;
        } catch (e) {
          if (Date.now() > end) throw e;
          await new Promise((r) => setTimeout(r, 100));
        }
      }
    } finally {
      probe.close();
    }
  }

  /** kill -9 and wait */
  async kill(): Promise<void> {
    const p = this.proc;
    this.proc = undefined;
    if (!p || p.exitCode !== null) return;
    const gone = new Promise((r) => p.once('exit', r));
    p.kill('SIGKILL');
    await gone;
  }

  /** SIGKILL and the data dir removed, at once (at exit) */
  killNow(): void {
    this.proc?.kill('SIGKILL');
    fs.rmSync(this.dir, { recursive: true, force: true });
  }

  async remove(): Promise<void> {
    members.delete(this);
    await this.kill();
    fs.rmSync(this.dir, { recursive: true, force: true });
  }
}
