// Pure: which DNS names a container has in its network, and the rules a name follows
// (RFC 1035 labels as hostnames use them: letters, digits, inner hyphens; 63 per label,
// 253 in all). Shared by the agent (what it reports) and the coordinator (what it accepts).

/** names one endpoint may carry (container name, hostname, aliases) */
export const MAX_NAMES_PER_ENDPOINT = 16;

const LABEL = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;

/** The name as gremesh keeps it (lowercase, no trailing dot), or undefined when it is not a valid DNS name. */
export function normalizeDnsName(raw: string): string | undefined {
  const s = raw.toLowerCase().replace(/\.$/, '');
  if (!s || s.length > 253) return undefined;
  return s.split('.').every((l) => LABEL.test(l)) ? s : undefined;
}

export interface NameSources {
  id: string;
  /** Docker's container name (without the leading slash) */
  name: string;
  hostname?: string;
  /** --network-alias values for this network (Docker adds the short id: left out) */
  aliases?: string[];
}

/**
 * Pure: a container's names in one network, in order (name, hostname, aliases), each once;
 * and those refused as no valid DNS name. Docker's defaults that only repeat the id (the
 * hostname and the alias it adds, a prefix of the id) are left out silently.
 */
export function containerDnsNames(c: NameSources): { names: string[]; invalid: string[] } {
  const names: string[] = [];
  const invalid: string[] = [];
  const idPrefix = (s: string) => s.length >= 12 && c.id.startsWith(s);
  for (const raw of [c.name, c.hostname ?? '', ...(c.aliases ?? [])]) {
    if (!raw || idPrefix(raw)) continue;
    const n = normalizeDnsName(raw);
    if (!n) {
      if (!invalid.includes(raw)) invalid.push(raw);
      continue;
    }
    if (!names.includes(n) && names.length < MAX_NAMES_PER_ENDPOINT) names.push(n);
  }
  return { names, invalid };
}

/** Pure: the names an agent reported that the coordinator keeps (valid, each once, bounded). */
export function acceptedNames(reported: readonly string[] | undefined): string[] {
  const out: string[] = [];
  for (const r of reported ?? []) {
    const n = typeof r === 'string' ? normalizeDnsName(r) : undefined;
    if (n && !out.includes(n)) out.push(n);
    if (out.length >= MAX_NAMES_PER_ENDPOINT) break;
  }
  return out;
}
