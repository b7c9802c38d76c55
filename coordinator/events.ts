// The coordinator's event history: hosts joining, leaving, going down and coming back,
// tunnels going down and up (with BFD's diagnostic), attachments failing. Bounded (the
// oldest go first), in memory; `coordctl events [--since] [--follow]` reads it.
import type { AttachErrorView, EventView, TunnelView } from './model.js';

export type { EventKind, EventView } from './model.js';

export class EventLog {
  private events: EventView[] = [];
  private followers = new Set<(e: EventView) => void>();

  constructor(private readonly max = 2000) {}

  add(e: EventView): void {
    this.events.push(e);
    if (this.events.length > this.max) this.events.splice(0, this.events.length - this.max);
    for (const f of [...this.followers]) f(e);
  }

  since(ms: number): EventView[] {
    return this.events.filter((e) => e.timeMs >= ms);
  }

  /** calls f with every new event until the returned function is called */
  follow(f: (e: EventView) => void): () => void {
    this.followers.add(f);
    return () => this.followers.delete(f);
  }
}

/**
 * Pure: the tunnel events between two reports of one host: a tunnel whose BFD session
 * stopped (or started) forwarding. A tunnel seen for the first time tells nothing (BFD
 * starts down on every new tunnel).
 */
export function tunnelEvents(host: string, before: TunnelView[], after: TunnelView[], timeMs: number): EventView[] {
  const prev = new Map(before.map((t) => [t.peer, t]));
  const out: EventView[] = [];
  for (const t of after) {
    const p = prev.get(t.peer);
    if (!p || p.forwarding === t.forwarding) continue;
    out.push({
      timeMs,
      kind: t.forwarding ? 'tunnel-up' : 'tunnel-down',
      host,
      peer: t.peer,
      detail: t.forwarding
        ? `${t.port} to ${t.peer} (${t.remoteIp}) forwarding again`
        : `${t.port} to ${t.peer} (${t.remoteIp}): BFD ${t.bfdState || 'down'}${t.bfdDiagnostic ? `, ${t.bfdDiagnostic}` : ''}`,
    });
  }
  return out;
}

/** Pure: attach errors in this report that the last one did not have. */
export function attachEvents(
  host: string,
  before: AttachErrorView[],
  after: AttachErrorView[],
  timeMs: number,
): EventView[] {
  const seen = new Set(before.map((e) => `${e.container}\n${e.reason}`));
  return after
    .filter((e) => !seen.has(`${e.container}\n${e.reason}`))
    .map((e) => ({ timeMs, kind: 'attach-failed', host, peer: '', detail: `${e.container}: ${e.reason}` }));
}
