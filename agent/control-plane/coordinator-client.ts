// The agent's side of the control plane: Register, then follow Watch; reconnect
// with capped exponential backoff; keep the credential and the last snapshot on disk
// so a restart (or a coordinator outage) starts from them.
import * as grpc from '@grpc/grpc-js';
import * as fs from 'node:fs';
import { X509Certificate } from 'node:crypto';
import type { Logger } from '../../common/log.js';
import { Backoff } from '../../common/backoff.js';
import { ensureKeyAndCsr, fetchPinnedCa, tlsFiles } from './tls.js';
import { renewAt } from '../../common/renewal.js';
import { readJson, writeFileAtomic } from '../state-file.js';
import { coordinatorTls, type DialTls } from '../../common/grpc-tls.js';
import {
  AgentServiceClient,
  type DesiredState,
  type ReportStatusRequest,
  TunnelStatus,
  type TraceHop,
  type TraceRequest,
} from '../../proto/gen/gremesh/v1/gremesh.js';
import type { Snapshot } from '../model.js';
import type { TunnelHealth } from '../../common/tunnel-health.js';
import { applyWatchMessage } from './snapshot.js';

/** A renewal's new key and certificate, written aside, become the current ones (also after a crash halfway). */
export function finishKeySwap(stateDir: string): void {
  const f = tlsFiles(stateDir);
  if (fs.existsSync(`${f.cert}.next`)) {
    if (fs.existsSync(`${f.key}.next`)) fs.renameSync(`${f.key}.next`, f.key);
    fs.renameSync(`${f.cert}.next`, f.cert);
  } else fs.rmSync(`${f.key}.next`, { force: true }); // a renewal that got no certificate
}

/** the largest desired state the agent takes (64 MiB: ~800k endpoints) */
export const MAX_SNAPSHOT_BYTES = 64 * 1024 * 1024;

export interface ClientOptions {
  /** ADDR:PORT, or several comma-separated (coordinators sharing one etcd): tried in turn */
  coordinator: string;
  name: string;
  token: string;
  underlayIp: string;
  stateDir: string;
  version: string;
  log: Logger;
  onSnapshot: (s: Snapshot) => void;
  /** a trace request from the coordinator (coordctl trace): this host's part of it */
  onTrace?: (r: TraceRequest) => Promise<TraceHop>;
  backoffMinMs?: number;
  backoffMaxMs?: number;
  /** TLS (the default): the CA hash from `coordctl join`; undefined: --insecure */
  tls?: { caHash: string };
}

export class CoordinatorClient {
  private client: AgentServiceClient;
  private stopped = false;
  private stream: grpc.ClientReadableStream<DesiredState> | undefined;
  private snapshot: Snapshot | undefined;
  private credential: string | undefined;
  connected = false;

  private renewTimer: NodeJS.Timeout | undefined;
  /** the coordinators to try, and the one in use */
  private readonly addresses: string[];
  private current = 0;
  /** the client certificate's validity (TLS), reported for coordctl status */
  private certValidity: { notBeforeMs: number; notAfterMs: number } | undefined;

  constructor(private readonly o: ClientOptions) {
    this.addresses = o.coordinator.split(',').filter(Boolean);
    if (o.tls) finishKeySwap(o.stateDir);
    this.client = this.makeClient();
    this.credential = fs.existsSync(this.credFile) ? fs.readFileSync(this.credFile, 'utf8').trim() : undefined;
    this.snapshot = readJson<Snapshot>(this.cacheFile);
    this.scheduleRenewal();
  }

