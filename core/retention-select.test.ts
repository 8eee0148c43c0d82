import t from 'tap';
import { BastionError } from './errors.ts';
import { policyHash, retentionPolicySchema, type RetentionPolicy, type RetentionPolicyInput } from './retention-policy.ts';
import {
  diffSelections,
  retentionDayStart,
  selectRetention,
  type RetentionDecision,
  type RetentionSelection,
  type RetentionSnapshot,
} from './retention-select.ts';

const policy = (p: RetentionPolicyInput): RetentionPolicy => retentionPolicySchema.parse(p);

/** `'<run_id> <ISO instant> [pinned] [leased] [bytes=N]'` → a snapshot. */
function snap(spec: string): RetentionSnapshot {
  const [run_id, iso, ...flags] = spec.split(' ');
  const bytes = flags.find((f) => f.startsWith('bytes='));
  return {
    run_id: run_id!,
    ended_at: new Date(iso!),
    pinned: flags.includes('pinned'),
    leased: flags.includes('leased'),
    transfer_bytes: bytes === undefined ? null : Number(bytes.slice(6)),
    source_bytes: bytes === undefined ? null : 2 * Number(bytes.slice(6)),
  };
}

/** One decision as `'<run_id> keep r1,r2'`, `'<run_id> delete'`, `'<run_id> skipped max_delete_per_tick'`. */
function line(d: RetentionDecision): string {
  const kind = d.decision === 'skipped_by_limit' ? 'skipped' : d.decision;
  return d.reasons.length === 0 ? `${d.run_id} ${kind}` : `${d.run_id} ${kind} ${d.reasons.join(',')}`;
}

interface Case {
  name: string;
  policy: RetentionPolicyInput;
  tz?: string;
  now?: string;
  already?: number;
  snaps: string[];
  /** Every decision, newest first. */
  expect: string[];
}

const NOW = '2026-11-20T12:00:00Z';
const SIX_DAYS = [
  's4 2026-11-17T01:00:00Z',
  's1 2026-11-20T01:00:00Z',
  's6 2026-11-15T01:00:00Z',
  's3 2026-11-18T01:00:00Z',
  's2 2026-11-19T01:00:00Z',
  's5 2026-11-16T01:00:00Z',
];

