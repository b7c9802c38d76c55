// The gRPC layer's pieces in isolation: CoordError → status mapping, undecodable requests
// marked (not thrown), the unary wrapper's order (decode, caller check, call), error counting.
import test from 'ava';
import * as grpc from '@grpc/grpc-js';
import type { Logger } from '../../common/log.js';
import { CoordError } from '../../coordinator/errors.js';
import { decodingOrMarked, toStatus, undecodable } from '../../coordinator/grpc/errors.js';
import { counted, unaryWith } from '../../coordinator/grpc/unary.js';
import { peerAuth } from '../../coordinator/grpc/auth.js';
import * as server from '../../coordinator/grpc-server.js';
import type { Coordinator } from '../../coordinator/coordinator.js';

const logged: object[] = [];
const log: Logger = {
  debug: () => {},
  info: () => {},
  warn: () => {},
  error: (o) => logged.push(o),
  child: () => log,
};

test('toStatus: a CoordError becomes its status; anything else INTERNAL, logged', (t) => {
  const s = toStatus(new CoordError('NOT_FOUND', 'no host h1'), log);
  t.is(s.code, grpc.status.NOT_FOUND);
  t.is(s.details, 'no host h1');
  const i = toStatus(new Error('boom'), log);
  t.is(i.code, grpc.status.INTERNAL);
  t.is(i.details, 'internal error: boom');
  t.is(logged.length, 1);
});

test('decodingOrMarked: a request that does not decode is marked for its handler, not thrown', (t) => {
  const def = decodingOrMarked({
    m: {
      path: '/x/m',
      requestStream: false,
      responseStream: false,
      requestSerialize: (v: unknown) => Buffer.from(String(v)),
      requestDeserialize: (b: Buffer) => {
        if (b.length === 0) throw new Error('truncated\nmore');
        return { ok: b.toString() };
      },
      responseSerialize: (v: unknown) => Buffer.from(String(v)),
      responseDeserialize: (b: Buffer) => b,
    },
  });
  const d = def.m!;
  t.deepEqual(d.requestDeserialize(Buffer.from('a')), { ok: 'a' });
  const bad = d.requestDeserialize(Buffer.alloc(0));
  t.is(undecodable(bad), 'truncated');
  t.is(undecodable({ ok: 'a' }), undefined);
});

const callOf = (request: unknown) => ({ request }) as unknown as grpc.ServerUnaryCall<unknown, unknown>;
const answer = (h: grpc.handleUnaryCall<unknown, unknown>, request: unknown) =>
  new Promise<{ e: grpc.ServiceError | null; r: unknown }>((resolve) =>
    h(callOf(request), (e, r) => resolve({ e: e as grpc.ServiceError | null, r })),
  );

test('unary: an undecodable request is INVALID_ARGUMENT before the caller is checked; check errors are statuses', async (t) => {
  const unary = unaryWith(log);
  let checked = 0;
  const h = unary(
    () => {
      checked++;
      return undefined;
    },
    (req: unknown) => ({ echo: req }),
  );
  const bad = decodingOrMarked({
    m: {
      requestDeserialize: () => {
        throw new Error('bad wire type');
      },
    },
  }).m!.requestDeserialize(Buffer.alloc(0));
  const r1 = await answer(h as grpc.handleUnaryCall<unknown, unknown>, bad);
  t.is(r1.e?.code, grpc.status.INVALID_ARGUMENT);
  t.is(r1.e?.details, 'the request could not be decoded: bad wire type');
  t.is(checked, 0);
  t.deepEqual((await answer(h as grpc.handleUnaryCall<unknown, unknown>, 7)).r, { echo: 7 });
  const denied = unary(
    () => {
      throw new CoordError('PERMISSION_DENIED', 'no');
    },
    () => ({}),
  );
  t.is((await answer(denied as grpc.handleUnaryCall<unknown, unknown>, {})).e?.code, grpc.status.PERMISSION_DENIED);
});

test('counted: unary errors counted by method and status name; streams untouched', async (t) => {
  const seen: string[] = [];
  const unary = unaryWith(log);
  const stream = () => {};
  const h = counted(
    {
      fails: unary(
        () => undefined,
        () => {
          throw new CoordError('NOT_FOUND', 'x');
        },
      ),
      works: unary(
        () => undefined,
        () => ({}),
      ),
      watch: stream,
    },
    (m, code) => seen.push(`${m} ${code}`),
  );
  await answer(h.fails as grpc.handleUnaryCall<unknown, unknown>, {});
  await answer(h.works as grpc.handleUnaryCall<unknown, unknown>, {});
  t.deepEqual(seen, ['fails NOT_FOUND']);
  t.is(h.watch, stream);
});

test('peerAuth without TLS: admin calls pass, host calls check the credential', (t) => {
  const asked: string[] = [];
  const coord = { authenticate: (n: string, c: string) => asked.push(`${n}:${c}`) } as unknown as Coordinator;
  const a = peerAuth(coord, false);
  t.is(a.admin(callOf({}) as never), undefined);
  a.asHost(callOf({}) as never, 'h1', 'cred');
  t.deepEqual(asked, ['h1:cred']);
  const tls = peerAuth(coord, true);
  const noCert = { getAuthContext: () => ({}) } as never;
  t.throws(() => tls.admin(noCert), { message: /admin calls need the admin client certificate/ });
  t.throws(() => tls.asHost(noCert, 'h1', ''), { message: 'agent calls need the host client certificate' });
});

test('grpc-server still exports what importers use', (t) => {
  for (const k of ['createServer', 'bind', 'tlsServerCredentials', 'toStatus', 'identityOf', 'hostInfo', 'undecodable'])
    t.is(typeof (server as Record<string, unknown>)[k], 'function', k);
});
