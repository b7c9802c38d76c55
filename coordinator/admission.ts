// Admission: join tokens (issue, revoke, list), Register (a host admitted with a token and,
// with TLS, its CSR signed; or an admitted host back in by certificate or credential),
// certificate renewal, authentication of a caller, and a host's removal.
import { cidr6Contains, parseCidr6, parseIp6 } from '../common/ipv6.js';
import { CoordError, denied, exists, invalid, notFound, precondition, unauthenticated } from './errors.js';
import type { HostRec, RegisterRequestView, TokenRec } from './model.js';
import { allocateSlice } from './networks.js';
import type { CoordState } from './state.js';
import type { Tx } from './store.js';
import { hashSecret, newCredential, newToken, parseToken, secretMatches } from './tokens.js';
import { MAX_TTL_SECONDS, checkName, checkOverlayVsUnderlay, checkUnderlayIp, trunc } from './validate.js';

const usedToken = (id: string) => unauthenticated(`join token ${id} was already used`);

const notCurrent = (name: string) =>
  unauthenticated(`certificate for host "${trunc(name)}" is not current (host removed or re-joined)`);

/** what a join signs with TLS: the certificate and its fingerprints ('' without TLS) */
interface Certified {
  certificate: string;
  certFingerprint: string;
  keyFingerprint: string;
}

/** Pure: an IPv6 underlay address inside a network's IPv6 prefix (tunnels would be routed into the overlay) */
export function underlayInIpv6Prefix(
  nets: { name: string; ipv6Cidr?: string }[],
  host: string,
  ip: string,
): string | undefined {
  const a = parseIp6(ip);
  if (a === undefined) return undefined;
  for (const n of nets) {
    const c = n.ipv6Cidr ? parseCidr6(n.ipv6Cidr) : undefined;
    if (c && cidr6Contains(c, a))
      return `host ${host}'s underlay IP ${ip} is inside network ${n.name}'s IPv6 prefix ${n.ipv6Cidr}: the underlay must stay outside every overlay network`;
  }
  return undefined;
}

export class Admission {
  constructor(private readonly s: CoordState) {}

  async joinHost(name: string, ttlS = 0): Promise<{ token: string; expiresMs: number }> {
    const s = this.s;
    const bad = checkName('host', name);
    if (bad) throw invalid(bad);
    if (!Number.isInteger(ttlS) || ttlS < 0 || ttlS > MAX_TTL_SECONDS)
      throw invalid(`token TTL must be 1..${MAX_TTL_SECONDS} seconds`);
    const tk = newToken();
    const expiresMs = s.now() + (ttlS || s.defaultTtlS) * 1000;
    await s.store.tx((t) => {
      if (t.token(tk.id)) throw new CoordError('ABORTED', 'token id collision, try again');
      t.putToken({
        id: tk.id,
        secretHash: hashSecret(tk.secret),
        host: name,
        expiresMs,
        state: 'valid',
        createdMs: s.now(),
      });
    });
    s.log.info({ host: name, token: tk.id, expiresMs }, 'join token issued');
    return { token: tk.token, expiresMs };
  }

  async revokeToken(id: string): Promise<void> {
    const found = await this.s.store.tx((t) => {
      const tok = t.token(id);
      if (!tok) return undefined;
      if (tok.state === 'valid') t.putToken({ ...tok, state: 'revoked' });
      return tok;
    });
    if (!found) throw notFound(`no join token "${trunc(id)}"`);
    if (found.state === 'used')
      throw precondition(
        `join token ${found.id} was already used by host ${found.host}: revoking it changes nothing; to cut the host off: coordctl leave ${found.host}`,
      );
  }

  async tokens(): Promise<(Omit<TokenRec, 'secretHash' | 'state'> & { state: string })[]> {
    const now = this.s.now();
    return (await this.s.store.tx((t) => t.tokens())).map(({ secretHash: _s, ...t }) => ({
      ...t,
      state: t.state === 'valid' && t.expiresMs <= now ? 'expired' : t.state,
    }));
  }

  /** The token must be usable by this host: checked before anything is signed, again in the transaction. */
  private checkToken(t: Tx, id: string, secret: string, name: string, allowUsed = false): TokenRec {
    const tok = t.token(id);
    if (!tok || !secretMatches(secret, tok.secretHash)) throw unauthenticated(`unknown join token ${id}`);
    if (tok.state === 'revoked') throw unauthenticated(`join token ${tok.id} was revoked`);
    if (tok.state === 'used' && !(allowUsed && tok.host === name)) throw usedToken(tok.id);
    if (tok.expiresMs <= this.s.now())
      throw unauthenticated(`join token ${tok.id} expired at ${new Date(tok.expiresMs).toISOString()}`);
    if (tok.host !== name) throw denied(`join token ${tok.id} is for host ${tok.host}, not ${name}`);
    return tok;
  }