const cases: Case[] = [
  {
    name: 'keep_last keeps the newest N',
    policy: { enabled: true, keep_last: 2 },
    snaps: SIX_DAYS.filter((s) => !s.startsWith('s6')),
    expect: ['s1 keep keep_last', 's2 keep keep_last', 's3 delete', 's4 delete', 's5 delete'],
  },
  {
    name: 'keep_days counts 24-hour days back from now, boundary inclusive',
    policy: { enabled: true, keep_days: 2 },
    snaps: ['a 2026-11-20T01:00:00Z', 'b 2026-11-18T12:00:00.000Z', 'c 2026-11-18T11:59:59.999Z', 'd 2026-11-10T00:00:00Z'],
    expect: ['a keep keep_days', 'b keep keep_days', 'c delete', 'd delete'],
  },
  {
    name: 'keep_days from the newest snapshot keeps the history of a job that stopped',
    policy: { enabled: true, keep_days: 2, age_reference: 'newest' },
    snaps: ['a 2026-10-01T00:00:00Z', 'b 2026-09-30T00:00:00Z', 'c 2026-09-29T00:00:00Z', 'd 2026-09-28T23:59:59Z'],
    expect: ['a keep keep_days', 'b keep keep_days', 'c keep keep_days', 'd delete'],
  },
  {
    name: 'keep_days from now on a job that stopped keeps only its last snapshot',
    policy: { enabled: true, keep_days: 2 },
    snaps: ['a 2026-10-01T00:00:00Z', 'b 2026-09-30T00:00:00Z', 'c 2026-09-29T00:00:00Z'],
    expect: ['a keep last_snapshot', 'b delete', 'c delete'],
  },
  {
    name: 'keep_daily keeps the newest of each of the N most recent days that hold a snapshot',
    policy: { enabled: true, keep_daily: 3 },
    snaps: [
      'a 2026-11-20T10:00:00Z', 'b 2026-11-20T08:00:00Z', 'c 2026-11-19T23:00:00Z',
      'd 2026-11-19T05:00:00Z', 'e 2026-11-15T12:00:00Z', 'f 2026-11-01T12:00:00Z',
    ],
    expect: ['a keep daily:2026-11-20', 'b delete', 'c keep daily:2026-11-19', 'd delete', 'e keep daily:2026-11-15', 'f delete'],
  },
  {
    name: 'days are the job\'s days (Tokyo)',
    policy: { enabled: true, keep_daily: 2 },
    tz: 'Asia/Tokyo',
    snaps: ['a 2026-11-19T15:30:00Z', 'b 2026-11-19T14:30:00Z', 'c 2026-11-19T10:00:00Z'],
    expect: ['a keep daily:2026-11-20', 'b keep daily:2026-11-19', 'c delete'],
  },
  {
    name: 'days are the job\'s days (the same snapshots in UTC)',
    policy: { enabled: true, keep_daily: 2 },
    snaps: ['a 2026-11-19T15:30:00Z', 'b 2026-11-19T14:30:00Z', 'c 2026-11-19T10:00:00Z'],
    expect: ['a keep daily:2026-11-19', 'b delete', 'c delete'],
  },
  {
    name: 'hourly: the hour repeated when Berlin turns its clocks back is two hours',
    policy: { enabled: true, keep_hourly: 3 },
    tz: 'Europe/Berlin',
    now: '2026-10-25T03:00:00Z',
    snaps: ['h1 2026-10-25T00:10:00Z', 'h2 2026-10-25T00:50:00Z', 'h3 2026-10-25T01:10:00Z', 'h4 2026-10-25T01:50:00Z', 'h5 2026-10-25T02:10:00Z'],
    expect: [
      'h5 keep hourly:2026-10-25T03:00+01:00',
      'h4 keep hourly:2026-10-25T02:00+01:00',
      'h3 delete',
      'h2 keep hourly:2026-10-25T02:00+02:00',
      'h1 delete',
    ],
  },
  {
    name: 'hourly and daily across the hour Berlin skips in spring',
    policy: { enabled: true, keep_hourly: 2, keep_daily: 1 },
    tz: 'Europe/Berlin',
    now: '2026-03-29T03:00:00Z',
    snaps: ['b 2026-03-29T01:30:00Z', 'a 2026-03-29T00:30:00Z', 'z 2026-03-28T22:30:00Z'],
    expect: ['b keep hourly:2026-03-29T03:00+02:00,daily:2026-03-29', 'a keep hourly:2026-03-29T01:00+01:00', 'z delete'],
  },
  {
    name: 'daily on a 25-hour day in New York: one day',
    policy: { enabled: true, keep_daily: 2 },
    tz: 'America/New_York',
    now: '2026-11-03T00:00:00Z',
    snaps: ['a 2026-11-02T04:30:00Z', 'b 2026-11-01T05:30:00Z', 'c 2026-11-01T06:30:00Z', 'd 2026-10-31T12:00:00Z'],
    // a = Nov 1 23:30 EST, c = Nov 1 01:30 EST, b = Nov 1 01:30 EDT: all Nov 1
    expect: ['a keep daily:2026-11-01', 'c delete', 'b delete', 'd keep daily:2026-10-31'],
  },
  {
    name: 'weekly across a year end with ISO week 53',
    policy: { enabled: true, keep_weekly: 3 },
    now: '2027-01-05T00:00:00Z',
    snaps: ['a 2027-01-04T12:00:00Z', 'b 2027-01-03T12:00:00Z', 'c 2026-12-28T12:00:00Z', 'd 2026-12-27T12:00:00Z', 'e 2026-12-21T12:00:00Z'],
    expect: ['a keep weekly:2027-W01', 'b keep weekly:2026-W53', 'c delete', 'd keep weekly:2026-W52', 'e delete'],
  },
  {
    name: 'yearly follows the job\'s New Year (Berlin)',
    policy: { enabled: true, keep_yearly: 2 },
    tz: 'Europe/Berlin',
    now: '2027-01-02T00:00:00Z',
    snaps: ['a 2027-01-01T00:30:00Z', 'b 2026-12-31T23:30:00Z', 'c 2026-12-31T22:30:00Z', 'd 2026-06-15T12:00:00Z', 'e 2025-03-01T12:00:00Z'],
    expect: ['a keep yearly:2027', 'b delete', 'c keep yearly:2026', 'd delete', 'e delete'],
  },
  {
    name: 'yearly follows the job\'s New Year (the same snapshots in UTC)',
    policy: { enabled: true, keep_yearly: 2 },
    now: '2027-01-02T00:00:00Z',
    snaps: ['a 2027-01-01T00:30:00Z', 'b 2026-12-31T23:30:00Z', 'c 2026-12-31T22:30:00Z', 'd 2026-06-15T12:00:00Z', 'e 2025-03-01T12:00:00Z'],
    expect: ['a keep yearly:2027', 'b keep yearly:2026', 'c delete', 'd delete', 'e delete'],
  },
  {
    name: 'monthly skips months without a snapshot',
    policy: { enabled: true, keep_monthly: 3 },
    tz: 'Europe/Berlin',
    now: '2027-01-02T00:00:00Z',
    snaps: ['a 2027-01-01T00:30:00Z', 'b 2026-12-31T23:30:00Z', 'c 2026-12-31T22:30:00Z', 'd 2026-06-15T12:00:00Z', 'e 2025-03-01T12:00:00Z'],
    expect: ['a keep monthly:2027-01', 'b delete', 'c keep monthly:2026-12', 'd keep monthly:2026-06', 'e delete'],
  },
  {
    name: 'the rules unite and a decision lists every reason that keeps it',
    policy: { enabled: true, keep_last: 1, keep_days: 1, keep_weekly: 2 },
    snaps: [
      'a 2026-11-20T06:00:00Z', 'b 2026-11-19T18:00:00Z', 'c 2026-11-19T06:00:00Z',
      'd 2026-11-12T06:00:00Z', 'e 2026-11-11T06:00:00Z', 'f 2026-11-05T06:00:00Z',
    ],
    expect: ['a keep keep_last,keep_days,weekly:2026-W47', 'b keep keep_days', 'c delete', 'd keep weekly:2026-W46', 'e delete', 'f delete'],
  },
  {
    name: 'every rule at once on one snapshot',
    policy: { enabled: true, keep_last: 1, keep_days: 1, keep_hourly: 1, keep_daily: 1, keep_weekly: 1, keep_monthly: 1, keep_yearly: 1, min_keep: 1 },
    snaps: ['a 2026-11-20T06:00:00Z leased', 'b 2026-11-20T05:00:00Z'],
    expect: [
      'a keep leased,keep_last,keep_days,hourly:2026-11-20T06:00+00:00,daily:2026-11-20,weekly:2026-W47,monthly:2026-11,yearly:2026',
      'b keep keep_days',
    ],
  },
  {
    name: 'pinned snapshots are kept and invisible to the rules',
    policy: { enabled: true, keep_last: 2 },
    snaps: ['a 2026-11-20T01:00:00Z pinned', 'b 2026-11-19T01:00:00Z', 'c 2026-11-18T01:00:00Z', 'd 2026-11-17T01:00:00Z', 'e 2026-11-16T01:00:00Z pinned leased'],
    expect: ['a keep pinned', 'b keep keep_last', 'c keep keep_last', 'd delete', 'e keep pinned,leased'],
  },
  {
    name: 'pinned snapshots do not take a calendar bucket',
    policy: { enabled: true, keep_daily: 1 },
    snaps: ['a 2026-11-20T06:00:00Z pinned', 'b 2026-11-20T05:00:00Z', 'c 2026-11-19T05:00:00Z'],
    expect: ['a keep pinned', 'b keep daily:2026-11-20', 'c delete'],
  },
  {
    name: 'a pinned newest snapshot is not the age reference',
    policy: { enabled: true, keep_days: 1, age_reference: 'newest' },
    snaps: ['a 2026-10-10T00:00:00Z pinned', 'b 2026-10-01T12:00:00Z', 'c 2026-09-30T12:00:00Z', 'd 2026-09-30T11:59:00Z'],
    expect: ['a keep pinned', 'b keep keep_days', 'c keep keep_days', 'd delete'],
  },
  {
    name: 'leased snapshots are kept and count toward the rules',
    policy: { enabled: true, keep_last: 1 },
    snaps: ['a 2026-11-20T01:00:00Z leased', 'b 2026-11-19T01:00:00Z', 'c 2026-11-18T01:00:00Z leased'],
    expect: ['a keep leased,keep_last', 'b delete', 'c keep leased'],
  },
  {
    name: 'min_keep tops up with the newest snapshots no rule kept',
    policy: { enabled: true, keep_days: 1, min_keep: 3 },
    snaps: ['a 2026-11-20T06:00:00Z', 'b 2026-11-18T06:00:00Z', 'c 2026-11-17T06:00:00Z', 'd 2026-11-16T06:00:00Z'],
    expect: ['a keep keep_days', 'b keep min_keep', 'c keep min_keep', 'd delete'],
  },
  {
    name: 'min_keep counts a leased snapshot, which stays',
    policy: { enabled: true, keep_days: 1, min_keep: 2 },
    snaps: ['a 2026-11-20T06:00:00Z', 'b 2026-11-18T06:00:00Z', 'c 2026-11-17T06:00:00Z', 'd 2026-11-16T06:00:00Z leased'],
    expect: ['a keep keep_days', 'b delete', 'c delete', 'd keep leased'],
  },
  {
    name: 'min_keep above the job\'s size keeps everything; pinned snapshots do not count',
    policy: { enabled: true, keep_days: 1, min_keep: 10 },
    snaps: ['a 2026-11-20T06:00:00Z pinned', 'b 2026-11-18T06:00:00Z', 'c 2026-11-17T06:00:00Z'],
    expect: ['a keep pinned', 'b keep min_keep', 'c keep min_keep'],
  },
  {
    name: 'min_keep already met by the rules adds nothing',
    policy: { enabled: true, keep_last: 3, min_keep: 2 },
    snaps: SIX_DAYS.filter((s) => !s.startsWith('s6')),
    expect: ['s1 keep keep_last', 's2 keep keep_last', 's3 keep keep_last', 's4 delete', 's5 delete'],
  },
  {
    name: 'min_keep, not last_snapshot, keeps the newest of a stopped job when set',
    policy: { enabled: true, keep_days: 2, min_keep: 1 },
    snaps: ['a 2026-10-01T00:00:00Z', 'b 2026-09-30T00:00:00Z'],
    expect: ['a keep min_keep', 'b delete'],
  },
  {
    name: 'last_snapshot keeps the newest even when an old lease already meets min_keep',
    policy: { enabled: true, keep_days: 2, min_keep: 1 },
    snaps: ['a 2026-10-01T00:00:00Z', 'b 2026-09-30T00:00:00Z leased', 'c 2026-09-29T00:00:00Z'],
    expect: ['a keep last_snapshot', 'b keep leased', 'c delete'],
  },
  {
    name: 'max_delete_per_tick deletes the oldest candidates and holds the newer back',
    policy: { enabled: true, keep_last: 1, max_delete_per_tick: 2 },
    snaps: SIX_DAYS,
    expect: ['s1 keep keep_last', 's2 skipped max_delete_per_tick', 's3 skipped max_delete_per_tick', 's4 skipped max_delete_per_tick', 's5 delete', 's6 delete'],
  },
  {
    name: 'max_delete_per_day counts what was enqueued earlier today',
    policy: { enabled: true, keep_last: 1, max_delete_per_day: 3 },
    already: 2,
    snaps: SIX_DAYS,
    expect: [
      's1 keep keep_last', 's2 skipped max_delete_per_day', 's3 skipped max_delete_per_day',
      's4 skipped max_delete_per_day', 's5 skipped max_delete_per_day', 's6 delete',
    ],
  },
  {
    name: 'a day already over its limit deletes nothing',
    policy: { enabled: true, keep_last: 1 },
    already: 250,
    snaps: SIX_DAYS,
    expect: [
      's1 keep keep_last', 's2 skipped max_delete_per_day', 's3 skipped max_delete_per_day',
      's4 skipped max_delete_per_day', 's5 skipped max_delete_per_day', 's6 skipped max_delete_per_day',
    ],
  },
  {
    name: 'both limits bind when they allow the same number',
    policy: { enabled: true, keep_last: 1, max_delete_per_tick: 2, max_delete_per_day: 4 },
    already: 2,
    snaps: SIX_DAYS,
    expect: [
      's1 keep keep_last',
      's2 skipped max_delete_per_tick,max_delete_per_day',
      's3 skipped max_delete_per_tick,max_delete_per_day',
      's4 skipped max_delete_per_tick,max_delete_per_day',
      's5 delete',
      's6 delete',
    ],
  },
  {
    name: 'candidates within the limit are all deleted',
    policy: { enabled: true, keep_last: 4, max_delete_per_tick: 2 },
    snaps: SIX_DAYS,
    expect: ['s1 keep keep_last', 's2 keep keep_last', 's3 keep keep_last', 's4 keep keep_last', 's5 delete', 's6 delete'],
  },
  {
    name: 'a disabled policy keeps everything',
    policy: { enabled: false, keep_last: 1 },
    already: 1_000,
    snaps: ['a 2026-11-20T01:00:00Z', 'b 2026-11-19T01:00:00Z pinned', 'c 2026-11-18T01:00:00Z leased', 'd 2026-01-01T00:00:00Z'],
    expect: ['a keep retention_disabled', 'b keep pinned,retention_disabled', 'c keep leased,retention_disabled', 'd keep retention_disabled'],
  },
  {
    name: 'equal end times are ordered by run_id, descending',
    policy: { enabled: true, keep_last: 1 },
    snaps: ['run-a 2026-11-20T01:00:00Z', 'run-c 2026-11-19T01:00:00Z', 'run-b 2026-11-20T01:00:00Z'],
    expect: ['run-b keep keep_last', 'run-a delete', 'run-c delete'],
  },
  {
    name: 'a job without snapshots',
    policy: { enabled: true, keep_last: 1, min_keep: 3 },
    snaps: [],
    expect: [],
  },
  {
    name: 'a job with only pinned snapshots',
    policy: { enabled: true, keep_days: 1 },
    snaps: ['a 2026-01-01T00:00:00Z pinned'],
    expect: ['a keep pinned'],
  },
];

