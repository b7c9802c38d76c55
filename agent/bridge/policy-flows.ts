// Pure: policy inside a network as OpenFlow flows (common/policy.ts says what a rule is).
// Only a network with isolation 'groups' or with rules is policed; any other keeps the
// plain pipeline (no conntrack on its path). For a policed network:
//   forward      a frame for a local port (container or gateway) loads the destination's
//                group into reg3 and goes to `policy` instead of straight out; an IP frame
//                for a remote endpoint is committed to conntrack on its way to the tunnel
//                (so the replies are known here when they come back)
//   policy       IP: the source address's group into reg2 (an address no endpoint holds:
//                'outside'), then conntrack (zone = the network's key) -> policyRules;
//                anything else (ARP) -> deliver
//   policyRules  to the gateway (egress, DNS): committed, delivered; established and
//                related: delivered; invalid: dropped; then deny rules, allow rules (each
//                its own priority, so trace names the rule), the same group (isolation
//                groups), and the default (groups: drop; none: commit and deliver)
//   deliver      the local port of the destination MAC
// Flows grow with endpoints + groups + rules (a rule is one flow per port-range piece),
// never endpoints x rules: groups are register values, not address lists.
import type { Isolation, PolicyRule } from '../../common/policy.js';
import { ANY, OUTSIDE, describeRule } from '../../common/policy.js';
import type { LocalPort, Snapshot } from '../model.js';
import { act, flow, type Action, type Flow, type Match } from '../ovs/flows/flow.js';
import { REG_SRC_GROUP } from '../ovs/flows/pipeline.js';

/** reg2/reg3 values that are no group */
export const GROUP_ID = {
  /** a container without a gremesh.group label */
  ungrouped: 1,
  /** reg2: a source address no endpoint of the network holds */
  outside: 2,
  /** reg3: the host's gateway port */
  gateway: 3,
  /** the first group's id; the others follow in name order */
  first: 16,
} as const;

/** policyRules priorities: rule i of a network has base + i (trace reads the rule back from it) */
export const POLICY_PRIORITY = {
  toGateway: 65000,
  established: 64000,
  invalid: 63000,
  deny: 40000,
  allow: 20000,
  sameGroup: 10000,
  default: 1,
} as const;

export interface NetworkPolicy {
  network: string;
  key: number;
  isolation: Isolation;
  rules: PolicyRule[];
  /** group name -> its register value */
  groups: Map<string, number>;
}

/** Pure: the policed networks (isolation groups, or any rule), with their group ids */
export function policedNetworks(s: Snapshot, locals: LocalPort[]): Map<string, NetworkPolicy> {
  const out = new Map<string, NetworkPolicy>();
  for (const n of s.networks) {
    const isolation = n.isolation ?? 'none';
    const rules = n.rules ?? [];
    if (isolation === 'none' && !rules.length) continue;
    const names = new Set<string>();
    for (const r of rules) for (const g of [r.from, r.to]) if (g !== ANY && g !== OUTSIDE) names.add(g);
    for (const e of [...locals, ...s.peers.flatMap((p) => p.endpoints)])
      if (e.network === n.name && e.group) names.add(e.group);
    const groups = new Map([...names].sort().map((g, i) => [g, GROUP_ID.first + i]));
    out.set(n.name, { network: n.name, key: n.greKey, isolation, rules, groups });
  }
  return out;
}

export const groupId = (p: NetworkPolicy, group: string | undefined): number =>
  (group && p.groups.get(group)) || GROUP_ID.ungrouped;

const PROTO = { tcp: 6, udp: 17, icmp: 1 } as const;

/** Pure: a port range as the fewest value/mask pieces (as OVN splits ranges) */
export function portMasks(min: number, max: number): { value: number; mask: number }[] {
  const out: { value: number; mask: number }[] = [];
  let lo = min;
  while (lo <= max) {
    let size = 1;
    while ((lo & (size * 2 - 1)) === 0 && lo + size * 2 - 1 <= max && size * 2 <= 0x10000) size *= 2;
    out.push({ value: lo, mask: 0xffff & ~(size - 1) });
    lo += size;
  }
  return out;
}

/** Pure: the L4 part of a rule's match: one match per port-range piece */
function l4Matches(r: PolicyRule): Match[] {
  if (!r.proto) return [{}];
  const ipProto = PROTO[r.proto];
  if (r.portMin === 0 || r.proto === 'icmp') return [{ ipProto }];
  return portMasks(r.portMin, r.portMax).map((p) =>
    p.mask === 0xffff ? { ipProto, tpDst: p.value } : { ipProto, tpDst: p.value, tpDstMask: p.mask },
  );
}

const commitAndDeliver = (zone: number): Action[] => [act.ct({ commit: true, zone }), act.resubmit('deliver')];

