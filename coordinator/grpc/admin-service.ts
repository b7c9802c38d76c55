// The admin service (coordctl): hosts, networks, tokens, status, trace, and the events stream.
import type * as grpc from '@grpc/grpc-js';
import {
  TunnelStatus,
  AdminServiceService,
  type AddPolicyRuleRequest,
  type Event,
  type EventsRequest,
  type HostInfo,
  type TraceRequestAdmin,
} from '../../proto/gen/gremesh/v1/gremesh.js';
import { runTrace } from '../trace.js';
import { computeNames } from '../names.js';
import { invalid, notFound } from '../errors.js';
import type { PolicyRule } from '../../common/policy.js';
import { trunc } from '../validate.js';
import type { HostView } from '../coordinator.js';
import { checkDecoded, decodingOrMarked, toStatus } from './errors.js';
import type { AnyCall } from './auth.js';
import type { ServiceDeps } from './deps.js';

export const adminService: grpc.ServiceDefinition = decodingOrMarked(AdminServiceService);

export function hostInfo(h: HostView): HostInfo {
  return {
    name: h.name,
    underlayIp: h.underlayIp,
    state: h.state,
    slices: h.slices.map((s) => ({ ...s, ipv6Cidr: s.ipv6Cidr ?? '' })),
    lastSeenMs: h.lastSeenMs,
    agentVersion: h.agentVersion,
    joinedMs: h.joinedMs,
    tunnels: h.tunnels.map((t) => TunnelStatus.fromPartial(t)),
    attachErrors: h.attachErrors,
    endpoints: h.endpoints,
    certNotBeforeMs: h.certNotBeforeMs,
    certNotAfterMs: h.certNotAfterMs,
    tunnelIp: h.tunnelIp,
    wireguardPublicKey: h.wireguardPublicKey,
  };
}

/** Events: the log since sinceMs, then (with follow) each new event until the caller cancels */
export function eventsHandler({ coord, auth, log }: ServiceDeps) {
  return (call: grpc.ServerWritableStream<EventsRequest, Event>): void => {
    try {
      checkDecoded(call.request);
      auth.admin(call as AnyCall);
    } catch (e) {
      call.emit('error', toStatus(e, log));
      return;
    }
    for (const e of coord.events.since(Number(call.request.sinceMs))) call.write(e);
    if (!call.request.follow) {
      call.end();
      return;
    }
    const stop = coord.events.follow((e) => {
      if (!call.cancelled && !call.destroyed) call.write(e);
    });
    call.on('cancelled', stop);
    call.on('close', stop);
    call.on('error', stop);
  };
}

export function adminHandlers(d: ServiceDeps): grpc.UntypedServiceImplementation {
  const { coord, hub, unary, broker } = d;
  const admin = d.auth.admin;
  return {
    joinHost: unary(admin, async (req: { name: string; ttlSeconds: number }) => {
      const r = await coord.joinHost(req.name, req.ttlSeconds);
      return {
        token: r.token,
        expiresMs: r.expiresMs,
        coordinator: await d.advertise(),
        caHash: d.pki?.caHash ?? '',
      };
    }),
    removeHost: unary(admin, async (req: { name: string }) => {
      await coord.removeHost(req.name);
      return {};
    }),
    listHosts: unary(admin, () => ({ hosts: coord.hosts().map(hostInfo) })),
    getHost: unary(admin, (req: { name: string }) => hostInfo(coord.host(req.name))),
    createNetwork: unary(
      admin,
      (req: {
        name: string;
        cidr: string;
        hostPrefixLen: number;
        mtu: number;
        isolation: string;
        ipv6Cidr: string;
        ipv6HostPrefixLen: number;
      }) =>
        coord.createNetwork(req.name, req.cidr, req.hostPrefixLen, req.mtu, req.isolation, {
          cidr: req.ipv6Cidr,
          hostPrefixLen: req.ipv6HostPrefixLen,
        }),
    ),
    updateNetwork: unary(admin, (req: { name: string; isolation: string }) =>
      coord.updateNetwork(req.name, req.isolation),
    ),
    addPolicyRule: unary(admin, (req: AddPolicyRuleRequest) => {
      if (!req.rule) throw invalid('a rule is required');
      const { id: _id, ...rule } = req.rule;
      return coord.addPolicyRule(req.network, rule as Omit<PolicyRule, 'id'>);
    }),
    listPolicy: unary(admin, (req: { network: string }) => ({ networks: coord.listPolicy(req.network) })),
    deletePolicyRule: unary(admin, async (req: { id: string }) => {
      await coord.deletePolicyRule(req.id);
      return {};
    }),
    rotateKeys: unary(admin, async (req: { host: string }) => ({ hosts: await coord.rotateKeys(req.host) })),
    listNetworks: unary(admin, () => ({ networks: coord.networks() })),
    deleteNetwork: unary(admin, async (req: { name: string }) => {
      await coord.deleteNetwork(req.name);
      return {};
    }),
    getStatus: unary(admin, () => ({
      revision: coord.revision(),
      hosts: coord.hosts().map(hostInfo),
      networks: coord.networks(),
      watchers: hub.count(),
      certificates: d.pki?.certificates ?? [],
    })),
    listTokens: unary(admin, async () => ({ tokens: await coord.tokens() })),
    revokeToken: unary(admin, async (req: { id: string }) => {
      await coord.revokeToken(req.id);
      return {};
    }),
    trace: unary(admin, (req: TraceRequestAdmin) =>
      runTrace({ broker, endpoints: () => coord.endpointsWithNames(), networks: () => coord.networks() }, req),
    ),
    events: eventsHandler(d),
    listNames: unary(admin, (req: { network: string }) => {
      if (req.network && !coord.networks().some((n) => n.name === req.network))
        throw notFound(`no network named "${trunc(req.network)}"`);
      return { names: computeNames(coord.endpointsWithNames(), req.network) };
    }),
  } as grpc.UntypedServiceImplementation;
}