t.test('selection table', async (t) => {
  for (const c of cases) {
    const sel = selectRetention({
      policy: policy(c.policy),
      snapshots: c.snaps.map(snap),
      now: new Date(c.now ?? NOW),
      timeZone: c.tz ?? 'UTC',
      already_enqueued_today: c.already ?? 0,
    });
    t.same(sel.decisions.map(line), c.expect, c.name);
    // the same answer whatever order the caller passes
    const reversed = selectRetention({
      policy: policy(c.policy),
      snapshots: c.snaps.map(snap).reverse(),
      now: new Date(c.now ?? NOW),
      timeZone: c.tz ?? 'UTC',
      already_enqueued_today: c.already ?? 0,
    });
    t.same(reversed.decisions.map(line), c.expect, `${c.name} (input reversed)`);
  }
});

function select(p: RetentionPolicyInput, snaps: string[], extra: { now?: string; tz?: string; already?: number } = {}): RetentionSelection {
  return selectRetention({
    policy: policy(p),
    snapshots: snaps.map(snap),
    now: new Date(extra.now ?? NOW),
    timeZone: extra.tz ?? 'UTC',
    already_enqueued_today: extra.already ?? 0,
  });
}

t.test('totals, bytes and limits', async (t) => {
  const sel = select({ enabled: true, keep_last: 1, max_delete_per_tick: 2 }, [
    'a 2026-11-20T01:00:00Z bytes=1000',
    'b 2026-11-19T01:00:00Z bytes=200 leased',
    'c 2026-11-18T01:00:00Z bytes=30 pinned',
    'd 2026-11-17T01:00:00Z bytes=4',
    'e 2026-11-16T01:00:00Z',
    'f 2026-11-15T01:00:00Z bytes=50000',
    'g 2026-11-14T01:00:00Z bytes=600000',
  ]);
  t.same(sel.decisions.map(line), ['a keep keep_last', 'b keep leased', 'c keep pinned', 'd skipped max_delete_per_tick', 'e skipped max_delete_per_tick', 'f delete', 'g delete']);
  t.same(sel.totals, {
    snapshots: 7,
    keep: 3,
    delete: 2,
    skipped: 2,
    pinned: 1,
    leased: 1,
    bytes_freed: 650_000,
    bytes_skipped: 4,
    unknown_size: 1,
  });
  t.same(sel.limits, {
    max_delete_per_tick: 2,
    max_delete_per_day: 200,
    already_enqueued_today: 0,
    day_remaining: 200,
    allowed: 2,
    binding: ['max_delete_per_tick'],
  });
  const d = sel.decisions.find((x) => x.run_id === 'f')!;
  t.same(d, {
    run_id: 'f',
    ended_at: new Date('2026-11-15T01:00:00Z'),
    pinned: false,
    leased: false,
    source_bytes: 100_000,
    transfer_bytes: 50_000,
    decision: 'delete',
    reasons: [],
  });
  t.equal(sel.policy_hash, policyHash({ enabled: true, keep_last: 1, max_delete_per_tick: 2 }));
  t.equal(sel.time_zone, 'UTC');
  t.equal(sel.keep_days_cutoff, null, 'no cutoff without keep_days');
});