  /**
   * Admits a host with a join token (and, with TLS, signs its CSR), or lets an admitted
   * host back in: with TLS by its client certificate (callerFingerprint), else by its credential.
   */
  async register(
    r: RegisterRequestView,
    callerFingerprint?: string,
  ): Promise<{ credential: string; certificate: string }> {
    const s = this.s;
    const bad =
      checkName('host', r.name) ??
      checkUnderlayIp(r.underlayIp) ??
      checkOverlayVsUnderlay(s.nets, [{ what: `host ${r.name}'s underlay IP`, ip: r.underlayIp }]) ??
      underlayInIpv6Prefix(s.nets, r.name, r.underlayIp);
    if (bad) throw invalid(bad);
    if (r.agentVersion.length > 64) throw invalid('agent version longer than 64 characters');
    if (callerFingerprint) {
      this.authenticateCert(r.name, callerFingerprint);
      await this.reRegister(r);
      return { credential: '', certificate: '' };
    }
    if (r.credential) {
      if (s.signCsr)
        throw unauthenticated('this coordinator uses TLS: re-register with the host certificate, not a credential');
      this.authenticate(r.name, r.credential);
      await this.reRegister(r);
      return { credential: r.credential, certificate: '' };
    }
    if (!r.token) throw unauthenticated('Register needs a join token, or the host certificate');
    const parsed = parseToken(r.token);
    if (!parsed) throw unauthenticated('malformed join token (want [a-z0-9]{6}.[a-z0-9]{16})');
    const { certificate, certFingerprint, keyFingerprint } = await this.certify(r, parsed);
    const credential = newCredential();
    await s.change('register', (t) => {
      const tok = this.checkToken(t, parsed.id, parsed.secret, r.name, !!keyFingerprint);
      if (tok.state === 'used' && t.host(r.name)?.keyFingerprint !== keyFingerprint) throw usedToken(tok.id);
      if (tok.state === 'used')
        s.log.warn(
          { host: r.name, token: tok.id },
          'join retried with the same key (its first reply was lost): certificate issued again',
        );
      const other = t.hosts().find((h) => h.underlayIp === r.underlayIp && h.name !== r.name);
      if (other) throw exists(`underlay IP ${r.underlayIp} is already used by host ${other.name}`);
      s.checkTunnelIps(t.hosts(), r);
      const prev = t.host(r.name);
      for (const n of t.networks()) allocateSlice(t, n, r.name);
      t.putHost({
        name: r.name,
        underlayIp: r.underlayIp,
        credentialHash: hashSecret(credential),
        agentVersion: r.agentVersion,
        joinedMs: prev?.joinedMs ?? s.now(),
        certFingerprint,
        keyFingerprint,
      });
      t.putToken({ ...tok, state: 'used' });
      return { result: undefined, upserts: [r.name], removes: [] };
    });
    await this.admitted(r, certificate);
    return { credential: s.signCsr ? '' : credential, certificate };
  }

  /**
   * TLS: the host's CSR signed, once its token is usable by it. A join whose reply was lost
   * (coordinator killed, or too slow, after the commit) is retried with the same token: a used
   * token passes here, and the commit takes it only with the key the host was admitted with.
   */
  private async certify(r: RegisterRequestView, parsed: { id: string; secret: string }): Promise<Certified> {
    const s = this.s;
    if (!s.signCsr) return { certificate: '', certFingerprint: '', keyFingerprint: '' };
    if (!r.csr || r.csr.length > 8192 || !r.csr.includes('BEGIN CERTIFICATE REQUEST'))
      throw invalid('Register with a join token needs a PEM certificate request (csr)');
    const tok = await s.store.tx((t) => this.checkToken(t, parsed.id, parsed.secret, r.name, true));
    // a used token signs nothing for another key: compare the CSR's key first
    if (tok.state === 'used') {
      let key = '';
      try {
        key = s.csrKeyFingerprint ? await s.csrKeyFingerprint(r.csr) : '';
      } catch (e) {
        throw invalid(`the certificate request could not be read: ${(e as Error).message.split('\n')[0]}`);
      }
      if (!key || s.hostMap.get(r.name)?.keyFingerprint !== key) throw usedToken(tok.id);
    }
    let certificate: string;
    try {
      certificate = await s.signCsr(r.csr, r.name);
    } catch (e) {
      throw invalid(`the certificate request could not be signed: ${(e as Error).message.split('\n')[0]}`);
    }
    const fp = s.fingerprintOf!(certificate);
    return { certificate, certFingerprint: fp.cert, keyFingerprint: fp.key };
  }

