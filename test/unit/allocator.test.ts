import test from 'ava';
import { pickGreKey, pickSlice, sliceCidr, sliceCount } from '../../coordinator/allocator.js';
import type { SliceRec } from '../../coordinator/model.js';

const net = { cidr: '198.18.64.0/22', hostPrefixLen: 24 }; // 4 slices
const s = (
  idx: number,
  host: string | null,
  lastHost: string | null = host,
  releasedMs: number | null = null,
): SliceRec => ({ network: 'n', idx, host, lastHost, releasedMs });

test('slice count and CIDR', (t) => {
  t.is(sliceCount(net), 4);
  t.is(sliceCidr(net, 3), '198.18.67.0/24');
});

const cases: [string, SliceRec[], string, number | undefined][] = [
  ['empty network: index 0', [], 'a', 0],
  ['lowest never-used index', [s(0, 'x'), s(2, 'y')], 'a', 1],
  ['a host keeps the slice it holds', [s(0, 'x'), s(1, 'a')], 'a', 1],
  ['a re-joining host gets its released slice back', [s(0, 'x'), s(1, null, 'a', 5), s(2, 'y')], 'a', 1],
  ['never-used beats quarantined', [s(0, null, 'x', 1), s(1, 'y')], 'a', 2],
  [
    'full but for quarantine: the longest-released slice',
    [s(0, 'w'), s(1, null, 'x', 50), s(2, null, 'y', 10), s(3, 'z')],
    'a',
    2,
  ],
  ['full: undefined', [s(0, 'w'), s(1, 'x'), s(2, 'y'), s(3, 'z')], 'a', undefined],
];
for (const [name, slices, host, want] of cases) {
  test(`pickSlice: ${name}`, (t) => t.is(pickSlice(net, slices, host), want));
}

test('GRE keys: lowest unused from 1', (t) => {
  t.is(pickGreKey([]), 1);
  t.is(pickGreKey([{ greKey: 1 }, { greKey: 3 }]), 4, 'a gap is a deleted network: its key is not given again');
  t.is(pickGreKey([{ greKey: 1 }], 5), 6, 'above the highest ever handed out');
});
