// Soft state: what agents report (tunnel health, endpoints, attach errors, last seen),
// checked and bounded here, shared with the other coordinators of a shared store, and the
// host views and liveness events built from it with the cached records.
import { cidrContains, isUnicastMac, parseCidr, parseIp } from '../common/ipv4.js';
import { canonicalIp6, cidr6Contains, parseCidr6, parseIp6 } from '../common/ipv6.js';
import { printable } from '../common/text.js';
import { acceptedNames } from '../common/dns-names.js';
import { normalizeGroup } from '../common/policy.js';
import { invalid, notFound } from './errors.js';
import { attachEvents, tunnelEvents } from './events.js';
import type { AttachErrorView, EndpointView, HostRec, HostView, PeerView, SliceView, StatusReport } from './model.js';
import type { CoordState, SoftRecord } from './state.js';
import { trunc } from './validate.js';

/** endpoints one host may report: every agent's snapshot carries every host's */
export const MAX_ENDPOINTS_PER_HOST = 4096;

/**
 * Pure: the endpoints of host `name` that go to its peers (sorted), and those refused as
 * attach errors: a group MAC, or a MAC another host already reported in that network (no
 * host may draw another's traffic by claiming its MAC). INVALID for an endpoint outside the
 * host's slices or with a malformed MAC.
 */
export function computeEndpoints(
  name: string,
  reported: EndpointView[],
  slices: SliceView[],
  macOwner: Map<string, string>,
): { endpoints: EndpointView[]; refused: AttachErrorView[] } {
  const endpoints: EndpointView[] = [];
  const refused: AttachErrorView[] = [];
  for (const e of reported) {
    const slice = slices.find((s) => s.network === e.network);
    if (!slice) throw invalid(`endpoint ${trunc(e.ip)}: host ${name} has no slice of network "${trunc(e.network)}"`);
    const ip = parseIp(e.ip);
    if (ip === undefined || !cidrContains(parseCidr(slice.cidr)!, ip))
      throw invalid(`endpoint IP "${trunc(e.ip)}" is not in ${name}'s slice ${slice.cidr}`);
    const ip6 = e.ip6 ? canonicalIp6(e.ip6) : undefined;
    if (e.ip6) {
      const six = slice.ipv6Cidr ? parseCidr6(slice.ipv6Cidr) : undefined;
      if (!six) throw invalid(`endpoint IPv6 "${trunc(e.ip6)}": network ${trunc(e.network)} has no IPv6 prefix`);
      if (ip6 === undefined || !cidr6Contains(six, parseIp6(ip6)!))
        throw invalid(`endpoint IPv6 "${trunc(e.ip6)}" is not in ${name}'s IPv6 slice ${slice.ipv6Cidr}`);
    }
    if (!/^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/.test(e.mac))
      throw invalid(`endpoint MAC "${trunc(e.mac)}" is not a lowercase MAC address`);
    if (!isUnicastMac(e.mac)) {
      refused.push({
        container: printable(e.containerId.slice(0, 12), 64),
        reason: `endpoint MAC ${e.mac} is not unicast: not passed to peers`,
      });
      continue;
    }
    const owner = macOwner.get(`${e.network}/${e.mac}`);
    if (owner !== undefined && owner !== name) {
      refused.push({
        container: printable(e.containerId.slice(0, 12), 64),
        reason: `endpoint MAC ${e.mac} is already ${owner}'s in network ${printable(e.network, 64)}: not passed to peers`,
      });
      continue;
    }
    const names = acceptedNames(e.names);
    const group = normalizeGroup(e.group);
    endpoints.push({
      network: e.network,
      host: name,
      mac: e.mac,
      ip: e.ip,
      containerId: trunc(e.containerId, 64),
      ...(names.length ? { names } : {}),
      ...(group ? { group } : {}),
      ...(ip6 ? { ip6 } : {}),
    });
  }
  endpoints.sort((a, b) => a.network.localeCompare(b.network) || a.ip.localeCompare(b.ip));
  return { endpoints, refused };
}

export class SoftState {
  constructor(private readonly s: CoordState) {}

  /**
   * A soft record another coordinator wrote (an agent reporting there). Kept unless the agent
   * watches through this coordinator; a record gone (its writer's lease ran out)
   * changes nothing: the host ages into "down" unless it reports somewhere.
   */
  remoteSoft(host: string, value: string | undefined): void {
    const s = this.s;
    if (value === undefined) return;
    let rec: SoftRecord;
    try {
      rec = JSON.parse(value) as SoftRecord;
    } catch {
      return;
    }
    if (rec.by === s.id) return;
    // the agent reports to one coordinator at a time, and the watch brings records in the
    // order etcd took them: the newest is the one to keep, unless the agent is here now
    // (no clocks compared: coordinators' clocks may differ)
    const mine = s.soft.get(host);
    if (s.isConnected(host)) return;
    if (JSON.stringify(mine?.endpoints ?? []) !== JSON.stringify(rec.endpoints ?? [])) s.endpointsChanged.add(host);
    s.soft.set(host, {
      lastSeenMs: rec.lastSeenMs,
      tunnels: rec.tunnels ?? [],
      endpoints: rec.endpoints ?? [],
      attachErrors: rec.attachErrors ?? [],
      names: new Map(rec.names ?? []),
      cert: rec.cert,
    });
  }