t.test('the age reference and the keep_days cutoff are reported', async (t) => {
  const snaps = ['a 2026-10-01T00:00:00Z', 'b 2026-09-30T00:00:00Z'];
  const now = select({ enabled: true, keep_days: 3 }, snaps);
  t.same(now.age_reference_at, new Date(NOW));
  t.same(now.keep_days_cutoff, new Date('2026-11-17T12:00:00Z'));
  const newest = select({ enabled: true, keep_days: 3, age_reference: 'newest' }, snaps);
  t.same(newest.age_reference_at, new Date('2026-10-01T00:00:00Z'));
  t.same(newest.keep_days_cutoff, new Date('2026-09-28T00:00:00Z'));
  const empty = select({ enabled: true, keep_days: 3, age_reference: 'newest' }, []);
  t.equal(empty.age_reference_at, null);
  t.equal(empty.keep_days_cutoff, null);
});

t.test('the policy is validated again and defaults are filled in', async (t) => {
  const base = { snapshots: [snap('a 2026-11-20T01:00:00Z')], now: new Date(NOW), timeZone: 'UTC', already_enqueued_today: 0 };
  const hostile: unknown[] = [
    { enabled: true },
    { enabled: true, keep_last: -1 },
    { enabled: true, keep_last: 1, max_delete_per_tick: 0 },
    { enabled: true, keep_last: 1, surprise: true },
    { enabled: true, keep_last: '1' },
    null,
    'keep everything',
  ];
  for (const p of hostile) {
    t.throws(() => selectRetention({ ...base, policy: p as RetentionPolicy }), { code: 'invalid_retention_policy' }, JSON.stringify(p));
  }
  try {
    selectRetention({ ...base, policy: { enabled: true, keep_last: 1, max_delete_per_tick: 0 } as RetentionPolicy });
  } catch (e) {
    t.ok(e instanceof BastionError);
    t.equal((e as BastionError).details?.field, 'retention.max_delete_per_tick');
    t.match((e as BastionError).message, /^retention\.max_delete_per_tick: /);
  }
  const partial = selectRetention({ ...base, policy: { enabled: true, keep_last: 1 } as RetentionPolicy });
  t.equal(partial.policy.max_delete_per_day, 200);
});