  /** after a join's commit: the host seen, shared, its old streams ended, the event logged */
  private async admitted(r: RegisterRequestView, certificate: string): Promise<void> {
    const s = this.s;
    s.touch(r.name);
    s.log.info({ host: r.name, underlayIp: r.underlayIp, slices: s.slicesOf(r.name) }, 'host admitted');
    if (certificate && s.validityOf) s.soft.get(r.name)!.cert = s.validityOf(certificate);
    await s.publishSoft(r.name);
    s.onAdmitted(r.name);
    s.events.add({
      timeMs: s.now(),
      kind: 'host-joined',
      host: r.name,
      peer: '',
      detail: `underlay ${r.underlayIp}, slices ${
        s
          .slicesOf(r.name)
          .map((x) => x.cidr)
          .join(', ') || 'none'
      }`,
    });
    s.liveness.set(r.name, 'up');
  }

  /** TLS: the host named in the certificate, if that certificate is the host's current one. */
  authenticateCert(name: string, fingerprint: string): HostRec {
    const h = this.s.hostMap.get(name);
    if (!h || !h.certFingerprint || h.certFingerprint !== fingerprint) throw notCurrent(name);
    return h;
  }

  /**
   * TLS: a host renews its certificate over its current one (a new key, the same name).
   * The new certificate becomes the only current one; streams opened with the old one go
   * on (the agent moves to the new one and resumes its Watch with a delta).
   */
  async renew(name: string, callerFingerprint: string, csr: string): Promise<string> {
    const s = this.s;
    if (!s.signCsr || !s.fingerprintOf) throw precondition('this coordinator runs without TLS: nothing to renew');
    this.authenticateCert(name, callerFingerprint);
    if (!csr || csr.length > 8192 || !csr.includes('BEGIN CERTIFICATE REQUEST'))
      throw invalid('Renew needs a PEM certificate request (csr)');
    let certificate: string;
    try {
      certificate = await s.signCsr(csr, name);
    } catch (e) {
      throw invalid(`the certificate request could not be signed: ${(e as Error).message.split('\n')[0]}`);
    }
    const fp = s.fingerprintOf(certificate);
    await s.store.tx((t) => {
      const h = t.host(name);
      if (!h || h.certFingerprint !== callerFingerprint) throw notCurrent(name);
      t.putHost({ ...h, certFingerprint: fp.cert, keyFingerprint: fp.key });
    });
    await s.reloadAndTell({ upserts: [], removes: [] }, false);
    s.touch(name);
    if (s.validityOf) s.soft.get(name)!.cert = s.validityOf(certificate);
    await s.publishSoft(name);
    s.log.info({ host: name }, 'host certificate renewed');
    return certificate;
  }

  private async reRegister(r: { name: string; underlayIp: string; agentVersion: string }): Promise<void> {
    const s = this.s;
    const h = s.hostMap.get(r.name)!;
    const missing = s.nets.some((n) => !s.slicesOf(r.name).some((x) => x.network === n.name));
    if (h.underlayIp !== r.underlayIp || h.agentVersion !== r.agentVersion || missing) {
      await s.change('register', (t) => {
        const other = t.hosts().find((x) => x.underlayIp === r.underlayIp && x.name !== r.name);
        if (other) throw exists(`underlay IP ${r.underlayIp} is already used by host ${other.name}`);
        s.checkTunnelIps(t.hosts(), r);
        for (const n of t.networks()) allocateSlice(t, n, r.name);
        t.putHost({ ...t.host(r.name)!, underlayIp: r.underlayIp, agentVersion: r.agentVersion });
        return { result: undefined, upserts: [r.name], removes: [] };
      });
    }
    s.touch(r.name);
  }

  /** The host record if name + credential match; UNAUTHENTICATED otherwise. */
  authenticate(name: string, credential: string): HostRec {
    const h = this.s.hostMap.get(name);
    if (!h || !credential || !secretMatches(credential, h.credentialHash))
      throw unauthenticated(`unknown host "${trunc(name)}" or wrong credential`);
    return h;
  }

  async removeHost(name: string): Promise<void> {
    const s = this.s;
    if (!s.hostMap.has(name)) throw notFound(`no host named "${trunc(name)}"`);
    await s.change('leave', (t) => {
      if (!t.host(name)) throw notFound(`no host named "${trunc(name)}"`);
      for (const x of t.slices()) {
        if (x.host === name) t.putSlice({ ...x, host: null, lastHost: name, releasedMs: s.now() });
      }
      for (const tok of t.tokens())
        if (tok.host === name && tok.state === 'valid') t.putToken({ ...tok, state: 'revoked' });
      t.deleteHost(name);
      return { result: undefined, upserts: [], removes: [name] };
    });
    s.soft.delete(name);
    await s.store.shared?.soft.remove(name).catch(() => {});
    s.liveness.delete(name);
    s.log.info({ host: name }, 'host removed');
    s.events.add({ timeMs: s.now(), kind: 'host-left', host: name, peer: '', detail: 'coordctl leave' });
  }
}
