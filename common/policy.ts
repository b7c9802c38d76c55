// Pure: the vocabulary of policy inside a network, shared by the agent (the gremesh.group
// label it reports, the flows it writes) and the coordinator (what it accepts and stores).
//   group    a name a container carries by its own gremesh.group label
//   rule     allow|deny FROM -> TO [proto [port range]]; FROM is a group, 'any' or 'outside'
//            (what enters through a host's gateway), TO a group or 'any'
//   isolation 'none': allowed unless denied; 'groups': denied between containers unless
//            allowed or both are in the same group

export type Isolation = 'none' | 'groups';
export type RuleAction = 'allow' | 'deny';
export type RuleProto = '' | 'tcp' | 'udp' | 'icmp';

export interface PolicyRule {
  id: string;
  action: RuleAction;
  from: string;
  to: string;
  proto: RuleProto;
  /** 0: any port (tcp/udp only) */
  portMin: number;
  portMax: number;
}

/** the words FROM/TO may be besides a group name */
export const ANY = 'any';
export const OUTSIDE = 'outside';
/** rules one network may hold */
export const MAX_RULES_PER_NETWORK = 1000;

const GROUP = /^[a-z0-9]([a-z0-9_.-]{0,61}[a-z0-9])?$/;

/** The group as gremesh keeps it (lowercase), or undefined when it is none (empty, too long, odd characters, a reserved word). */
export function normalizeGroup(raw: string | undefined): string | undefined {
  const s = (raw ?? '').trim().toLowerCase();
  return GROUP.test(s) && s !== ANY && s !== OUTSIDE ? s : undefined;
}

/** Pure: why a group label value is refused (undefined: it is a group) */
export function groupProblem(raw: string): string | undefined {
  if (normalizeGroup(raw) !== undefined) return undefined;
  const s = raw.trim().toLowerCase();
  if (s === ANY || s === OUTSIDE) return `"${s}" is a reserved word, not a group name`;
  return `"${raw.slice(0, 70)}" is no group name (1-63 letters, digits, "-", "_", ".", starting and ending with a letter or digit)`;
}

/** Pure: "80" or "8000-8100" as a range; undefined when it is none */
export function parsePortRange(s: string): { min: number; max: number } | undefined {
  const m = /^(\d{1,5})(?:-(\d{1,5}))?$/.exec(s);
  if (!m) return undefined;
  const min = Number(m[1]);
  const max = m[2] === undefined ? min : Number(m[2]);
  return min >= 1 && max <= 65535 && min <= max ? { min, max } : undefined;
}

/** Pure: a rule as one line: `allow web -> db tcp/5432` */
export function describeRule(r: Omit<PolicyRule, 'id'>): string {
  const ports = r.portMin === 0 ? '' : r.portMin === r.portMax ? `/${r.portMin}` : `/${r.portMin}-${r.portMax}`;
  return `${r.action} ${r.from} -> ${r.to}${r.proto ? ` ${r.proto}${ports}` : ''}`;
}

/** Pure: why a rule is refused (undefined: it is one); groups normalized in the returned rule */
export function checkRule(
  r: Omit<PolicyRule, 'id'>,
): { rule: Omit<PolicyRule, 'id'>; problem?: undefined } | { problem: string } {
  if (r.action !== 'allow' && r.action !== 'deny')
    return { problem: `action must be allow or deny, got "${r.action}"` };
  const side = (v: string, what: string, words: string[]): string | { problem: string } => {
    const w = v.trim().toLowerCase();
    if (words.includes(w)) return w;
    if (w === OUTSIDE)
      return { problem: `--to outside: policy filters traffic to containers, not egress to the outside` };
    const g = normalizeGroup(w);
    return g ?? { problem: `--${what}: ${groupProblem(v) ?? `"${v}" is no group`}` };
  };
  const from = side(r.from, 'from', [ANY, OUTSIDE]);
  if (typeof from !== 'string') return from;
  const to = side(r.to, 'to', [ANY]);
  if (typeof to !== 'string') return to;
  if (!['', 'tcp', 'udp', 'icmp'].includes(r.proto))
    return { problem: `--proto must be tcp, udp or icmp, got "${r.proto}"` };
  if (r.portMin !== 0 || r.portMax !== 0) {
    if (r.proto !== 'tcp' && r.proto !== 'udp') return { problem: '--port needs --proto tcp or udp' };
    if (!(r.portMin >= 1 && r.portMax <= 65535 && r.portMin <= r.portMax))
      return { problem: `--port ${r.portMin}-${r.portMax} is no port range (1-65535, low-high)` };
  }
  return { rule: { ...r, from, to } };
}

/** Pure: two rules that say the same (id aside) */
export function sameRule(a: Omit<PolicyRule, 'id'>, b: Omit<PolicyRule, 'id'>): boolean {
  return (
    a.action === b.action &&
    a.from === b.from &&
    a.to === b.to &&
    a.proto === b.proto &&
    a.portMin === b.portMin &&
    a.portMax === b.portMax
  );
}