t.test('malformed input is refused with the field named', async (t) => {
  const ok = { policy: policy({ enabled: true, keep_last: 1 }), now: new Date(NOW), timeZone: 'UTC', already_enqueued_today: 0 };
  const good = snap('a 2026-11-20T01:00:00Z');
  const bad: [unknown, RegExp][] = [
    [[good, { ...good }], /snapshots\[1\]\.run_id: duplicate/],
    [[{ ...good, run_id: '' }], /snapshots\[0\]\.run_id/],
    [[{ ...good, run_id: 7 }], /snapshots\[0\]\.run_id/],
    [[{ ...good, ended_at: new Date('nope') }], /snapshots\[0\]\.ended_at/],
    [[{ ...good, ended_at: '2026-11-20T01:00:00Z' }], /snapshots\[0\]\.ended_at/],
    [[{ ...good, ended_at: new Date(-70_000_000_000_000) }], /snapshots\[0\]\.ended_at/],
    [[{ ...good, pinned: 'no' }], /snapshots\[0\]\.pinned/],
    [[{ ...good, leased: undefined }], /snapshots\[0\]\.leased/],
    [[{ ...good, transfer_bytes: '123' }], /snapshots\[0\]\.transfer_bytes/],
    [[{ ...good, transfer_bytes: -1 }], /snapshots\[0\]\.transfer_bytes/],
    [[{ ...good, source_bytes: 2 ** 60 }], /snapshots\[0\]\.source_bytes/],
    [[null], /snapshots\[0\]/],
    ['not a list', /snapshots: expected an array/],
  ];
  for (const [snapshots, message] of bad) {
    t.throws(() => selectRetention({ ...ok, snapshots: snapshots as RetentionSnapshot[] }), { message }, String(message));
  }
  t.throws(() => selectRetention({ ...ok, snapshots: [good], now: new Date(NaN) }), { message: /^now: / });
  t.throws(() => selectRetention({ ...ok, snapshots: [good], already_enqueued_today: -1 }), { message: /already_enqueued_today/ });
  t.throws(() => selectRetention({ ...ok, snapshots: [good], already_enqueued_today: 1.5 }), { message: /already_enqueued_today/ });
  t.throws(() => selectRetention({ ...ok, snapshots: [good], timeZone: 'Nowhere/Atlantis' }), { code: 'invalid_retention_time_zone' });
});

t.test('diffSelections: what a proposed policy changes against the saved one', async (t) => {
  const snaps = [
    'a 2026-11-20T06:00:00Z bytes=10',
    'b 2026-11-19T06:00:00Z bytes=20',
    'c 2026-11-18T06:00:00Z bytes=30',
    'd 2026-11-17T06:00:00Z bytes=40 pinned',
    'e 2026-11-10T06:00:00Z bytes=50',
    'f 2026-11-03T06:00:00Z bytes=60',
  ];
  const saved = select({ enabled: true, keep_last: 3 }, snaps);
  const proposed = select({ enabled: true, keep_last: 1, keep_weekly: 3, max_delete_per_tick: 1 }, snaps);
  t.same(proposed.decisions.map(line), [
    'a keep keep_last,weekly:2026-W47',
    'b skipped max_delete_per_tick',
    'c delete',
    'd keep pinned',
    'e keep weekly:2026-W46',
    'f keep weekly:2026-W45',
  ]);
  const diff = diffSelections(saved, proposed);
  t.same(diff.newly_deleted.map((e) => `${e.run_id} ${e.saved.decision}->${e.proposed.decision}`), ['b keep->skipped_by_limit', 'c keep->delete']);
  t.same(diff.newly_kept.map((e) => `${e.run_id} ${e.proposed.reasons.join(',')}`), ['e weekly:2026-W46', 'f weekly:2026-W45']);
  t.same(diff.totals, { newly_deleted: 2, newly_kept: 2, newly_deleted_bytes: 50, newly_kept_bytes: 110 });
  t.same(diff.newly_deleted[0]!.saved.reasons, ['keep_last'], 'the saved reasons tell what the proposal drops');

  const same = diffSelections(saved, saved);
  t.same(same.totals, { newly_deleted: 0, newly_kept: 0, newly_deleted_bytes: 0, newly_kept_bytes: 0 });

  // a limit that holds a candidate back under one policy only is not a difference of intent
  const limited = select({ enabled: true, keep_last: 3, max_delete_per_tick: 1 }, snaps);
  t.same(diffSelections(saved, limited).totals.newly_deleted + diffSelections(saved, limited).totals.newly_kept, 0);

  // disabling retention keeps everything the saved policy would delete
  const off = select({ enabled: false }, snaps);
  t.same(diffSelections(saved, off).newly_kept.map((e) => e.run_id), ['e', 'f']);

  t.throws(() => diffSelections(saved, select({ enabled: true, keep_last: 1 }, snaps.slice(1))), RangeError);
  t.throws(() => diffSelections(saved, select({ enabled: true, keep_last: 1 }, [...snaps.slice(1), 'z 2026-01-01T00:00:00Z'])), RangeError);
});

