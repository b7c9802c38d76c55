// Text from the outside (labels, container names, errors built from them) made safe to
// print: control characters (C0, DEL, C1: what a terminal acts on) escaped, length capped.

/** Pure: s with control characters as \xNN and at most max characters (then "..."). */
export function printable(s: string, max = 128): string {
  const cut = s.length > max ? `${s.slice(0, max)}...` : s;
  // eslint-disable-next-line no-control-regex -- control characters are what this is about
  return cut.replace(/[\x00-\x1f\x7f-\x9f]/g, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`);
}

/** Pure: a value quoted for an error message: printable, at most 64 characters. */
/** Pure: the items of a comma-separated flag or label value, trimmed, empty ones dropped. */
export function commaList(v: string): string[] {
  return v
    .split(',')
    .map((x) => x.trim())
    .filter(Boolean);
}

export function quoted(s: string): string {
  return `"${printable(s, 64)}"`;
}
