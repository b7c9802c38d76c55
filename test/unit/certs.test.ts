// Certificates made in process (common/certs.ts), checked with Node's own X.509 code.
import test from 'ava';
import { X509Certificate, generateKeyPairSync } from 'node:crypto';
import {
  issue,
  keyPairFromPem,
  makeCsr,
  newKeyPair,
  privateKeyPem,
  selfSignedCa,
  verifiedCsrKey,
} from '../../common/certs.js';

test('a CA, a server certificate with its names and a client certificate from a CSR, all verifiable', async (t) => {
  const caKeys = await newKeyPair();
  const caPem = await selfSignedCa(caKeys, 'O=gremesh, CN=test CA', 3650);
  const ca = new X509Certificate(caPem);
  t.true(ca.ca, 'basicConstraints CA:TRUE');
  t.true(ca.verify(ca.publicKey), 'self-signed');
  const issuer = { certPem: caPem, keys: caKeys };
  const srvKeys = await newKeyPair();
  const srv = new X509Certificate(
    await issue(issuer, srvKeys.publicKey, {
      subject: 'O=gremesh, CN=gremesh-coordinator',
      days: 825,
      usage: 'server',
      sans: ['DNS:localhost', 'IP:127.0.0.1', 'IP:198.18.0.2'],
    }),
  );
  t.true(srv.verify(ca.publicKey), 'signed by the CA');
  t.is(srv.checkIP('198.18.0.2'), '198.18.0.2');
  t.is(srv.checkHost('localhost'), 'localhost');
  t.is(srv.checkIP('198.18.0.3'), undefined);
  t.false(srv.ca);
  // the agent's side: its key, a CSR asking for an identity; the CA decides the subject
  const hostKeys = await newKeyPair();
  const csr = await makeCsr(hostKeys, 'O=gremesh, CN=admin');
  t.regex(csr, /^-----BEGIN CERTIFICATE REQUEST-----\n[\s\S]+\n-----END CERTIFICATE REQUEST-----\n$/);
  const key = await verifiedCsrKey(csr);
  const host = new X509Certificate(
    await issue(issuer, key, { subject: 'O=gremesh, CN=host:h1', days: 365, usage: 'client' }),
  );
  t.true(host.verify(ca.publicKey));
  t.regex(host.subject, /CN=host:h1/);
  t.notRegex(host.subject, /admin/);
  t.regex(host.keyUsage?.join(',') ?? '', /1\.3\.6\.1\.5\.5\.7\.3\.2/, 'clientAuth');
  const spki = (c: X509Certificate) => c.publicKey.export({ type: 'spki', format: 'der' }).toString('hex');
  const fromPem = await keyPairFromPem(await privateKeyPem(hostKeys));
  const again = new X509Certificate(
    await issue(issuer, fromPem.publicKey, { subject: 'CN=x', days: 1, usage: 'client' }),
  );
  t.is(spki(again), spki(host), 'a key written as PEM and read back is the same key');
});

test('a CSR whose signature does not match its key, or that is not a CSR, is refused', async (t) => {
  const csr = await makeCsr(await newKeyPair(), 'CN=host:h1');
  const body = csr.split('\n').slice(1, -2).join('');
  const der = Buffer.from(body, 'base64');
  der[der.length - 5] ^= 0xff; // inside the signature
  const tampered = `-----BEGIN CERTIFICATE REQUEST-----\n${der.toString('base64')}\n-----END CERTIFICATE REQUEST-----\n`;
  await t.throwsAsync(verifiedCsrKey(tampered), { message: /not signed by its own key|certificate request/ });
  await t.throwsAsync(verifiedCsrKey('hello'), { message: /not a PEM certificate request/ });
});

test('keys an earlier version made with openssl (SEC1 and PKCS#8 PEM, P-256) still load', async (t) => {
  const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  for (const type of ['sec1', 'pkcs8'] as const) {
    const pem = privateKey.export({ type, format: 'pem' }).toString();
    const kp = await keyPairFromPem(pem);
    t.is(kp.privateKey.algorithm.name, 'ECDSA', type);
  }
});