t.test('retentionDayStart is 00:00 UTC of the current day', async (t) => {
  t.same(retentionDayStart(new Date('2026-11-20T23:59:59.999Z')), new Date('2026-11-20T00:00:00Z'));
  t.same(retentionDayStart(new Date('2026-11-20T00:00:00Z')), new Date('2026-11-20T00:00:00Z'));
  t.same(retentionDayStart(new Date('1969-12-31T12:00:00Z')), new Date('1969-12-31T00:00:00Z'));
  t.throws(() => retentionDayStart(new Date(NaN)), { message: /^now: / });
});

// --- properties ---------------------------------------------------------------------

/** mulberry32: tiny seeded PRNG (no package), good enough to generate cases. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let x = a;
    x = Math.imul(x ^ (x >>> 15), x | 1);
    x ^= x + Math.imul(x ^ (x >>> 7), x | 61);
    return ((x ^ (x >>> 14)) >>> 0) / 4_294_967_296;
  };
}

const ZONES = ['UTC', 'Europe/Berlin', 'America/New_York', 'Australia/Lord_Howe', 'Asia/Kathmandu', 'Pacific/Apia', 'America/Sao_Paulo', 'Asia/Tokyo'];
/** Interesting moments: DST changes, year ends with ISO week 53, Samoa's skipped day. */
const ANCHORS = [
  '2026-10-25T01:00:00Z', '2026-03-29T01:00:00Z', '2026-11-01T06:00:00Z', '2026-12-31T23:00:00Z',
  '2021-01-03T12:00:00Z', '2011-12-30T10:00:00Z', '2018-02-18T02:00:00Z', '2026-04-04T15:00:00Z',
].map((s) => Date.parse(s));

interface Generated {
  input: Parameters<typeof selectRetention>[0];
}

function generate(rand: () => number): Generated {
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)]!;
  const small = (max: number, pZero = 0.5): number => (rand() < pZero ? 0 : 1 + Math.floor(rand() * max));
  const n = Math.floor(rand() * 60);
  const steps = [60_000, 20 * 60_000, 3_600_000, 4 * 3_600_000, 86_400_000, 3 * 86_400_000, 10 * 86_400_000];
  const step = pick(steps);
  let t = pick(ANCHORS) + Math.floor((rand() - 0.3) * step * n);
  const snapshots: RetentionSnapshot[] = [];
  for (let i = 0; i < n; i++) {
    // occasionally two snapshots end in the same millisecond
    if (rand() > 0.1) t -= 1 + Math.floor(rand() * 2 * step);
    snapshots.push({
      run_id: `r${String(Math.floor(rand() * 1e6)).padStart(6, '0')}-${i}`,
      ended_at: new Date(t),
      pinned: rand() < 0.1,
      leased: rand() < 0.1,
      transfer_bytes: rand() < 0.2 ? null : Math.floor(rand() * 1e9),
      source_bytes: rand() < 0.5 ? undefined : Math.floor(rand() * 1e9),
    });
  }
  const p = {
    enabled: true,
    keep_last: small(6),
    keep_days: small(5),
    keep_hourly: small(8),
    keep_daily: small(6),
    keep_weekly: small(4),
    keep_monthly: small(3),
    keep_yearly: small(2, 0.7),
    min_keep: small(12, 0.6),
    age_reference: rand() < 0.5 ? ('now' as const) : ('newest' as const),
    max_delete_per_tick: 1 + Math.floor(rand() * 12),
    max_delete_per_day: 1 + Math.floor(rand() * 20),
  };
  if (!p.keep_last && !p.keep_days && !p.keep_hourly && !p.keep_daily && !p.keep_weekly && !p.keep_monthly && !p.keep_yearly) p.keep_days = 1;
  if (rand() < 0.05) p.enabled = false;
  const newest = snapshots.length ? Math.max(...snapshots.map((s) => s.ended_at.getTime())) : pick(ANCHORS);
  let now = newest + Math.floor(rand() * 8 * 86_400_000) - 86_400_000;
  // sometimes put a snapshot exactly on the keep_days boundary
  if (snapshots.length > 0 && p.keep_days > 0 && rand() < 0.3) now = pick(snapshots).ended_at.getTime() + p.keep_days * 86_400_000;
  return {
    input: {
      policy: retentionPolicySchema.parse(p),
      snapshots,
      now: new Date(now),
      timeZone: pick(ZONES),
      already_enqueued_today: Math.floor(rand() * 25),
    },
  };
}

