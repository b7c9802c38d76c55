// Policy inside a network: its isolation and its rules, kept on the network's record (one
// store transaction per change, so they persist and revision with it on memory, SQLite and
// etcd alike), fanned out to every agent with the networks, and logged as events.
import {
  MAX_RULES_PER_NETWORK,
  checkRule,
  describeRule,
  sameRule,
  type Isolation,
  type PolicyRule,
} from '../common/policy.js';
import { exhausted, invalid, notFound, precondition } from './errors.js';
import type { NetworkRec } from './model.js';
import type { CoordState } from './state.js';
import type { Tx } from './store.js';
import { trunc } from './validate.js';

/** store meta: the highest rule number ever handed out (ids are never reused) */
const RULE_HIGH = 'policyRuleHigh';

export interface NetworkPolicyView {
  network: string;
  isolation: Isolation;
  rules: PolicyRule[];
}

/** Pure: the isolation a request names ('' keeps the default), or why it is refused */
export function parseIsolation(s: string): Isolation | { problem: string } {
  if (s === '' || s === 'none') return 'none';
  if (s === 'groups') return 'groups';
  return { problem: `--isolation must be none or groups, got "${trunc(s)}"` };
}

const policyOf = (n: NetworkRec): NetworkPolicyView => ({
  network: n.name,
  isolation: n.isolation ?? 'none',
  rules: n.rules ?? [],
});

/** conntrack zones are 16 bits and a policed network's zone is its GRE key */
function zoneFits(n: NetworkRec): void {
  if (n.greKey > 0xffff)
    throw precondition(
      `network ${n.name} has GRE key ${n.greKey}: policy needs a key of at most 65535 (its conntrack zone)`,
    );
}

/**
 * Policy is IPv4's (conntrack zones and rules match IPv4): a dual-stack network refuses it
 * rather than let IPv6 pass around it.
 */
export function policyIpv4Only(n: Pick<NetworkRec, 'name' | 'ipv6Cidr'>): void {
  if (n.ipv6Cidr)
    throw invalid(
      `network ${n.name} is dual-stack (${n.ipv6Cidr}): policy (isolation, rules) is IPv4 only and would let IPv6 pass around it`,
    );
}

export class Policy {
  constructor(private readonly s: CoordState) {}

  private event(network: string, detail: string): void {
    this.s.events.add({
      timeMs: this.s.now(),
      kind: 'policy-changed',
      host: '',
      peer: '',
      detail: `${network}: ${detail}`,
    });
  }

  private network(t: Tx, name: string): NetworkRec {
    const n = t.network(name);
    if (!n) throw notFound(`no network named "${trunc(name)}"`);
    return n;
  }

  list(network: string): NetworkPolicyView[] {
    const nets = this.s.nets.filter((n) => !network || n.name === network);
    if (network && !nets.length) throw notFound(`no network named "${trunc(network)}"`);
    return nets.map(policyOf);
  }

  async setIsolation(network: string, raw: string): Promise<NetworkRec> {
    const isolation = parseIsolation(raw);
    if (typeof isolation !== 'string') throw invalid(isolation.problem);
    // nothing to change: no transaction (and no revision); a shared store's cache may lag another coordinator's write
    const cached = this.s.store.shared ? undefined : this.s.nets.find((x) => x.name === network);
    if (cached && (cached.isolation ?? 'none') === isolation) return cached;
    let changed = false;
    const n = await this.s.change('network update', (t) => {
      const cur = this.network(t, network);
      if (isolation === 'groups') {
        zoneFits(cur);
        policyIpv4Only(cur);
      }
      changed = (cur.isolation ?? 'none') !== isolation;
      const next = { ...cur, isolation };
      if (changed) t.putNetwork(next);
      return { result: next, upserts: [], removes: [] };
    });
    if (changed) {
      this.event(network, `isolation ${isolation}`);
      this.s.log.info({ network, isolation }, 'network isolation changed');
    }
    return n;
  }

  /** Adds a rule (one that says the same as an existing one: that one, nothing added). */
  async addRule(network: string, raw: Omit<PolicyRule, 'id'>): Promise<PolicyRule> {
    const checked = checkRule(raw);
    if (checked.problem !== undefined) throw invalid(checked.problem);
    // the same rule again: that one, without a transaction (no revision for nothing)
    const known = this.s.store.shared
      ? undefined
      : this.s.nets.find((x) => x.name === network)?.rules?.find((r) => sameRule(r, checked.rule));
    if (known) return known;
    let added = false;
    const rule = await this.s.change('policy rule', (t) => {
      const n = this.network(t, network);
      zoneFits(n);
      policyIpv4Only(n);
      const rules = n.rules ?? [];
      const same = rules.find((r) => sameRule(r, checked.rule));
      if (same) return { result: same, upserts: [], removes: [] };
      if (rules.length >= MAX_RULES_PER_NETWORK)
        throw exhausted(`network ${network} has ${rules.length} rules, the most one network may hold`);
      const num = Number(t.meta(RULE_HIGH) ?? 0) + 1;
      const r: PolicyRule = { id: `r${num}`, ...checked.rule };
      t.setMeta(RULE_HIGH, String(num));
      t.putNetwork({ ...n, rules: [...rules, r] });
      added = true;
      return { result: r, upserts: [], removes: [] };
    });
    if (added) {
      this.event(network, `${rule.id} ${describeRule(rule)} added`);
      this.s.log.info({ network, rule: rule.id, what: describeRule(rule) }, 'policy rule added');
    }
    return rule;
  }

  async deleteRule(id: string): Promise<void> {
    const owner = this.s.nets.find((n) => n.rules?.some((r) => r.id === id));
    if (!owner) throw notFound(`no policy rule "${trunc(id)}"`);
    const gone = await this.s.change('policy rule delete', (t) => {
      const n = this.network(t, owner.name);
      const r = n.rules?.find((x) => x.id === id);
      if (!r) throw notFound(`no policy rule "${trunc(id)}"`);
      t.putNetwork({ ...n, rules: n.rules!.filter((x) => x.id !== id) });
      return { result: r, upserts: [], removes: [] };
    });
    this.event(owner.name, `${id} ${describeRule(gone)} deleted`);
    this.s.log.info({ network: owner.name, rule: id }, 'policy rule deleted');
  }
}
