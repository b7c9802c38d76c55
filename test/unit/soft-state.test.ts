// computeEndpoints (coordinator/soft-state.ts): which reported endpoints go to peers, which are refused.
import test from 'ava';
import { CoordError } from '../../coordinator/errors.js';
import { computeEndpoints } from '../../coordinator/soft-state.js';

const slices = [{ network: 'default', cidr: '198.18.1.0/24' }];
const ep = (ip: string, mac: string, containerId = 'c'.repeat(64)) => ({
  network: 'default',
  host: 'h1',
  ip,
  mac,
  containerId,
});

test('computeEndpoints passes unicast MACs on, sorted by IP, and refuses group MACs and MACs another host holds', (t) => {
  const owner = new Map([['default/0a:00:00:00:00:99', 'h2']]);
  const r = computeEndpoints(
    'h1',
    [
      ep('198.18.1.9', '0a:00:00:00:00:09'),
      ep('198.18.1.3', '0a:00:00:00:00:03'),
      ep('198.18.1.4', '01:00:5e:00:00:01'),
      ep('198.18.1.5', '0a:00:00:00:00:99'),
    ],
    slices,
    owner,
  );
  t.deepEqual(
    r.endpoints.map((e) => e.ip),
    ['198.18.1.3', '198.18.1.9'],
  );
  t.deepEqual(
    r.refused.map((e) => e.reason),
    [
      'endpoint MAC 01:00:5e:00:00:01 is not unicast: not passed to peers',
      "endpoint MAC 0a:00:00:00:00:99 is already h2's in network default: not passed to peers",
    ],
  );
  t.is(r.refused[0]!.container, 'cccccccccccc');
});

test('computeEndpoints refuses an endpoint outside the host slice, or with a malformed MAC, as INVALID_ARGUMENT', (t) => {
  t.throws(() => computeEndpoints('h1', [ep('198.18.2.1', '0a:00:00:00:00:01')], slices, new Map()), {
    instanceOf: CoordError,
    code: 'INVALID_ARGUMENT',
    message: /not in h1's slice 198\.18\.1\.0\/24/,
  });
  t.throws(
    () => computeEndpoints('h1', [{ ...ep('198.18.1.1', '0a:00:00:00:00:01'), network: 'other' }], slices, new Map()),
    {
      instanceOf: CoordError,
      code: 'INVALID_ARGUMENT',
      message: /has no slice of network "other"/,
    },
  );
  t.throws(() => computeEndpoints('h1', [ep('198.18.1.1', '0A:00:00:00:00:01')], slices, new Map()), {
    instanceOf: CoordError,
    code: 'INVALID_ARGUMENT',
    message: /not a lowercase MAC address/,
  });
});