// The oracle: each rule computed naively and independently, with its own
// Intl reading per snapshot (no offset cache) and string labels as keys.
const oracleFormats = new Map<string, Intl.DateTimeFormat>();
function oracleLabels(zone: string, ms: number): Record<'hourly' | 'daily' | 'weekly' | 'monthly' | 'yearly', string> {
  let f = oracleFormats.get(zone);
  if (f === undefined) {
    f = new Intl.DateTimeFormat('en-US', { timeZone: zone, year: 'numeric', month: '2-digit', day: '2-digit', hour: '2-digit', hourCycle: 'h23', timeZoneName: 'longOffset' });
    oracleFormats.set(zone, f);
  }
  const p = Object.fromEntries(f.formatToParts(ms).map((x) => [x.type, x.value]));
  const m = /^GMT(?:([+-])(\d{2}):(\d{2}))?$/.exec(p.timeZoneName!)!;
  const offset = m[1] === undefined ? '+00:00' : `${m[1]}${m[2]}:${m[3]}`;
  const day = `${p.year}-${p.month}-${p.day}`;
  const date = new Date(Date.UTC(Number(p.year), Number(p.month) - 1, Number(p.day)));
  const dow = date.getUTCDay() || 7;
  date.setUTCDate(date.getUTCDate() + 4 - dow);
  const week = Math.ceil(((date.getTime() - Date.UTC(date.getUTCFullYear(), 0, 1)) / 86_400_000 + 1) / 7);
  return {
    hourly: `hourly:${day}T${p.hour}:00${offset}`,
    daily: `daily:${day}`,
    weekly: `weekly:${date.getUTCFullYear()}-W${String(week).padStart(2, '0')}`,
    monthly: `monthly:${p.year}-${p.month}`,
    yearly: `yearly:${p.year}`,
  };
}

/** run_id → the reasons each rule gives, by the naive reading of the issue. */
function oracleRulePicks(input: Generated['input']): Map<string, Set<string>> {
  const p = input.policy;
  const universe = [...input.snapshots]
    .filter((s) => !s.pinned)
    .sort((a, b) => b.ended_at.getTime() - a.ended_at.getTime() || (a.run_id < b.run_id ? 1 : a.run_id > b.run_id ? -1 : 0));
  const picks = new Map<string, Set<string>>();
  const add = (id: string, r: string): void => {
    if (!picks.has(id)) picks.set(id, new Set());
    picks.get(id)!.add(r);
  };
  universe.slice(0, p.keep_last).forEach((s) => add(s.run_id, 'keep_last'));
  if (p.keep_days > 0 && universe.length > 0) {
    const ref = p.age_reference === 'now' ? input.now.getTime() : universe[0]!.ended_at.getTime();
    for (const s of universe) if (s.ended_at.getTime() >= ref - p.keep_days * 86_400_000) add(s.run_id, 'keep_days');
  }
  const rules = [['keep_hourly', 'hourly'], ['keep_daily', 'daily'], ['keep_weekly', 'weekly'], ['keep_monthly', 'monthly'], ['keep_yearly', 'yearly']] as const;
  for (const [rule, unit] of rules) {
    const periods = new Set<string>();
    for (const s of universe) {
      if (periods.size >= p[rule]) break;
      const label = oracleLabels(input.timeZone, s.ended_at.getTime())[unit];
      if (periods.has(label)) continue;
      periods.add(label);
      add(s.run_id, label);
    }
  }
  return picks;
}

const RULE_REASON = /^(keep_last|keep_days|hourly:|daily:|weekly:|monthly:|yearly:)/;

/** Every property for one generated case; returns the first violation or null. */
function check(input: Generated['input'], select: typeof selectRetention = selectRetention, rand: () => number = prng(1)): string | null {
  const sel = select(input);
  const ds = sel.decisions;
  const p = input.policy;
  // every snapshot exactly once, newest first
  if (ds.length !== input.snapshots.length) return 'not every snapshot has a decision';
  if (new Set(ds.map((d) => d.run_id)).size !== ds.length) return 'a snapshot has two decisions';
  for (let i = 1; i < ds.length; i++) {
    const a = ds[i - 1]!;
    const b = ds[i]!;
    if (a.ended_at.getTime() < b.ended_at.getTime() || (a.ended_at.getTime() === b.ended_at.getTime() && a.run_id < b.run_id)) return `order broken at ${i}`;
  }
  // same answer for a shuffled input
  const shuffled = [...input.snapshots];
  for (let i = shuffled.length - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1));
    [shuffled[i], shuffled[j]] = [shuffled[j]!, shuffled[i]!];
  }
  const again = select({ ...input, snapshots: shuffled });
  if (JSON.stringify(again) !== JSON.stringify(sel)) return 'input order changed the result';

  const universe = ds.filter((d) => !d.pinned);
  const candidates = universe.filter((d) => d.decision !== 'keep');
  for (const d of ds) {
    if (d.pinned && d.decision !== 'keep') return `pinned ${d.run_id} not kept`;
    if (d.leased && d.decision !== 'keep') return `leased ${d.run_id} not kept`;
    if (d.decision === 'keep' && d.reasons.length === 0) return `${d.run_id} kept without a reason`;
    if (d.decision === 'delete' && d.reasons.length !== 0) return `${d.run_id} deleted with reasons`;
  }
  if (!p.enabled) {
    if (ds.some((d) => d.decision !== 'keep' || !d.reasons.includes('retention_disabled'))) return 'disabled policy touched something';
    return null;
  }
  // the kept set is a superset of every rule's picks, and rule reasons are exactly the oracle's picks
  const picks = oracleRulePicks(input);
  for (const d of ds) {
    const want = [...(picks.get(d.run_id) ?? [])].sort();
    const got = d.reasons.filter((r) => RULE_REASON.test(r)).sort();
    if (want.length > 0 && d.decision !== 'keep') return `${d.run_id} picked by ${want.join(',')} but ${d.decision}`;
    if (JSON.stringify(want) !== JSON.stringify(got)) return `${d.run_id}: rule reasons ${got.join(',')} but oracle ${want.join(',')}`;
    if (d.pinned && d.reasons.some((r) => RULE_REASON.test(r) || r === 'min_keep' || r === 'last_snapshot')) return `pinned ${d.run_id} counted by a rule`;
    // floors appear only where nothing else keeps the snapshot
    if ((d.reasons.includes('min_keep') || d.reasons.includes('last_snapshot')) && d.reasons.length !== 1) return `${d.run_id}: floor reason beside others: ${d.reasons.join(',')}`;
  }
  // the newest unpinned snapshot is never deleted
  if (universe.length > 0 && universe[0]!.decision !== 'keep') return 'newest snapshot not kept';
  // min_keep floor holds, and tops up with the newest: every min_keep pick is newer than every candidate
  const keptUnpinned = universe.length - candidates.length;
  if (keptUnpinned < Math.min(p.min_keep, universe.length)) return `only ${keptUnpinned} kept, min_keep ${p.min_keep}`;
  const lastFloor = universe.map((d) => d.reasons.includes('min_keep')).lastIndexOf(true);
  const firstCandidate = universe.findIndex((d) => d.decision !== 'keep');
  if (lastFloor >= 0 && firstCandidate >= 0 && firstCandidate < lastFloor) return 'min_keep skipped a newer snapshot';
  if (keptUnpinned > p.min_keep && universe.some((d) => d.reasons.includes('min_keep'))) {
    const withoutFloor = universe.filter((d) => d.decision === 'keep' && !d.reasons.includes('min_keep')).length;
    if (withoutFloor >= p.min_keep) return 'min_keep kept more than it needed';
  }
  // limits are never exceeded, are used fully, and cut the newer candidates
  const allowed = Math.min(p.max_delete_per_tick, Math.max(0, p.max_delete_per_day - input.already_enqueued_today));
  const deleted = ds.filter((d) => d.decision === 'delete');
  const skipped = ds.filter((d) => d.decision === 'skipped_by_limit');
  if (deleted.length > allowed) return `${deleted.length} deletes > allowed ${allowed}`;
  if (deleted.length !== Math.min(allowed, candidates.length)) return `${deleted.length} deletes, expected ${Math.min(allowed, candidates.length)}`;
  if (deleted.length + skipped.length !== candidates.length) return 'candidates lost';
  const firstDelete = candidates.findIndex((d) => d.decision === 'delete');
  if (firstDelete >= 0 && candidates.slice(firstDelete).some((d) => d.decision !== 'delete')) return 'a newer candidate deleted before an older one';
  if (skipped.some((d) => d.reasons.length === 0 || !d.reasons.every((r) => r === 'max_delete_per_tick' || r === 'max_delete_per_day'))) return 'skipped without its limit';
  // totals add up
  const tt = sel.totals;
  if (tt.keep + tt.delete + tt.skipped !== ds.length) return 'totals do not add up';
  if (tt.bytes_freed !== deleted.reduce((s, d) => s + (d.transfer_bytes ?? 0), 0)) return 'bytes_freed wrong';
  return null;
}

