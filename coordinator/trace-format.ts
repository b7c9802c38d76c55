// How coordctl prints a trace, and which certificates it warns about.
import type { TraceReport } from '../proto/gen/gremesh/v1/gremesh.js';
import { lateInLife } from '../common/renewal.js';

/** Pure: a trace, one line per table and host, a verdict per host, the answer last. */
export function formatTrace(r: TraceReport): string {
  const lines = [`trace ${r.src} -> ${r.dst}`];
  for (const h of r.hops) {
    lines.push(`${h.host}:`);
    for (const s of h.steps)
      lines.push(
        `  ${String(s.table).padStart(2)} ${s.tableName.padEnd(13)} ${s.rule}${s.actions ? `  => ${s.actions}` : ''}`,
      );
    lines.push(`  ${h.detail}`);
  }
  lines.push(`verdict: ${r.verdict}`);
  return lines.join('\n');
}

/** Pure: certificates with less than a third of their life left (the coordinator's own, and each host's as its agent reported it). */
export function certWarnings(
  own: { name: string; notBeforeMs: number; notAfterMs: number }[],
  hosts: { name: string; certNotBeforeMs: number; certNotAfterMs: number }[],
  now: number,
): string[] {
  const left = (ms: number) => {
    const s = Math.max(0, Math.round((ms - now) / 1000));
    return s >= 2 * 86400 ? `${Math.round(s / 86400)} days` : s >= 7200 ? `${Math.round(s / 3600)} hours` : `${s} s`;
  };
  return [
    ...own
      .filter((c) => lateInLife(Number(c.notBeforeMs), Number(c.notAfterMs), now))
      .map((c) =>
        c.name === 'CA'
          ? `the coordinator CA has ${left(Number(c.notAfterMs))} left (a new CA means every host joins again)`
          : `the coordinator's ${c.name} certificate has ${left(Number(c.notAfterMs))} left (it is issued anew when the coordinator starts: restart it)`,
      ),
    ...hosts
      .filter((h) => lateInLife(Number(h.certNotBeforeMs), Number(h.certNotAfterMs), now))
      .map(
        (h) =>
          `host ${h.name}'s certificate has ${left(Number(h.certNotAfterMs))} left and was not renewed (its agent renews at 60 % of its life)`,
      ),
  ];
}
