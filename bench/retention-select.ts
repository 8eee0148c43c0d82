/**
 * Retention selection speed: how long one selectRetention call takes for a
 * job with 10,000 and 100,000 snapshots, against an anchor measured in the
 * same process — one Intl formatToParts call per snapshot, which is what a
 * naive calendar would pay before doing any selection at all. Prints medians
 * and the ratio (selection ÷ anchor); not a test, asserts nothing. "warm" is
 * the steady state of a long-running worker (the zone's offset cache is
 * filled); "cold" is the first call for a zone in a process, which pays one
 * Intl probe per UTC day of history.
 *
 *   npm exec -- node bench/retention-select.ts
 */
import { retentionPolicySchema } from '../core/retention-policy.ts';
import { selectRetention, type RetentionSnapshot } from '../core/retention-select.ts';

const HOUR = 3_600_000;

function snapshots(n: number, stepMs: number): RetentionSnapshot[] {
  const end = Date.UTC(2026, 10, 20, 12);
  const out: RetentionSnapshot[] = [];
  for (let i = 0; i < n; i++) {
    out.push({
      run_id: `00000000-0000-4000-8000-${String(i).padStart(12, '0')}`,
      ended_at: new Date(end - i * stepMs - (i % 7) * 1000),
      pinned: i % 97 === 0,
      leased: i % 1009 === 0,
      transfer_bytes: 1_000_000 + i,
      source_bytes: 2_000_000 + i,
    });
  }
  // callers pass rows in any order
  return out.reverse();
}

let spelling = 0;
/** `Europe/Berlin` with a different letter case each call (Intl accepts any case). */
function freshSpelling(): string {
  spelling++;
  return [...'Europe/Berlin'].map((c, i) => ((spelling >> i) & 1 ? c.toUpperCase() : c.toLowerCase())).join('');
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

function time(fn: () => unknown, runs: number): number {
  fn(); // warm up
  const ms: number[] = [];
  for (let i = 0; i < runs; i++) {
    const t0 = performance.now();
    fn();
    ms.push(performance.now() - t0);
  }
  return median(ms);
}

const gfs = retentionPolicySchema.parse({
  enabled: true, keep_last: 24, keep_days: 7, keep_hourly: 48, keep_daily: 30, keep_weekly: 12, keep_monthly: 24, keep_yearly: 10,
  min_keep: 5, max_delete_per_tick: 50, max_delete_per_day: 200,
});
// every bucket rule walks the whole history: the worst case for the calendar
const deep = retentionPolicySchema.parse({ enabled: true, keep_hourly: 10_000, keep_daily: 10_000, keep_weekly: 10_000, keep_monthly: 10_000, keep_yearly: 10_000 });
const simple = retentionPolicySchema.parse({ enabled: true, keep_last: 7, keep_days: 30 });

// Warm the JIT on a small history first, so the first row is not a compile benchmark.
{
  const warm = snapshots(2_000, HOUR);
  for (let i = 0; i < 50; i++) {
    for (const policy of [simple, gfs, deep]) {
      selectRetention({ policy, snapshots: warm, now: new Date(Date.UTC(2026, 10, 20, 13)), timeZone: 'Europe/Berlin', already_enqueued_today: 0 });
    }
  }
}

const anchorFormat = new Intl.DateTimeFormat('en-US', { timeZone: 'Europe/Berlin', hourCycle: 'h23', year: 'numeric', month: 'numeric', day: 'numeric', hour: 'numeric' });
for (const [label, n, step] of [
  ['10,000 hourly', 10_000, HOUR],
  ['10,000 daily', 10_000, 24 * HOUR],
  ['100,000 every 5 min', 100_000, 5 * 60_000],
  ['100,000 hourly', 100_000, HOUR],
] as const) {
  const snaps = snapshots(n, step);
  const anchor = time(() => { for (const s of snaps) anchorFormat.formatToParts(s.ended_at); }, 5);
  const row: string[] = [`${label.padEnd(20)} anchor ${anchor.toFixed(1)} ms`];
  const now = new Date(Date.UTC(2026, 10, 20, 13));
  for (const [name, policy] of [['simple', simple], ['gfs', gfs], ['deep', deep]] as const) {
    const ms = time(() => selectRetention({ policy, snapshots: snaps, now, timeZone: 'Europe/Berlin', already_enqueued_today: 0 }), 15);
    row.push(`${name} ${ms.toFixed(1)} ms (×${(ms / anchor).toFixed(2)})`);
  }
  // cold: a new spelling of the zone is a new, empty offset cache
  const cold = time(() => selectRetention({ policy: deep, snapshots: snaps, now, timeZone: freshSpelling(), already_enqueued_today: 0 }), 5);
  row.push(`deep cold ${cold.toFixed(1)} ms (×${(cold / anchor).toFixed(2)})`);
  console.log(row.join(' | '));
}