t.test('properties hold for many random cases (seeded; failures print the seed)', async (t) => {
  const base = Number(process.env.RETENTION_SEED ?? Math.floor(Math.random() * 1e9));
  const cases = Number(process.env.RETENTION_CASES ?? 1500);
  t.comment(`base seed ${base}; RETENTION_SEED=${base} reproduces this run`);
  let failures = 0;
  for (let i = 0; i < cases && failures < 5; i++) {
    const seed = base + i;
    const { input } = generate(prng(seed));
    let problem: string | null;
    try {
      problem = check(input, selectRetention, prng(seed ^ 0x5bd1e995));
    } catch (e) {
      problem = `threw ${(e as Error).stack}`;
    }
    if (problem !== null) {
      failures++;
      t.fail(`seed ${seed} (RETENTION_SEED=${seed} RETENTION_CASES=1): ${problem}`);
    }
  }
  if (failures === 0) t.pass(`${cases} random cases`);
});

t.test('the property checker fails on broken selections', async (t) => {
  // A checker that cannot fail proves nothing: feed it selections corrupted
  // the ways a bug would corrupt them, and require a complaint for each.
  const corruptions: [string, (sel: RetentionSelection) => void][] = [
    ['newest deleted', (sel) => {
      const d = sel.decisions.find((x) => !x.pinned);
      if (d) Object.assign(d, { decision: 'delete', reasons: [] });
    }],
    ['limit ignored', (sel) => {
      for (const d of sel.decisions) if (d.decision === 'skipped_by_limit') Object.assign(d, { decision: 'delete', reasons: [] });
    }],
    ['bucket reason lost', (sel) => {
      for (const d of sel.decisions) d.reasons = d.reasons.filter((r) => !r.startsWith('daily:'));
    }],
    ['order reversed', (sel) => {
      sel.decisions.reverse();
    }],
    ['pinned deleted', (sel) => {
      const d = sel.decisions.find((x) => x.pinned);
      if (d) Object.assign(d, { decision: 'delete', reasons: [] });
    }],
  ];
  const p = retentionPolicySchema.parse({ enabled: true, keep_last: 1, keep_daily: 2, max_delete_per_tick: 1 });
  const snaps = [
    'a 2026-11-20T01:00:00Z', 'b 2026-11-19T05:00:00Z', 'c 2026-11-19T01:00:00Z', 'd 2026-11-18T01:00:00Z pinned', 'e 2026-11-17T01:00:00Z', 'f 2026-11-16T01:00:00Z',
  ].map(snap);
  const input = { policy: p, snapshots: snaps, now: new Date(NOW), timeZone: 'UTC', already_enqueued_today: 0 };
  t.equal(check(input), null, 'the real selection passes');
  for (const [name, corrupt] of corruptions) {
    const broken: typeof selectRetention = (i) => {
      const sel = selectRetention(i);
      corrupt(sel);
      return sel;
    };
    t.type(check(input, broken), 'string', `caught: ${name}`);
  }
});
