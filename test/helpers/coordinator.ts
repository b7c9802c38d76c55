// A real gremesh-coordinator subprocess on 127.0.0.1, and gRPC clients for tests.
import { spawn, type ChildProcess } from 'node:child_process';
import * as grpc from '@grpc/grpc-js';
import * as fs from 'node:fs';
import { BIN, tempDir } from './cli.js';
import { AdminServiceClient, AgentServiceClient, ReportStatusRequest } from '../../proto/gen/gremesh/v1/gremesh.js';

export interface RunningCoordinator {
  addr: string;
  port: number;
  dataDir: string;
  proc: ChildProcess;
  /** SIGTERM and wait */
  stop(): Promise<void>;
  /** SIGKILL and wait */
  kill9(): Promise<void>;
  stderr(): string;
  /** coordctl flags for this coordinator (TLS admin certificate, or --insecure) */
  ctlArgs: string[];
  tls: boolean;
}

/** coordinators still running when this process exits (a benchmark or test that threw) go with it */
const running = new Set<ChildProcess>();
process.on('exit', () => {
  for (const p of running) p.kill('SIGKILL');
});

/** tls: false (the default here) starts it with --insecure; the TLS suite passes true */
export async function startCoordinator(
  o: { dataDir?: string; port?: number; args?: string[]; host?: string; netns?: string; tls?: boolean } = {},
): Promise<RunningCoordinator> {
  const ownDir = o.dataDir === undefined;
  let listening = false;
  const dataDir = o.dataDir ?? tempDir('gmc');
  const host = o.host ?? '127.0.0.1';
  const tls = o.tls === true;
  const argv = [
    BIN.coordinator,
    '--listen',
    `${host}:${o.port ?? 0}`,
    '--data-dir',
    dataDir,
    '--network-cidr',
    '198.18.64.0/18',
    '--log-level',
    'warn',
    ...(tls ? [] : ['--insecure']),
    ...(o.args ?? []),
  ];
  const cmd = o.netns ? 'nsenter' : 'node';
  const full = o.netns ? [`--net=/run/netns/${o.netns}`, 'node', ...argv] : argv;
  const proc = spawn(cmd, full, { stdio: ['ignore', 'pipe', 'pipe'] });
  let err = '';
  proc.stderr!.on('data', (d) => {
    err += String(d);
  });
  const port = await new Promise<number>((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => reject(new Error(`coordinator did not start: ${err}`)), 20_000);
    proc.stdout!.on('data', (d) => {
      out += String(d);
      const m = /listening on .*:(\d+)/.exec(out);
      if (m) {
        clearTimeout(timer);
        listening = true;
        resolve(Number(m[1]));
      }
    });
    proc.on('exit', (code) => {
      clearTimeout(timer);
      // a start that failed leaves no data dir this helper made
      if (ownDir && !listening) removeDir(dataDir);
      reject(new Error(`coordinator exited ${code}: ${err}`));
    });
  });
  running.add(proc);
  const exited = new Promise<void>((r) =>
    proc.on('exit', () => {
      running.delete(proc);
      r();
    }),
  );
  return {
    addr: `${host}:${port}`,
    port,
    dataDir,
    proc,
    async stop() {
      if (proc.exitCode === null && proc.signalCode === null) {
        proc.kill('SIGTERM');
        await exited;
      }
    },
    async kill9() {
      if (proc.exitCode === null && proc.signalCode === null) {
        proc.kill('SIGKILL');
        await exited;
      }
    },
    stderr: () => err,
    tls,
    ctlArgs: tls
      ? ['--cert', `${dataDir}/pki/admin.crt`, '--key', `${dataDir}/pki/admin.key`, '--ca', `${dataDir}/pki/ca.crt`]
      : ['--insecure'],
  };
}

/** TLS channel credentials from PEM files (undefined parts are left out) */
export function tlsCreds(ca: string, key?: string, cert?: string): grpc.ChannelCredentials {
  return grpc.credentials.createSsl(
    fs.readFileSync(ca),
    key ? fs.readFileSync(key) : null,
    cert ? fs.readFileSync(cert) : null,
  );
}

export function removeDir(d: string): void {
  fs.rmSync(d, { recursive: true, force: true });
}

type Unary = (
  req: unknown,
  md: grpc.Metadata,
  opts: Partial<grpc.CallOptions>,
  cb: (e: grpc.ServiceError | null, r: unknown) => void,
) => unknown;

/** Promisified unary call: resolves the response, rejects with the ServiceError. */
export function unary<T>(client: grpc.Client, method: string, req: unknown, timeoutMs = 10_000): Promise<T> {
  const fn = (client as unknown as Record<string, Unary>)[method]!.bind(client);
  // a report written as a plain object gets the fields it leaves out (empty lists), as a typed one has
  const msg = method === 'reportStatus' ? ReportStatusRequest.fromPartial(req as object) : req;
  return new Promise((resolve, reject) => {
    fn(msg, new grpc.Metadata(), { deadline: Date.now() + timeoutMs }, (e, r) => (e ? reject(e) : resolve(r as T)));
  });
}

export function admin(addr: string, creds = grpc.credentials.createInsecure()): AdminServiceClient {
  return new AdminServiceClient(addr, creds, { 'grpc.use_local_subchannel_pool': 1 });
}

export function agentClient(addr: string, creds = grpc.credentials.createInsecure()): AgentServiceClient {
  return new AgentServiceClient(addr, creds, { 'grpc.use_local_subchannel_pool': 1 });
}
