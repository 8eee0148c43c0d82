import t from 'tap';
import { checkTimeZone, dueSlot, isKnownTimeZone, latestSlot, nextSlots, parseSchedule } from './cron-schedule.ts';

const iso = (d: Date | null) => d?.toISOString() ?? null;

t.test('time zones: IANA names known to Intl; anything else refused with invalid_timezone', async (t) => {
  for (const tz of ['UTC', 'Europe/Berlin', 'America/Argentina/Buenos_Aires', 'Asia/Shanghai', 'Etc/GMT+5']) t.ok(isKnownTimeZone(tz), tz);
  for (const tz of ['', 'Mars/Olympus', 'Europe/Berlin\n', '../../etc/passwd', 'x'.repeat(65), 'Europe/Berlin; drop table']) {
    t.notOk(isKnownTimeZone(tz), JSON.stringify(tz));
    t.throws(() => checkTimeZone(tz), { code: 'invalid_timezone', details: { field: 'schedule_timezone' } });
  }
});

t.test('schedules: 5 fields or a nickname; bad ones are refused with a reason', async (t) => {
  for (const s of ['* * * * *', '0 3 * * *', '*/15 8-18 * * MON-FRI', '0 0 L * *', '@daily', '@HOURLY', '  0   3 * * *  ']) {
    t.doesNotThrow(() => parseSchedule(s, 'Europe/Berlin'), s);
  }
  const cases: Array<[string, string]> = [
    ['', 'empty'],
    ['   ', 'empty'],
    ['* * * * * *', 'invalid_cron'],
    ['* * *', 'invalid_cron'],
    ['61 * * * *', 'invalid_cron'],
    ['MON * * * *', 'invalid_cron'],
    ['@fortnightly', 'unknown_nickname'],
    ['0 0 31 2 *', 'never_fires'],
    ['0 3 * * *\n0 4 * * *', 'control_characters'],
    ['* '.repeat(120), 'too_long'],
  ];
  for (const [s, reason] of cases) {
    t.throws(() => parseSchedule(s, 'UTC'), { code: 'invalid_schedule', details: { field: 'schedule', reason } }, JSON.stringify(s).slice(0, 40));
  }
  t.throws(() => parseSchedule('0 3 * * *', 'Nowhere/Atlantis'), { code: 'invalid_timezone' });
});

t.test('the latest slot counts a tick at exactly the slot, and is computed in the job time zone', async (t) => {
  const every = parseSchedule('* * * * *', 'UTC');
  t.equal(iso(latestSlot(every, new Date('2026-05-01T12:01:00.000Z'))), '2026-05-01T12:01:00.000Z', 'tick exactly on the minute');
  t.equal(iso(latestSlot(every, new Date('2026-05-01T12:01:59.999Z'))), '2026-05-01T12:01:00.000Z');
  const daily = parseSchedule('0 3 * * *', 'Asia/Tokyo');
  t.equal(iso(latestSlot(daily, new Date('2026-05-01T12:00:00Z'))), '2026-04-30T18:00:00.000Z', '03:00 in Tokyo is 18:00 UTC the day before');
});

t.test('DST in Europe/Berlin: a fixed-time job runs once on both transition nights; an interval job follows the clock', async (t) => {
  const fixed = parseSchedule('30 2 * * *', 'Europe/Berlin');
  // 2026-03-29: 02:00 → 03:00, so 02:30 does not exist; the job runs at 03:00 CEST (01:00 UTC), once.
  t.equal(iso(latestSlot(fixed, new Date('2026-03-29T12:00:00Z'))), '2026-03-29T01:00:00.000Z');
  t.same(nextSlots(fixed, new Date('2026-03-28T12:00:00Z'), 2).map(iso), ['2026-03-29T01:00:00.000Z', '2026-03-30T00:30:00.000Z']);
  // 2026-10-25: 03:00 → 02:00, so 02:30 happens twice; the job runs once (the first, CEST).
  t.same(nextSlots(fixed, new Date('2026-10-24T12:00:00Z'), 2).map(iso), ['2026-10-25T00:30:00.000Z', '2026-10-26T01:30:00.000Z']);
  const interval = parseSchedule('*/30 * * * *', 'Europe/Berlin');
  t.same(
    nextSlots(interval, new Date('2026-10-24T23:45:00Z'), 5).map(iso),
    ['2026-10-25T00:00:00.000Z', '2026-10-25T00:30:00.000Z', '2026-10-25T01:00:00.000Z', '2026-10-25T01:30:00.000Z', '2026-10-25T02:00:00.000Z'],
    'every half hour of real time, the repeated hour included',
  );
});

t.test('catch-up: only the latest missed slot after the cursor is due, and only once', async (t) => {
  const hourly = parseSchedule('0 * * * *', 'UTC');
  const cursor = new Date('2026-05-01T08:10:00Z');
  // Down from 08:10 to 12:20: four slots missed, one run.
  const now = new Date('2026-05-01T12:20:00Z');
  t.equal(iso(dueSlot(hourly, now, cursor)), '2026-05-01T12:00:00.000Z');
  t.equal(dueSlot(hourly, now, new Date('2026-05-01T12:00:00Z')), null, 'the slot the cursor is at is not due again');
  t.equal(dueSlot(hourly, new Date('2026-05-01T08:30:00Z'), cursor), null, 'a slot before the cursor (job created at 08:10) is not due');
});