  /** plaintext (--insecure); TLS with the pinned CA, plus our certificate once we have one */
  private makeClient(): AgentServiceClient {
    let dial: DialTls = { credentials: grpc.credentials.createInsecure(), options: {} };
    if (this.o.tls) {
      const f = tlsFiles(this.o.stateDir);
      if (fs.existsSync(f.ca)) {
        const ca = fs.readFileSync(f.ca);
        dial =
          fs.existsSync(f.cert) && fs.existsSync(f.key)
            ? coordinatorTls(this.address, ca, fs.readFileSync(f.key), fs.readFileSync(f.cert))
            : coordinatorTls(this.address, ca);
      }
    }
    return new AgentServiceClient(this.address, dial.credentials, {
      ...dial.options,
      // a full snapshot carries every endpoint of every host: 50k endpoints are ~4 MiB, over
      // grpc's default receive limit (4 MiB); the coordinator caps endpoints per host
      'grpc.max_receive_message_length': MAX_SNAPSHOT_BYTES,
      'grpc.keepalive_time_ms': 10_000,
      'grpc.keepalive_timeout_ms': 5_000,
      'grpc.keepalive_permit_without_calls': 1,
      'grpc.initial_reconnect_backoff_ms': 200,
      'grpc.max_reconnect_backoff_ms': 2_000,
    });
  }

  /** the coordinator in use */
  get address(): string {
    return this.addresses[this.current]!;
  }

  /** the next coordinator of the list (after a failure); false when there is only one */
  private failOver(): boolean {
    if (this.addresses.length < 2) return false;
    const from = this.address;
    this.current = (this.current + 1) % this.addresses.length;
    this.reconnectClient();
    this.o.log.warn({ from, to: this.address }, `coordinator ${from} failed; trying ${this.address}`);
    return true;
  }

  private reconnectClient(): void {
    this.client.close();
    this.client = this.makeClient();
    this.scheduleRenewal();
  }

  /** TLS: renew at 60 % of the certificate's life (checked again at least every day) */
  private scheduleRenewal(): void {
    if (!this.o.tls || this.stopped) return;
    if (this.renewTimer) clearTimeout(this.renewTimer);
    const f = tlsFiles(this.o.stateDir);
    if (!fs.existsSync(f.cert)) return;
    const c = new X509Certificate(fs.readFileSync(f.cert));
    const notBeforeMs = Date.parse(c.validFrom);
    const notAfterMs = Date.parse(c.validTo);
    this.certValidity = { notBeforeMs, notAfterMs };
    const wait = Math.max(0, renewAt(notBeforeMs, notAfterMs) - Date.now());
    this.renewTimer = setTimeout(
      () => {
        this.renewTimer = undefined;
        if (Date.now() < renewAt(notBeforeMs, notAfterMs)) return this.scheduleRenewal();
        this.renew().catch((e: Error) => {
          this.o.log.warn({ err: e.message }, 'certificate renewal failed; retrying in 5 s');
          this.renewTimer = setTimeout(() => this.scheduleRenewal(), 5_000);
        });
      },
      Math.min(wait, 86_400_000),
    );
  }

  /**
   * A new key and CSR, signed over our current certificate. The pair is written aside
   * first (host.key.next, host.crt.next) and swapped in (a crash in between is finished
   * at the next start); then the connection moves to it and the Watch resumes with a delta.
   */
  private async renew(): Promise<void> {
    const f = tlsFiles(this.o.stateDir);
    const { keyPairFromPem, makeCsr, newKeyPair, privateKeyPem } = await import('../../common/certs.js');
    const keys = await newKeyPair();
    const keyPem = await privateKeyPem(keys);
    fs.writeFileSync(`${f.key}.next`, keyPem, { mode: 0o600 });
    const csr = await makeCsr(await keyPairFromPem(keyPem), `O=gremesh, CN=host:${this.o.name}`);
    const certificate = await new Promise<string>((resolve, reject) =>
      this.client.renew({ name: this.o.name, csr }, new grpc.Metadata(), { deadline: Date.now() + 15_000 }, (e, r) =>
        e ? reject(e) : resolve(r.certificate),
      ),
    );
    writeFileAtomic(`${f.cert}.next`, certificate);
    finishKeySwap(this.o.stateDir);
    this.o.log.info({}, 'client certificate renewed');
    this.reconnectClient();
    // the open Watch was made with the old certificate: reopen it on the new one (a delta follows)
    this.stream?.cancel();
  }

