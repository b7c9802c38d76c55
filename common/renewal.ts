// When a certificate is due for renewal: at 2/3 of its life (the coordinator's own
// certificates and every agent's alike).

/** Pure: the time (ms) a certificate valid from notBefore to notAfter is renewed. */
export function renewAt(notBefore: number, notAfter: number): number {
  return notBefore + ((notAfter - notBefore) * 2) / 3;
}

/** Pure: has less than a third of its life left (coordctl status warns). */
export function lateInLife(notBefore: number, notAfter: number, now: number): boolean {
  return notAfter > 0 && now >= renewAt(notBefore, notAfter);
}
