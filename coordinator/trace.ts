// `coordctl trace SRC DST`: the coordinator finds both ends among what agents reported,
// asks the source host's agent to trace the packet on its bridge (a request down that
// agent's Watch stream, the answer through AgentService.TraceResult), follows it to the
// tunnel it leaves by, and asks the destination host's agent to trace its arrival.
import { randomBytes } from 'node:crypto';
import { cidrContains, parseCidr, parseIp } from '../common/ipv4.js';
import { canonicalIp6, cidr6Contains, parseCidr6, parseIp6 } from '../common/ipv6.js';
import type { TraceHop, TraceReport, TraceRequest } from '../proto/gen/gremesh/v1/gremesh.js';
import { invalid, notFound, precondition } from './errors.js';
import type { EndpointView, NetworkView } from './coordinator.js';
import { trunc } from './validate.js';

type Named = EndpointView & { name: string };

/** Pure: a trace end as the operator wrote it: a container's name, DNS name or id (prefix), a gremesh IP, or outside:IP. */
export function resolveEnd(
  ref: string,
  endpoints: Named[],
  outsideAllowed: boolean,
): { endpoint: Named } | { outside: string } | { error: string } {
  if (ref.startsWith('outside:')) {
    const ip = ref.slice('outside:'.length);
    if (!outsideAllowed) return { error: 'the source of a trace is a container or a gremesh address, not outside' };
    if (parseIp(ip) === undefined && canonicalIp6(ip) === undefined)
      return { error: `"${trunc(ref)}": outside:IP needs an IPv4 or IPv6 address` };
    return { outside: canonicalIp6(ip) ?? ip };
  }
  const byName = endpoints.filter((e) => e.name === ref || e.name === `/${ref}`);
  // a DNS name (alias, hostname) as the networks' resolvers answer it
  const byDns = endpoints.filter((e) => e.names?.includes(ref.toLowerCase()));
  const six = canonicalIp6(ref);
  const byIp = endpoints.filter((e) => e.ip === ref || (six !== undefined && e.ip6 === six));
  const byId = ref.length >= 4 ? endpoints.filter((e) => e.containerId.startsWith(ref)) : [];
  const found = byName.length ? byName : byDns.length ? byDns : byIp.length ? byIp : byId;
  if (found.length === 0)
    return { error: `no container or address "${trunc(ref)}" among those the agents reported (coordctl status)` };
  if (found.length > 1)
    return {
      error: `"${trunc(ref)}" matches ${found.length} containers: ${found.map((e) => `${e.name || e.containerId.slice(0, 12)} on ${e.host}`).join(', ')}`,
    };
  return { endpoint: found[0]! };
}

const describe = (e: Named) => `${e.name || e.containerId.slice(0, 12)} (${e.ip} on ${e.host})`;

/** Requests out to agents, answers back by id. */
export class TraceBroker {
  private pending = new Map<string, { host: string; resolve: (h: TraceHop) => void; reject: (e: Error) => void }>();

  /** send: false when the host has no Watch stream open */
  constructor(private readonly send: (host: string, req: TraceRequest) => boolean) {}

  ask(host: string, req: Omit<TraceRequest, 'id'>, timeoutMs = 15_000): Promise<TraceHop> {
    const id = randomBytes(8).toString('hex');
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(precondition(`the agent on ${host} did not answer the trace within ${timeoutMs / 1000} s`));
      }, timeoutMs);
      this.pending.set(id, {
        host,
        resolve: (h) => (clearTimeout(timer), resolve(h)),
        reject: (e) => (clearTimeout(timer), reject(e)),
      });
      if (!this.send(host, { ...req, id })) {
        this.pending.delete(id);
        clearTimeout(timer);
        reject(precondition(`the agent on ${host} is not connected: it cannot trace`));
      }
    });
  }

  /** an agent's answer; only the host that was asked may answer */
  answer(host: string, id: string, hop: TraceHop | undefined, error: string): void {
    const p = this.pending.get(id);
    if (!p || p.host !== host) throw notFound(`no trace ${trunc(id)} is waiting for ${host}`);
    this.pending.delete(id);
    if (error || !hop) p.reject(precondition(`the agent on ${host} could not trace: ${trunc(error, 256)}`));
    else p.resolve({ ...hop, host });
  }
}

