import t from 'tap';
import { backoffCeiling, backoffDelay, ReconnectBackoff } from './reconnect-backoff.ts';

t.test('ceilings double from 1 s to the 30 s cap', async (t) => {
  t.same([0, 1, 2, 3, 4, 5, 6, 50, -3].map((a) => backoffCeiling(a)), [1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000, 1000]);
});

t.test('delays stay within [ceiling/2, ceiling] and are jittered', async (t) => {
  for (let a = 0; a < 10; a++) {
    const c = backoffCeiling(a);
    t.equal(backoffDelay(a, () => 0), c / 2, `attempt ${a}: lowest`);
    t.equal(backoffDelay(a, () => 1), c, `attempt ${a}: highest`);
    t.equal(backoffDelay(a, () => 7), c, 'a random source out of range is clamped');
  }
  const seen = new Set(Array.from({ length: 50 }, () => backoffDelay(5)));
  t.ok(seen.size > 10, 'Math.random spreads the delays');
});

t.test('the counter grows with failures and resets only after a healthy session', async (t) => {
  const b = new ReconnectBackoff({}, () => 1);
  t.same([b.next(), b.next(), b.next()], [1000, 2000, 4000]);
  b.sessionEnded(null);
  t.equal(b.next(), 8000, 'a session that never became ready does not reset');
  b.sessionEnded(3000);
  t.equal(b.next(), 16000, 'a short session does not reset');
  b.sessionEnded(10_000);
  t.equal(b.next(), 1000, 'a healthy session resets to 1 s');
  t.throws(() => new ReconnectBackoff({ initialMs: 0 }));
  t.throws(() => new ReconnectBackoff({ initialMs: 10, maxMs: 5 }));
});
