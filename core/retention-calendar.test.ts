import t from 'tap';
import { BastionError } from './errors.ts';
import {
  formatOffset,
  isoWeek,
  MAX_CALENDAR_MS,
  MIN_CALENDAR_MS,
  MIN_TRANSITION_GAP_HOURS,
  SLOT_MS,
  periodKey,
  periodLabel,
  ZoneClock,
  zoneClock,
  type CalendarUnit,
} from './retention-calendar.ts';

const UNITS: CalendarUnit[] = ['hour', 'day', 'week', 'month', 'year'];

/** All five labels of an instant, space-separated, as the table below spells them. */
function labels(timeZone: string, iso: string): string {
  const ms = Date.parse(iso);
  const off = zoneClock(timeZone).offsetAt(ms);
  return UNITS.map((u) => periodLabel(u, ms, off)).join(' ');
}

t.test('labels of hand-checked instants (DST, year ends, ISO week 53, odd offsets)', async (t) => {
  const table: [zone: string, instant: string, expected: string][] = [
    ['UTC', '2026-11-19T14:05:00Z', '2026-11-19T14:00+00:00 2026-11-19 2026-W47 2026-11 2026'],
    // Tokyo is 9 h ahead: 15:30Z is already the next local day
    ['Asia/Tokyo', '2026-11-19T15:30:00Z', '2026-11-20T00:00+09:00 2026-11-20 2026-W47 2026-11 2026'],
    ['Asia/Kolkata', '2026-11-19T08:45:00Z', '2026-11-19T14:00+05:30 2026-11-19 2026-W47 2026-11 2026'],
    // Berlin, clocks back 2026-10-25 03:00 CEST → 02:00 CET (01:00Z): the 02:00 hour happens twice
    ['Europe/Berlin', '2026-10-25T00:30:00Z', '2026-10-25T02:00+02:00 2026-10-25 2026-W43 2026-10 2026'],
    ['Europe/Berlin', '2026-10-25T00:59:59.999Z', '2026-10-25T02:00+02:00 2026-10-25 2026-W43 2026-10 2026'],
    ['Europe/Berlin', '2026-10-25T01:00:00Z', '2026-10-25T02:00+01:00 2026-10-25 2026-W43 2026-10 2026'],
    ['Europe/Berlin', '2026-10-25T01:30:00Z', '2026-10-25T02:00+01:00 2026-10-25 2026-W43 2026-10 2026'],
    // Berlin, clocks forward 2026-03-29 02:00 CET → 03:00 CEST (01:00Z): 02:00 never happens
    ['Europe/Berlin', '2026-03-29T00:59:59Z', '2026-03-29T01:00+01:00 2026-03-29 2026-W13 2026-03 2026'],
    ['Europe/Berlin', '2026-03-29T01:00:00Z', '2026-03-29T03:00+02:00 2026-03-29 2026-W13 2026-03 2026'],
    // New York, clocks back 2026-11-01 02:00 EDT → 01:00 EST (06:00Z)
    ['America/New_York', '2026-11-01T05:30:00Z', '2026-11-01T01:00-04:00 2026-11-01 2026-W44 2026-11 2026'],
    ['America/New_York', '2026-11-01T06:30:00Z', '2026-11-01T01:00-05:00 2026-11-01 2026-W44 2026-11 2026'],
    // Lord Howe moves by half an hour: 2026-04-05 02:00 +11:00 → 01:30 +10:30 (15:00Z)
    ['Australia/Lord_Howe', '2026-04-04T14:45:00Z', '2026-04-05T01:00+11:00 2026-04-05 2026-W14 2026-04 2026'],
    ['Australia/Lord_Howe', '2026-04-04T15:15:00Z', '2026-04-05T01:00+10:30 2026-04-05 2026-W14 2026-04 2026'],
    // Kathmandu moved from +05:30 to +05:45 at 1986-01-01 00:00 local (18:30Z): a mid-UTC-hour transition
    ['Asia/Kathmandu', '1985-12-31T18:29:59Z', '1985-12-31T23:00+05:30 1985-12-31 1986-W01 1985-12 1985'],
    ['Asia/Kathmandu', '1985-12-31T18:30:00Z', '1986-01-01T00:00+05:45 1986-01-01 1986-W01 1986-01 1986'],
    // Samoa skipped 2011-12-30 entirely (−10:00 → +14:00 at 10:00Z)
    ['Pacific/Apia', '2011-12-30T09:59:59Z', '2011-12-29T23:00-10:00 2011-12-29 2011-W52 2011-12 2011'],
    ['Pacific/Apia', '2011-12-30T10:00:00Z', '2011-12-31T00:00+14:00 2011-12-31 2011-W52 2011-12 2011'],
    // Year ends in the zone, not in UTC
    ['Europe/Berlin', '2026-12-31T22:59:59Z', '2026-12-31T23:00+01:00 2026-12-31 2026-W53 2026-12 2026'],
    ['Europe/Berlin', '2026-12-31T23:00:00Z', '2027-01-01T00:00+01:00 2027-01-01 2026-W53 2027-01 2027'],
    ['Pacific/Auckland', '2026-12-31T11:00:00Z', '2027-01-01T00:00+13:00 2027-01-01 2026-W53 2027-01 2027'],
    ['America/Los_Angeles', '2027-01-01T07:59:00Z', '2026-12-31T23:00-08:00 2026-12-31 2026-W53 2026-12 2026'],
    // ISO weeks around year ends (UTC): 2026 and 2020 have 53 weeks, 2024-12-30 is in 2025-W01
    ['UTC', '2027-01-03T23:59:59Z', '2027-01-03T23:00+00:00 2027-01-03 2026-W53 2027-01 2027'],
    ['UTC', '2027-01-04T00:00:00Z', '2027-01-04T00:00+00:00 2027-01-04 2027-W01 2027-01 2027'],
    ['UTC', '2021-01-03T12:00:00Z', '2021-01-03T12:00+00:00 2021-01-03 2020-W53 2021-01 2021'],
    ['UTC', '2024-12-30T12:00:00Z', '2024-12-30T12:00+00:00 2024-12-30 2025-W01 2024-12 2024'],
    ['UTC', '2026-01-01T00:00:00Z', '2026-01-01T00:00+00:00 2026-01-01 2026-W01 2026-01 2026'],
    // Leap day
    ['UTC', '2028-02-29T12:00:00Z', '2028-02-29T12:00+00:00 2028-02-29 2028-W09 2028-02 2028'],
  ];
  for (const [zone, instant, expected] of table) t.equal(labels(zone, instant), expected, `${zone} ${instant}`);
});

