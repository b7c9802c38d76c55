// How coordctl prints a trace.
import type { TraceReport } from '../proto/gen/gremesh/v1/gremesh.js';

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
