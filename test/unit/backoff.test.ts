import test from 'ava';
import { Backoff, backoffDelay } from '../../common/backoff.js';

test('backoffDelay doubles from minMs and stops at maxMs', (t) => {
  const o = { minMs: 100, maxMs: 1000 };
  t.deepEqual(
    [1, 2, 3, 4, 5, 6].map((n) => backoffDelay(n, o)),
    [100, 200, 400, 800, 1000, 1000],
  );
  t.is(backoffDelay(0, o), 100);
  t.is(backoffDelay(10_000, o), 1000);
});

test('backoffDelay jitter stays within ± the fraction', (t) => {
  const o = { minMs: 1000, maxMs: 1000, jitter: 0.2 };
  t.is(
    backoffDelay(1, o, () => 0),
    800,
  );
  t.is(
    backoffDelay(1, o, () => 1),
    1200,
  );
  t.is(
    backoffDelay(1, o, () => 0.5),
    1000,
  );
});

test('Backoff counts failures and starts again after reset', (t) => {
  const b = new Backoff({ minMs: 50, maxMs: 300 });
  t.is(b.peek(), 50);
  t.deepEqual([b.next(), b.next(), b.next(), b.next()], [50, 100, 200, 300]);
  t.is(b.failures, 4);
  b.reset();
  t.is(b.failures, 0);
  t.is(b.next(), 50);
});