t.test('isoWeek and formatOffset', async (t) => {
  t.same(isoWeek(2026, 12, 31), { year: 2026, week: 53 });
  t.same(isoWeek(2027, 1, 1), { year: 2026, week: 53 });
  t.same(isoWeek(2015, 12, 31), { year: 2015, week: 53 });
  t.same(isoWeek(2016, 1, 3), { year: 2015, week: 53 });
  t.same(isoWeek(2016, 1, 4), { year: 2016, week: 1 });
  t.same(isoWeek(2008, 12, 29), { year: 2009, week: 1 });
  t.same(isoWeek(2010, 1, 3), { year: 2009, week: 53 });
  t.same(isoWeek(2023, 1, 1), { year: 2022, week: 52 });
  t.equal(formatOffset(0), '+00:00');
  t.equal(formatOffset(-3.5 * 3_600_000), '-03:30');
  t.equal(formatOffset(345 * 60_000), '+05:45');
  t.equal(formatOffset(14 * 3_600_000), '+14:00');
  t.equal(formatOffset((19 * 60 + 32) * 1000), '+00:19:32');
});

t.test('unknown time zones are refused with a stable code and without echoing the input', async (t) => {
  for (const bad of ['Mars/Olympus_Mons', '', '   ', 'Europe/Berlin\n', 'Europe/../../etc/passwd', 'x'.repeat(10_000), 'GMT+25']) {
    const err = (() => {
      try {
        zoneClock(bad);
      } catch (e) {
        return e;
      }
      return null;
    })();
    t.ok(err instanceof BastionError, `refused: ${JSON.stringify(bad.slice(0, 30))}`);
    t.equal((err as BastionError).code, 'invalid_retention_time_zone');
    t.equal((err as BastionError).details?.field, 'timezone');
    if (bad.trim() !== '') t.notOk((err as BastionError).message.includes(bad), 'input not echoed');
  }
  t.throws(() => zoneClock(undefined as unknown as string), { code: 'invalid_retention_time_zone' });
  t.throws(() => zoneClock(42 as unknown as string), { code: 'invalid_retention_time_zone' });
});

