import t from 'tap';
import { formatBytes, formatDuration } from '../core/human-units.ts';
import { etaSeconds, RateMeter, renderBar } from './progress-bar.ts';

const GiB = 1024 ** 3;

t.test('the bar: percentage, files, bytes, rate and ETA within the width', async (t) => {
  const state = { stage: 'packaging', files_done: 120, files_total: 300, bytes_done: 1.2 * GiB, bytes_total: 3 * GiB };
  const line = renderBar(state, 45.3 * 1024 * 1024, 120);
  t.equal(line, '[############..................]   40%  120/300 files  1.20 GiB/3.00 GiB  45.3 MiB/s  ETA 41s');
  t.ok(renderBar(state, 45.3 * 1024 * 1024, 40).length < 40, 'never wider than the terminal');
  t.equal(renderBar({ stage: 'scan', files_done: 10, files_total: null, bytes_done: 2048, bytes_total: null }, null, 80), 'scan  10 files  2.00 KiB', 'the scan has no total yet');
  t.notMatch(renderBar({ ...state, stage: 'finalize', bytes_done: 3 * GiB }, 1000, 120), /ETA/, 'no ETA while finalizing');
});

t.test('the rate follows a sliding window and restarts when the count goes back', async (t) => {
  const m = new RateMeter(10_000);
  t.equal(m.rate(), null);
  m.add(0, 0);
  m.add(1000, 100);
  t.equal(m.rate(), 100);
  for (let s = 2; s <= 30; s++) m.add(s * 1000, 100 + (s - 1) * 1000);
  t.equal(m.rate(), 1000, 'old samples left the window');
  m.add(31_000, 5);
  t.equal(m.rate(), null, 'a new stage restarts the meter');
  t.equal(etaSeconds({ stage: 'packaging', files_done: 0, files_total: 1, bytes_done: 500, bytes_total: 1500 }, 100), 10);
  t.equal(etaSeconds({ stage: 'packaging', files_done: 0, files_total: 1, bytes_done: 500, bytes_total: null }, 100), null);
});

t.test('units', async (t) => {
  t.same([0, 1023, 1024, 1536, 10 * 1024 * 1024, 150 * GiB].map(formatBytes), ['0 B', '1023 B', '1.00 KiB', '1.50 KiB', '10.0 MiB', '150 GiB']);
  t.same([0, 59.4, 65, 3600 + 240, 86400 * 3 + 7200, -1].map(formatDuration), ['0s', '59s', '1m05s', '1h04m', '3d02h', '?']);
});
