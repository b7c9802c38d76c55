import test from 'ava';
import { parseAvaVerbose } from '../bench/soak.js';

test('soak report: one entry per fault case with its outcome, duration and logged figures', (t) => {
  const out = [
    '  ✔ faults › a host cut from one peer: named (5.6s)',
    '    ℹ broken tunnel named by coordctl status 2515 ms after the cut',
    '    ℹ ping mesh: 12 pairs, 444 pings, 54 lost',
    '  ✘ [fail]: faults › 1000 container start/stop cycles across hosts (5.2m)',
    '    ℹ 1000 cycles in 300 s',
    '  ✔ faults › quick one (557ms)',
    '  ✔ faults › coordinator down for 300 s (5m 4.2s)',
    '  ✔ lab › not a fault case (1s)',
    '    ℹ a figure of another file',
  ].join('\n');
  t.deepEqual(parseAvaVerbose(out), [
    {
      title: 'a host cut from one peer: named',
      ok: true,
      seconds: 5.6,
      figures: [
        'broken tunnel named by coordctl status 2515 ms after the cut',
        'ping mesh: 12 pairs, 444 pings, 54 lost',
      ],
    },
    {
      title: '1000 container start/stop cycles across hosts',
      ok: false,
      seconds: 312,
      figures: ['1000 cycles in 300 s'],
    },
    { title: 'quick one', ok: true, seconds: 0.557, figures: [] },
    { title: 'coordinator down for 300 s', ok: true, seconds: 304.2, figures: [] },
  ]);
});

test('soak report: ava run on the fault file alone names no file', (t) => {
  const out = ['  ✔ a host crashes: it shows down (22.5s)', '    ℹ h4 crashed', '  ✘ [fail]: burst (1m)'].join('\n');
  t.deepEqual(parseAvaVerbose(out), [
    { title: 'a host crashes: it shows down', ok: true, seconds: 22.5, figures: ['h4 crashed'] },
    { title: 'burst', ok: false, seconds: 60, figures: [] },
  ]);
});
