// STATE_DIR/status.json: what `gremesh-agent status` prints, rewritten after every pass.
import { writeFileAtomic } from './state-file.js';
import type { PassResult } from './bridge/reconciler.js';
import type { AttachError } from './docker/containers.js';

export interface StatusContext {
  host: string;
  underlayIp: string;
  connected: boolean;
  coordinator: string;
  processesStarted: number;
  attachErrors: AttachError[];
}

/** Pure: the status file's object (the key order is the file's). */
export function computeStatus(r: PassResult, c: StatusContext, now = new Date()): Record<string, unknown> {
  return {
    host: c.host,
    revision: r.revision,
    connected: c.connected,
    coordinator: c.coordinator,
    updated: now.toISOString(),
    underlayIp: c.underlayIp,
    mtu: r.desired.mtu,
    tunnels: r.tunnels,
    endpoints: r.locals,
    lastPassMs: r.ms,
    processesStarted: c.processesStarted,
    flows: r.flows,
    attachErrors: c.attachErrors,
  };
}

export function writeStatus(stateDir: string, r: PassResult, c: StatusContext): void {
  writeFileAtomic(
    `${stateDir}/status.json`,
    JSON.stringify(computeStatus(r, c), null, 2),
    0o644,
    false, // rewritten every pass; nothing to lose
  );
}