export interface TraceDeps {
  broker: TraceBroker;
  endpoints: () => Named[];
  networks: () => NetworkView[];
}

export async function runTrace(
  d: TraceDeps,
  r: { src: string; dst: string; proto: string; port: number; srcIp?: string },
): Promise<TraceReport> {
  const proto = r.proto || 'icmp';
  if (!['icmp', 'tcp', 'udp'].includes(proto)) throw invalid(`--proto must be icmp, tcp or udp, not "${trunc(proto)}"`);
  if (r.port > 65535 || (proto === 'icmp' && r.port)) throw invalid('--port is a TCP/UDP port (1-65535)');
  const eps = d.endpoints();
  const src = resolveEnd(r.src, eps, false);
  if ('error' in src) throw invalid(`source: ${src.error}`);
  const dst = resolveEnd(r.dst, eps, true);
  if ('error' in dst) throw invalid(`destination: ${dst.error}`);
  if (!('endpoint' in src)) throw invalid('the source must be a container');
  const s = src.endpoint;
  const net = d.networks().find((n) => n.name === s.network);
  if (!net) throw notFound(`network ${s.network} of ${describe(s)} no longer exists`);
  const report: TraceReport = {
    src: r.srcIp && r.srcIp !== s.ip ? `${describe(s)} sending as ${r.srcIp}` : describe(s),
    dst: 'outside' in dst ? `outside ${dst.outside}` : describe(dst.endpoint),
    hops: [],
    verdict: '',
  };
  if ('endpoint' in dst && dst.endpoint.network !== s.network) {
    report.verdict = `dropped: ${report.dst} is in network ${dst.endpoint.network}, ${report.src} in ${s.network}; networks never reach each other (no ARP answer, no flow between them)`;
    return report;
  }
  // IPv6 when an end is named by an IPv6 address (or --src-ip is one): the packet is IPv6 end to end
  const v6 = [r.src, r.dst.replace(/^outside:/, ''), r.srcIp ?? ''].some((x) => canonicalIp6(x) !== undefined);
  if (v6 && !s.ip6) throw invalid(`${describe(s)} has no IPv6 address: no IPv6 packet to trace`);
  if (v6 && 'endpoint' in dst && !dst.endpoint.ip6)
    throw invalid(`${describe(dst.endpoint)} has no IPv6 address: no IPv6 packet to trace`);
  const dstIp = 'outside' in dst ? dst.outside : v6 ? dst.endpoint.ip6! : dst.endpoint.ip;
  if (!v6 && 'outside' in dst && cidrContains(parseCidr(net.cidr)!, parseIp(dstIp)!))
    throw invalid(`outside:${dstIp} is inside network ${net.name} (${net.cidr}): name the container instead`);
  if (v6 && 'outside' in dst && net.ipv6Cidr && cidr6Contains(parseCidr6(net.ipv6Cidr)!, parseIp6(dstIp)!))
    throw invalid(`outside:${dstIp} is inside network ${net.name} (${net.ipv6Cidr}): name the container instead`);
  if (r.srcIp && (v6 ? canonicalIp6(r.srcIp) : parseIp(r.srcIp)) === undefined)
    throw invalid(`--src-ip "${trunc(r.srcIp)}" is not an IPv${v6 ? 6 : 4} address`);
  const packet = {
    srcMac: s.mac,
    srcIp: (r.srcIp && (canonicalIp6(r.srcIp) ?? r.srcIp)) || (v6 ? s.ip6! : s.ip),
    dstMac: 'endpoint' in dst ? dst.endpoint.mac : '',
    dstIp,
    proto,
    port: r.port,
  };
  const first = await d.broker.ask(s.host, {
    ...packet,
    from: 'container',
    containerId: s.containerId,
    peer: '',
    greKey: 0,
  });
  report.hops.push(first);
  if (first.verdict === 'sent' && first.peer) {
    const second = await d.broker.ask(first.peer, {
      ...packet,
      from: 'tunnel',
      containerId: '',
      peer: s.host,
      greKey: net.greKey,
    });
    report.hops.push(second);
  }
  report.verdict = report.hops.at(-1)!.detail;
  return report;
}