/** Pure: the policy and policyRules flows of one policed network (forward and deliver flows: computeFlows) */
export function networkPolicyFlows(p: NetworkPolicy, endpoints: { ip: string; group?: string }[]): Flow[] {
  const k = p.key;
  const f: Flow[] = [];
  const ct = act.ct({ commit: false, zone: k, table: 'policyRules' });
  const seen = new Set<string>();
  for (const e of endpoints) {
    if (seen.has(e.ip)) continue;
    seen.add(e.ip);
    f.push(
      flow('policy', 100, { reg6: k, ethType: 'ip', nwSrc: e.ip }, [act.load(REG_SRC_GROUP, groupId(p, e.group)), ct]),
    );
  }
  f.push(flow('policy', 50, { reg6: k, ethType: 'ip' }, [act.load(REG_SRC_GROUP, GROUP_ID.outside), ct]));
  f.push(flow('policy', 10, { reg6: k }, [act.resubmit('deliver')]));

  const base: Match = { reg6: k, ethType: 'ip' };
  const fresh: Match = { ...base, ctState: { on: ['trk', 'new'] } };
  f.push(flow('policyRules', POLICY_PRIORITY.toGateway, { ...base, reg3: GROUP_ID.gateway }, commitAndDeliver(k)));
  f.push(
    flow('policyRules', POLICY_PRIORITY.established, { ...base, ctState: { on: ['trk', 'est'] } }, [
      act.resubmit('deliver'),
    ]),
  );
  f.push(
    flow('policyRules', POLICY_PRIORITY.established, { ...base, ctState: { on: ['trk', 'rel'] } }, [
      act.resubmit('deliver'),
    ]),
  );
  f.push(flow('policyRules', POLICY_PRIORITY.invalid, { ...base, ctState: { on: ['trk', 'inv'] } }, []));
  p.rules.forEach((r, i) => {
    const side: Match = {
      ...(r.from === ANY ? {} : { reg2: r.from === OUTSIDE ? GROUP_ID.outside : groupId(p, r.from) }),
      ...(r.to === ANY ? {} : { reg3: groupId(p, r.to) }),
    };
    const prio = (r.action === 'deny' ? POLICY_PRIORITY.deny : POLICY_PRIORITY.allow) + i;
    for (const l4 of l4Matches(r))
      f.push(flow('policyRules', prio, { ...fresh, ...side, ...l4 }, r.action === 'deny' ? [] : commitAndDeliver(k)));
  });
  if (p.isolation === 'groups')
    for (const g of [...p.groups.values()].sort((a, b) => a - b))
      f.push(flow('policyRules', POLICY_PRIORITY.sameGroup, { ...fresh, reg2: g, reg3: g }, commitAndDeliver(k)));
  f.push(flow('policyRules', POLICY_PRIORITY.default, base, p.isolation === 'groups' ? [] : commitAndDeliver(k)));
  return f;
}

/** which rule (or built-in step) decided: a rule id or the step's name, and what became of the packet */
export interface PolicyStep {
  rule: string;
  verdict: 'allowed' | 'dropped';
  /** in words, for trace */
  text: string;
}

/** Pure: the rule (or built-in step) a policyRules flow of this priority is */
export function policyStep(
  p: Pick<NetworkPolicy, 'isolation' | 'rules'> | undefined,
  priority: number,
): PolicyStep | undefined {
  if (!p) return undefined;
  const step = (rule: string, verdict: PolicyStep['verdict'], text: string): PolicyStep => ({ rule, verdict, text });
  if (priority === POLICY_PRIORITY.toGateway)
    return step('to-gateway', 'allowed', 'to the gateway: allowed (egress and DNS are not filtered)');
  if (priority === POLICY_PRIORITY.established)
    return step('established', 'allowed', 'an established connection: allowed');
  if (priority === POLICY_PRIORITY.invalid) return step('invalid', 'dropped', 'invalid for conntrack: dropped');
  if (priority === POLICY_PRIORITY.sameGroup) return step('same-group', 'allowed', 'within one group: allowed');
  if (priority === POLICY_PRIORITY.default)
    return p.isolation === 'groups'
      ? step('default', 'dropped', 'no rule allows it (isolation groups): dropped')
      : step('default', 'allowed', 'no rule denies it: allowed');
  for (const [base, what] of [
    [POLICY_PRIORITY.deny, 'deny'],
    [POLICY_PRIORITY.allow, 'allow'],
  ] as const) {
    const r = p.rules[priority - base];
    if (r && r.action === what) {
      const verdict = what === 'deny' ? 'dropped' : 'allowed';
      return step(r.id, verdict, `rule ${r.id} (${describeRule(r)}): ${verdict}`);
    }
  }
  return undefined;
}

/** Pure: the same, in words (trace) */
export function policyStepOf(
  p: Pick<NetworkPolicy, 'isolation' | 'rules'> | undefined,
  priority: number,
): string | undefined {
  return policyStep(p, priority)?.text;
}

export interface PolicyCount {
  network: string;
  rule: string;
  verdict: PolicyStep['verdict'];
  packets: number;
}

/** Pure: packets per rule and verdict, from `ovs-ofctl dump-flows table=<policyRules>` lines and the snapshot */
export function policyCounts(lines: string[], s: Snapshot | undefined): PolicyCount[] {
  const byKey = new Map((s?.networks ?? []).map((n) => [n.greKey, n]));
  const out = new Map<string, PolicyCount>();
  for (const l of lines) {
    const prio = /\bpriority=(\d+)/.exec(l);
    const key = /\breg6=(0x[0-9a-f]+|\d+)/.exec(l);
    const packets = /\bn_packets=(\d+)/.exec(l);
    const n = key && byKey.get(Number(key[1]));
    if (!prio || !packets || !n) continue;
    const st = policyStep({ isolation: n.isolation ?? 'none', rules: n.rules ?? [] }, Number(prio[1]));
    if (!st) continue;
    const id = `${n.name}/${st.rule}/${st.verdict}`;
    const c = out.get(id) ?? { network: n.name, rule: st.rule, verdict: st.verdict, packets: 0 };
    c.packets += Number(packets[1]);
    out.set(id, c);
  }
  return [...out.values()];
}