t.test('the offset slot is shorter than the closest transitions measured', async (t) => {
  // If SLOT_MS grows, re-measure MIN_TRANSITION_GAP_HOURS (file comment of retention-calendar.ts).
  t.ok(SLOT_MS < MIN_TRANSITION_GAP_HOURS * 3_600_000);
});

t.test('zone clocks are shared and report the canonical name', async (t) => {
  t.equal(zoneClock('Europe/Berlin'), zoneClock('Europe/Berlin'));
  t.equal(zoneClock('europe/berlin').timeZone, 'Europe/Berlin');
  t.equal(zoneClock('UTC').offsetAt(Date.UTC(2026, 0, 1)), 0);
});

t.test('instants outside years 1…9999 are refused', async (t) => {
  const c = zoneClock('UTC');
  t.throws(() => c.offsetAt(MIN_CALENDAR_MS - 1), RangeError);
  t.throws(() => c.offsetAt(MAX_CALENDAR_MS + 1), RangeError);
  t.throws(() => c.offsetAt(NaN), RangeError);
  t.equal(c.offsetAt(MIN_CALENDAR_MS), 0);
  t.equal(zoneClock('Asia/Tokyo').offsetAt(MAX_CALENDAR_MS), 9 * 3_600_000);
});

// --- agreement with an independent reading of Intl ------------------------------

/** Independent oracle: one formatter per zone with the offset printed by Intl itself, no caching of offsets. */
const oracleFormats = new Map<string, Intl.DateTimeFormat>();
function oracle(zone: string, ms: number): { hour: string; day: string; week: string; month: string; year: string } {
  let f = oracleFormats.get(zone);
  if (f === undefined) {
    f = new Intl.DateTimeFormat('en-US', {
      timeZone: zone,
      year: 'numeric',
      month: '2-digit',
      day: '2-digit',
      hour: '2-digit',
      hourCycle: 'h23',
      timeZoneName: 'longOffset',
    });
    oracleFormats.set(zone, f);
  }
  const p = Object.fromEntries(f.formatToParts(ms).map((x) => [x.type, x.value]));
  const tzn = /^GMT(?:([+-])(\d{1,2}):(\d{2})(?::(\d{2}))?)?$/.exec(p.timeZoneName ?? '');
  if (tzn === null) throw new Error(`oracle cannot read offset ${p.timeZoneName}`);
  const offset = tzn[1] === undefined ? '+00:00' : `${tzn[1]}${tzn[2]!.padStart(2, '0')}:${tzn[3]}${tzn[4] ? `:${tzn[4]}` : ''}`;
  const y = p.year!.padStart(4, '0');
  const day = `${y}-${p.month}-${p.day}`;
  return { hour: `${day}T${p.hour}:00${offset}`, day, week: oracleIsoWeek(Number(p.year), Number(p.month), Number(p.day)), month: `${y}-${p.month}`, year: y };
}

/** The textbook Date-based ISO week (shift to Thursday, count weeks from 1 January). */
function oracleIsoWeek(y: number, m: number, d: number): string {
  const date = new Date(Date.UTC(2000, m - 1, d));
  date.setUTCFullYear(y);
  const dow = date.getUTCDay() || 7;
  date.setUTCDate(date.getUTCDate() + 4 - dow);
  const jan1 = new Date(Date.UTC(2000, 0, 1));
  jan1.setUTCFullYear(date.getUTCFullYear());
  const week = Math.ceil(((date.getTime() - jan1.getTime()) / 86_400_000 + 1) / 7);
  return `${String(date.getUTCFullYear()).padStart(4, '0')}-W${String(week).padStart(2, '0')}`;
}

/** mulberry32: a tiny seeded PRNG, enough to spread instants. */
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

const ZONES = [
  'UTC', 'Europe/Berlin', 'Europe/London', 'America/New_York', 'America/Sao_Paulo', 'America/Havana',
  'America/St_Johns', 'Australia/Lord_Howe', 'Australia/Adelaide', 'Asia/Kathmandu', 'Asia/Kolkata',
  'Asia/Tehran', 'Pacific/Apia', 'Pacific/Chatham', 'Pacific/Kiritimati', 'Africa/Casablanca',
  'Antarctica/Troll', 'America/Santiago', 'Europe/Dublin', 'Asia/Gaza',
];