  /** the caller must already be authenticated as host `name` (certificate or credential) */
  async reportStatus(name: string, r: StatusReport): Promise<void> {
    const s = this.s;
    if (!s.hostMap.has(name)) throw notFound(`no host named "${trunc(name)}"`);
    if (r.tunnels.length > 10_000 || r.endpoints.length > 65_536 || r.attachErrors.length > 10_000)
      throw invalid('status report too large');
    if (r.endpoints.length > MAX_ENDPOINTS_PER_HOST)
      throw invalid(
        `host ${name} reports ${r.endpoints.length} endpoints; at most ${MAX_ENDPOINTS_PER_HOST} per host (every agent receives them all)`,
      );
    const macOwner = new Map<string, string>();
    for (const [h, other] of s.soft)
      if (h !== name) for (const x of other.endpoints) macOwner.set(`${x.network}/${x.mac}`, h);
    const { endpoints, refused } = computeEndpoints(name, r.endpoints, s.slicesOf(name), macOwner);
    s.touch(name);
    const soft = s.soft.get(name)!;
    const tunnels = r.tunnels.map((x) => ({
      ...x,
      peer: trunc(x.peer),
      port: trunc(x.port),
      remoteIp: trunc(x.remoteIp),
      bfdState: trunc(x.bfdState, 16),
      bfdDiagnostic: trunc(x.bfdDiagnostic ?? '', 64),
      bfdFlaps: Number(x.bfdFlaps ?? 0),
    }));
    // printed by coordctl: no terminal control sequences, bounded length, whatever the agent sent
    const attachErrors = [
      ...r.attachErrors
        .slice(0, 1000)
        .map((x) => ({ container: printable(x.container, 64), reason: printable(x.reason, 256) })),
      ...refused.slice(0, 100),
    ];
    for (const e of [
      ...tunnelEvents(name, soft.tunnels, tunnels, s.now()),
      ...attachEvents(name, soft.attachErrors, attachErrors, s.now()),
    ])
      s.events.add(e);
    soft.tunnels = tunnels;
    soft.attachErrors = attachErrors;
    // the newest certificate wins (a report sent just before a renewal carries the old one)
    if (r.certNotAfterMs && Number(r.certNotAfterMs) >= (soft.cert?.notAfterMs ?? 0))
      soft.cert = { notBeforeMs: Number(r.certNotBeforeMs ?? 0), notAfterMs: Number(r.certNotAfterMs) };
    soft.names = new Map(
      r.endpoints
        .filter((e) => e.containerId && e.containerName)
        .map((e) => [trunc(e.containerId, 64), printable(e.containerName!, 64)]),
    );
    const changed = JSON.stringify(soft.endpoints) !== JSON.stringify(endpoints);
    soft.endpoints = endpoints;
    // shared before the change: a coordinator that hears of the change has the endpoints already
    await s.publishSoft(name);
    if (changed) await s.change('endpoints', () => ({ result: undefined, upserts: [name], removes: [] }));
  }

  peer(name: string): PeerView | undefined {
    const s = this.s;
    const h = s.hostMap.get(name);
    if (!h) return undefined;
    return {
      name,
      underlayIp: h.underlayIp,
      slices: s.slicesOf(name),
      endpoints: s.soft.get(name)?.endpoints ?? [],
      ...(s.wireguardPeer(h) ? { wireguard: s.wireguardPeer(h) } : {}),
    };
  }

  hosts(): HostView[] {
    return [...this.s.hostMap.values()].map((h) => this.hostView(h));
  }

  host(name: string): HostView {
    const h = this.s.hostMap.get(name);
    if (!h) throw notFound(`no host named "${trunc(name)}"`);
    return this.hostView(h);
  }

  /** every endpoint agents reported, with the container's name where known */
  endpointsWithNames(): (EndpointView & { name: string })[] {
    return [...this.s.soft.values()].flatMap((x) =>
      x.endpoints.map((e) => ({ ...e, name: x.names?.get(e.containerId) ?? '' })),
    );
  }

  /** host-down / host-up events for hosts whose state changed since the last call (call it every second or so) */
  checkLiveness(): void {
    const s = this.s;
    for (const h of this.hosts()) {
      const before = s.liveness.get(h.name);
      s.liveness.set(h.name, h.state);
      if (before === undefined || before === h.state) continue;
      s.events.add({
        timeMs: s.now(),
        kind: h.state === 'down' ? 'host-down' : 'host-up',
        host: h.name,
        peer: '',
        detail:
          h.state === 'down'
            ? `no contact for ${Math.round((s.now() - h.lastSeenMs) / 1000)} s (down after ${s.downAfterMs / 1000} s)`
            : 'in contact again',
      });
    }
  }

  private hostView(h: HostRec): HostView {
    const s = this.s;
    const x = s.soft.get(h.name);
    const lastSeenMs = s.isConnected(h.name) ? s.now() : (x?.lastSeenMs ?? 0);
    return {
      name: h.name,
      underlayIp: h.underlayIp,
      slices: s.slicesOf(h.name),
      lastSeenMs,
      agentVersion: h.agentVersion,
      joinedMs: h.joinedMs,
      state: lastSeenMs > 0 && s.now() - lastSeenMs <= s.downAfterMs ? 'up' : 'down',
      tunnels: x?.tunnels ?? [],
      attachErrors: x?.attachErrors ?? [],
      endpoints: x?.endpoints.length ?? 0,
      certNotBeforeMs: x?.cert?.notBeforeMs ?? 0,
      certNotAfterMs: x?.cert?.notAfterMs ?? 0,
      tunnelIp: s.tunnelIpOf(h) ?? '',
      wireguardPublicKey: s.encryption === 'wireguard' ? (h.wireguard?.publicKey ?? '') : '',
    };
  }
}
