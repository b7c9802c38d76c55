// When a certificate is renewed, and when it is late: renewed at 60 % of its life (the
// coordinator's own certificates and every agent's alike); `coordctl status` warns once
// less than a third is left, so a healthy host never shows there, not even while it renews.

/** Pure: the time (ms) a certificate valid from notBefore to notAfter is renewed. */
export function renewAt(notBefore: number, notAfter: number): number {
  return notBefore + (notAfter - notBefore) * 0.6;
}

/** Pure: has less than a third of its life left (coordctl status warns). */
export function lateInLife(notBefore: number, notAfter: number, now: number): boolean {
  return notAfter > 0 && now >= notBefore + ((notAfter - notBefore) * 2) / 3;
}