t.test('offsets, labels and keys agree with an independent Intl reading, including at every transition', async (t) => {
  const base = Number(process.env.RETENTION_SEED ?? Date.now() % 1_000_000_000);
  t.comment(`seed ${base} (RETENTION_SEED=${base} reproduces)`);
  const rand = prng(base);
  let checked = 0;
  let transitions = 0;
  for (const zone of ZONES) {
    const clock = zoneClock(zone);
    // Every transition in 2005–2030 found by a 6-hourly walk, probed 1 ms, 1 s
    // and 30 min either side, plus random instants 1970–2060.
    const points: number[] = [];
    const step = 6 * 3_600_000;
    let prev = oracle(zone, Date.UTC(2005, 0, 1)).hour.slice(-6);
    for (let h = Date.UTC(2005, 0, 1); h < Date.UTC(2030, 0, 1); h += step) {
      const off = oracle(zone, h).hour.slice(-6);
      if (off !== prev) {
        transitions++;
        // bisect to the second with the oracle
        let lo = h - step;
        let hi = h;
        while (hi - lo > 1000) {
          const mid = lo + Math.floor((hi - lo) / 2000) * 1000;
          if (oracle(zone, mid).hour.slice(-6) === prev) lo = mid;
          else hi = mid;
        }
        for (const d of [-1_800_000, -1000, -1, 0, 1, 999, 1000, 1_800_000]) points.push(hi + d);
        prev = off;
      }
    }
    for (let i = 0; i < 300; i++) points.push(Math.floor(Date.UTC(1970, 0, 1) + rand() * (Date.UTC(2060, 0, 1) - Date.UTC(1970, 0, 1))));
    const byLabel = new Map<string, number>();
    for (const ms of points) {
      const off = clock.offsetAt(ms);
      const want = oracle(zone, ms);
      for (const u of UNITS) {
        const got = periodLabel(u, ms, off);
        if (got !== want[u]) {
          t.fail(`${zone} ${new Date(ms).toISOString()} ${u}: got ${got}, oracle ${want[u]} (seed ${base})`);
          return;
        }
        // equal label ⇔ equal key
        const key = periodKey(u, ms, off);
        const seen = byLabel.get(`${u} ${got}`);
        if (seen !== undefined && seen !== key) {
          t.fail(`${zone} ${u} label ${got} has two keys (seed ${base})`);
          return;
        }
        byLabel.set(`${u} ${got}`, key);
      }
      checked++;
    }
    const keys = new Map<string, string>();
    for (const [label, key] of byLabel) {
      const unitKey = `${label.split(' ')[0]} ${key}`;
      if (keys.has(unitKey) && keys.get(unitKey) !== label) {
        t.fail(`${zone}: key ${unitKey} shared by ${label} and ${keys.get(unitKey)} (seed ${base})`);
        return;
      }
      keys.set(unitKey, label);
    }
  }
  t.ok(transitions > 250, `walked ${transitions} transitions`);
  t.pass(`${checked} instants agree`);
});

t.test('a slot holding several transitions is still read correctly', async (t) => {
  // Samoa, 2011: −11:00 → −10:00 (DST, 24 Sep) → +14:00 (30 Dec, day skipped).
  // A 400-day slot holds both, so the clock must notice the third offset
  // while bisecting and fall back to reading each instant.
  const wide = new ZoneClock('Pacific/Apia', { slotMs: 400 * 86_400_000 });
  // A 90-day slot holds one transition at a time: bisection finds it.
  const narrow = new ZoneClock('Pacific/Apia', { slotMs: 90 * 86_400_000 });
  const hours = (iso: string, c: ZoneClock): number => c.offsetAt(Date.parse(iso)) / 3_600_000;
  for (const c of [wide, narrow]) {
    t.equal(hours('2011-09-24T13:59:59Z', c), -11);
    t.equal(hours('2011-09-24T14:00:00Z', c), -10);
    t.equal(hours('2011-12-30T09:59:59.999Z', c), -10);
    t.equal(hours('2011-12-30T10:00:00Z', c), 14);
    t.equal(hours('2012-01-15T00:00:00Z', c), 14);
  }
  t.throws(() => new ZoneClock('UTC', { slotMs: 1500 }), RangeError);
  t.throws(() => new ZoneClock('UTC', { slotMs: 0 }), RangeError);
});
