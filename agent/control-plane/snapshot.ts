// Pure: apply a Watch message (full snapshot or delta) to the cached snapshot.
import { checkRule, normalizeGroup, type PolicyRule } from '../../common/policy.js';
import type { EncryptionSpec, Snapshot, PeerSpec } from '../model.js';

/** a network as the wire brings it (isolation and rule fields as plain text) */
type WireNetwork = Omit<Snapshot['networks'][number], 'isolation' | 'rules'> & {
  isolation?: string;
  rules?: { id: string; action: string; from: string; to: string; proto: string; portMin: number; portMax: number }[];
};

/** a rule this agent cannot read (a newer coordinator's) stands for this one: fail closed */
export const UNREADABLE_RULE: PolicyRule = {
  id: 'unreadable',
  action: 'deny',
  from: 'any',
  to: 'any',
  proto: '',
  portMin: 0,
  portMax: 0,
};

/** Pure: the rules of a network the agent can enforce; one it cannot read denies everything (never half-read, never allowed) */
function rulesOf(n: WireNetwork): PolicyRule[] {
  const out: PolicyRule[] = [];
  let unreadable = false;
  for (const r of n.rules ?? []) {
    const c = checkRule(r as Omit<PolicyRule, 'id'>);
    if (c.problem === undefined && r.id) out.push({ id: r.id, ...c.rule });
    else unreadable = true;
  }
  return unreadable ? [UNREADABLE_RULE, ...out] : out;
}
/** an isolation this agent does not know: groups (fail closed) */
const isolationOf = (n: WireNetwork) =>
  n.isolation === '' || n.isolation === undefined || n.isolation === 'none' ? undefined : 'groups';

export interface WatchMessage {
  revision: number;
  host: string;
  underlayIp: string;
  full: boolean;
  baseRevision: number;
  networks: WireNetwork[];
  slices: Snapshot['slices'];
  peers: PeerSpec[];
  removedPeers: string[];
  encryption?: string;
  wireguard?: EncryptionSpec;
}

/** Pure: this host's encryption from a Watch message; a mode this agent does not know fails closed (WireGuard, no key) */
function encryptionOf(m: WatchMessage): EncryptionSpec | undefined {
  if (!m.encryption || m.encryption === 'none') return undefined;
  const w = m.wireguard;
  if (m.encryption !== 'wireguard' || !w?.tunnelIp)
    return { tunnelIp: '', tunnelCidr: '', publicKey: '', rotation: 0, generation: 0 };
  return {
    tunnelIp: w.tunnelIp,
    tunnelCidr: w.tunnelCidr,
    publicKey: w.publicKey,
    rotation: w.rotation,
    generation: w.generation,
  };
}

const sliceOf = (s: { network: string; cidr: string; ipv6Cidr?: string }) => ({
  network: s.network,
  cidr: s.cidr,
  ...(s.ipv6Cidr ? { ipv6Cidr: s.ipv6Cidr } : {}),
});

/** The new snapshot, or 'resync' when a delta does not apply to what we hold. */
export function applyWatchMessage(cur: Snapshot | undefined, m: WatchMessage): Snapshot | 'resync' {
  const norm = (p: PeerSpec): PeerSpec => ({
    name: p.name,
    underlayIp: p.underlayIp,
    slices: p.slices.map(sliceOf),
    endpoints: p.endpoints.map((e) => ({
      network: e.network,
      host: e.host,
      mac: e.mac,
      ip: e.ip,
      containerId: e.containerId,
      names: [...(e.names ?? [])],
      ...(normalizeGroup(e.group) ? { group: normalizeGroup(e.group) } : {}),
      ...(e.ip6 ? { ip6: e.ip6 } : {}),
    })),
    ...(p.wireguard?.publicKey && p.wireguard.tunnelIp
      ? { wireguard: { publicKey: p.wireguard.publicKey, port: p.wireguard.port, tunnelIp: p.wireguard.tunnelIp } }
      : {}),
  });
  const head = {
    revision: m.revision,
    host: m.host,
    underlayIp: m.underlayIp,
    networks: m.networks.map((n) => {
      const rules = rulesOf(n);
      return {
        name: n.name,
        cidr: n.cidr,
        hostPrefixLen: n.hostPrefixLen,
        greKey: n.greKey,
        mtu: n.mtu,
        ...(isolationOf(n) ? { isolation: 'groups' as const } : {}),
        ...(rules.length ? { rules } : {}),
        ...(n.ipv6Cidr ? { ipv6Cidr: n.ipv6Cidr, ipv6HostPrefixLen: n.ipv6HostPrefixLen } : {}),
      };
    }),
    slices: m.slices.map(sliceOf),
    ...(encryptionOf(m) ? { encryption: encryptionOf(m) } : {}),
  };
  if (m.full) return { ...head, peers: m.peers.map(norm).sort((a, b) => a.name.localeCompare(b.name)) };
  if (!cur || cur.revision !== m.baseRevision) return 'resync';
  const peers = new Map(cur.peers.map((p) => [p.name, p]));
  for (const r of m.removedPeers) peers.delete(r);
  for (const p of m.peers) peers.set(p.name, norm(p));
  return { ...head, peers: [...peers.values()].sort((a, b) => a.name.localeCompare(b.name)) };
}