  get credFile(): string {
    return `${this.o.stateDir}/credential`;
  }
  get cacheFile(): string {
    return `${this.o.stateDir}/desired.json`;
  }

  /** the cached snapshot from disk, if any */
  cached(): Snapshot | undefined {
    return this.snapshot;
  }

  start(): void {
    void this.loop();
  }

  stop(): void {
    this.stopped = true;
    if (this.renewTimer) clearTimeout(this.renewTimer);
    this.stream?.cancel();
    this.client.close();
  }

  private register(token: string, credential: string, csr = ''): Promise<{ credential: string; certificate: string }> {
    return new Promise((resolve, reject) => {
      this.client.register(
        { name: this.o.name, token, credential, underlayIp: this.o.underlayIp, agentVersion: this.o.version, csr },
        new grpc.Metadata(),
        { deadline: Date.now() + 15_000 },
        (e, r) => (e ? reject(e) : resolve(r)),
      );
    });
  }

  /** TLS: re-register with our certificate, or join with the token (pin CA, CSR, certificate). */
  private async ensureRegisteredTls(t: { caHash: string }): Promise<string> {
    const f = tlsFiles(this.o.stateDir);
    if (fs.existsSync(f.cert)) {
      try {
        await this.register('', '');
        return '';
      } catch (e) {
        const err = e as grpc.ServiceError;
        if (err.code !== grpc.status.UNAUTHENTICATED || !this.o.token) throw e;
        this.o.log.warn(
          { err: err.details },
          'our certificate is no longer accepted; joining again with the join token',
        );
        fs.rmSync(f.cert, { force: true });
        this.reconnectClient();
      }
    }
    if (!this.o.token)
      throw new Error('no host certificate in the state dir and no --join-token: run "coordctl join" for this host');
    if (!fs.existsSync(f.ca)) {
      if (!t.caHash) throw new Error('--ca-hash is needed on first start (coordctl join prints it), or --insecure');
      writeFileAtomic(f.ca, await fetchPinnedCa(this.address, t.caHash));
      this.o.log.info({ caHash: t.caHash }, 'coordinator CA pinned');
      this.reconnectClient();
    }
    const csr = await ensureKeyAndCsr(this.o.stateDir, this.o.name);
    const r = await this.register(this.o.token, '', csr);
    if (!r.certificate)
      throw new Error(
        'the coordinator returned no certificate (is it running with --insecure? then pass --insecure too)',
      );
    writeFileAtomic(f.cert, r.certificate);
    this.reconnectClient();
    this.o.log.info({ coordinator: this.address }, 'registered with the coordinator; client certificate saved');
    return '';
  }

  private async ensureRegistered(): Promise<string> {
    if (this.o.tls) return this.ensureRegisteredTls(this.o.tls);
    if (this.credential) {
      try {
        return (await this.register('', this.credential)).credential;
      } catch (e) {
        const err = e as grpc.ServiceError;
        if (err.code !== grpc.status.UNAUTHENTICATED || !this.o.token) throw e;
        this.o.log.warn({ err: err.details }, 'stored credential refused; registering with the join token');
      }
    }
    if (!this.o.token)
      throw new Error('no credential in the state dir and no --join-token: run "coordctl join" for this host');
    const cred = (await this.register(this.o.token, '')).credential;
    writeFileAtomic(this.credFile, cred, 0o600);
    this.credential = cred;
    this.o.log.info(
      { coordinator: this.address, uptimeMs: Math.round(performance.now()) },
      'registered with the coordinator',
    );
    return cred;
  }

