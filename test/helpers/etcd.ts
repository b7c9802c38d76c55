// A real etcd member (Debian's etcd-server 3.4) on loopback in a temporary directory, for
// the EtcdStore's and the coordinators' tests. Ended by PID.
import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { EtcdStore } from '../../coordinator/etcd-store.js';
import { issue, newKeyPair, privateKeyPem, selfSignedCa } from '../../common/certs.js';

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

/** PEM files for a member with TLS: its CA, and a client certificate and key it accepts */
export interface EtcdClientTls {
  ca: string;
  cert: string;
  key: string;
}

/** A CA, a serving certificate for 127.0.0.1 and a client certificate, in dir (made in process) */
async function makeTls(dir: string): Promise<{ server: { cert: string; key: string }; client: EtcdClientTls }> {
  const caKeys = await newKeyPair();
  const ca = { certPem: await selfSignedCa(caKeys, 'O=gremesh-test, CN=etcd CA', 1), keys: caKeys };
  const files = (name: string) => ({ cert: `${dir}/${name}.crt`, key: `${dir}/${name}.key` });
  for (const [name, usage] of [
    ['server', 'server'],
    ['client', 'client'],
  ] as const) {
    const keys = await newKeyPair();
    const cert = await issue(ca, keys.publicKey, {
      subject: `O=gremesh-test, CN=${name}`,
      days: 1,
      usage,
      sans: ['IP:127.0.0.1'],
    });
    fs.writeFileSync(files(name).cert, cert);
    fs.writeFileSync(files(name).key, await privateKeyPem(keys), { mode: 0o600 });
  }
  fs.writeFileSync(`${dir}/ca.crt`, ca.certPem);
  return { server: files('server'), client: { ca: `${dir}/ca.crt`, ...files('client') } };
}

export class EtcdMember {
  private proc: ChildProcess | undefined;
  private serverTls: { cert: string; key: string; ca: string } | undefined;
  /** with TLS: what a client needs (the member asks for a client certificate) */
  clientTls: EtcdClientTls | undefined;
  private constructor(
    readonly dir: string,
    readonly endpoint: string,
    private readonly peer: string,
  ) {}

  /** tls: clients speak TLS and show a certificate of the member's CA (--client-cert-auth) */
  static async start(o: { tls?: boolean } = {}): Promise<EtcdMember> {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'gmetcd-'));
    const m = new EtcdMember(
      dir,
      `${o.tls ? 'https' : 'http'}://127.0.0.1:${await freePort()}`,
      `http://127.0.0.1:${await freePort()}`,
    );
    if (o.tls) {
      const t = await makeTls(dir);
      m.serverTls = { ...t.server, ca: t.client.ca };
      m.clientTls = t.client;
    }
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
        ...(this.serverTls
          ? [
              `--cert-file=${this.serverTls.cert}`,
              `--key-file=${this.serverTls.key}`,
              `--trusted-ca-file=${this.serverTls.ca}`,
              '--client-cert-auth',
            ]
          : []),
      ],
      { stdio: 'ignore' },
    );
    const c = this.clientTls;
    const probe = new EtcdStore({
      endpoints: [this.endpoint],
      prefix: '/probe/',
      timeoutMs: 500,
      tls: c ? { ca: fs.readFileSync(c.ca), cert: fs.readFileSync(c.cert), key: fs.readFileSync(c.key) } : undefined,
    });
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