  private async loop(): Promise<void> {
    const min = this.o.backoffMinMs ?? 200;
    const backoff = new Backoff({ minMs: min, maxMs: this.o.backoffMaxMs ?? 5_000, jitter: 0.2 });
    /** coordinators tried since the last one that answered */
    let failedInARow = 0;
    while (!this.stopped) {
      let gotData = false;
      try {
        const cred = await this.ensureRegistered();
        gotData = await this.watch(cred);
      } catch (e) {
        const err = e as grpc.ServiceError;
        this.o.log.warn(
          { coordinator: this.address, err: err.details ?? err.message, retryMs: backoff.peek() },
          'coordinator unreachable or refused; data plane keeps its last state',
        );
      }
      this.connected = false;
      if (this.stopped) break;
      failedInARow = gotData ? 0 : failedInARow + 1;
      // another coordinator at once; back off only once every one of them has failed
      const movedOn = this.failOver();
      if (gotData) backoff.reset();
      const wait = gotData || (movedOn && failedInARow % this.addresses.length !== 0) ? min : backoff.next();
      await new Promise((r) => setTimeout(r, wait));
    }
  }

  /** Follows one Watch stream until it ends; true if any message arrived. */
  private watch(credential: string): Promise<boolean> {
    return new Promise((resolve, reject) => {
      let got = false;
      const st = this.client.watch({
        name: this.o.name,
        credential: credential || (this.credential ?? ''),
        knownRevision: this.snapshot?.revision ?? 0,
      });
      this.stream = st;
      st.on('data', (m: DesiredState) => {
        got = true;
        this.connected = true;
        if (m.trace) {
          void this.answerTrace(m.trace);
          return;
        }
        const next = applyWatchMessage(this.snapshot, m);
        if (next === 'resync') {
          this.o.log.warn({ base: m.baseRevision, have: this.snapshot?.revision }, 'delta does not apply; resyncing');
          this.snapshot = undefined;
          st.cancel();
          return;
        }
        this.snapshot = next;
        writeFileAtomic(this.cacheFile, JSON.stringify(next), 0o644, false);
        this.o.onSnapshot(next);
      });
      st.on('error', (e: grpc.ServiceError) =>
        e.code === grpc.status.CANCELLED ? resolve(got) : got ? resolve(got) : reject(e),
      );
      st.on('end', () => resolve(got));
    });
  }

  /** encryption: publish this host's WireGuard public key (the coordinator takes the name from our identity) */
  setWireguardKey(publicKey: string, port: number, generation: number): Promise<void> {
    return new Promise((resolve, reject) => {
      this.client.setWireguardKey(
        { name: this.o.name, credential: this.credential ?? '', publicKey, port, generation },
        new grpc.Metadata(),
        { deadline: Date.now() + 5_000 },
        (e) => (e ? reject(new Error(`SetWireguardKey: ${e.details || e.message}`)) : resolve()),
      );
    });
  }

  private async answerTrace(t: TraceRequest): Promise<void> {
    let hop: TraceHop | undefined;
    let error = '';
    try {
      if (!this.o.onTrace) throw new Error('this agent does not trace');
      hop = await this.o.onTrace(t);
    } catch (e) {
      error = (e as Error).message;
    }
    this.client.traceResult(
      { name: this.o.name, credential: this.credential ?? '', id: t.id, hop, error },
      new grpc.Metadata(),
      { deadline: Date.now() + 5_000 },
      (e) => {
        if (e) this.o.log.warn({ err: e.message }, 'could not send a trace result');
      },
    );
  }

  report(
    r: Omit<ReportStatusRequest, 'name' | 'credential' | 'certNotBeforeMs' | 'certNotAfterMs' | 'tunnels'> & {
      tunnels: TunnelHealth[];
    },
  ): Promise<void> {
    if (!this.o.tls && !this.credential) return Promise.resolve();
    return new Promise((resolve, reject) => {
      this.client.reportStatus(
        {
          name: this.o.name,
          credential: this.credential ?? '',
          ...r,
          tunnels: r.tunnels.map((t) => TunnelStatus.fromPartial(t)),
          certNotBeforeMs: this.certValidity?.notBeforeMs ?? 0,
          certNotAfterMs: this.certValidity?.notAfterMs ?? 0,
        },
        new grpc.Metadata(),
        { deadline: Date.now() + 5_000 },
        (e) => (e ? reject(e) : resolve()),
      );
    });
  }
}
