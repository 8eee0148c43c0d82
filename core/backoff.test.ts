import t from 'tap';
import { BACKOFF_TABLE, backoffSeconds, jitterSeconds, MAX_RETRY_AFTER_SECONDS, retryDelaySeconds } from './backoff.ts';
import { TASK_ERROR_KINDS } from './task-status.ts';

t.test('reference vectors: run id "r1", network, attempts 1..10', async (t) => {
  const got = Array.from({ length: 10 }, (_, i) => backoffSeconds('network', i + 1, 'r1'));
  t.same(got, [80, 147, 244, 491, 978, 1945, 3842, 7689, 15376, 21623]);
});

t.test('attempts below 1 behave as 1; the cap holds and jitter stays under its maximum', async (t) => {
  for (const kind of TASK_ERROR_KINDS) {
    t.equal(backoffSeconds(kind, 0, 'x'), backoffSeconds(kind, 1, 'x'), `${kind}: 0 = 1`);
    t.equal(backoffSeconds(kind, -5, 'x'), backoffSeconds(kind, 1, 'x'), `${kind}: negative = 1`);
    const row = BACKOFF_TABLE[kind];
    const big = backoffSeconds(kind, 100, '0f2c6a7e-3d4b-4c1a-9e8f-112233445566');
    t.ok(big >= row.capSeconds && big < row.capSeconds + row.maxJitterSeconds, `${kind}: attempts 100 → ${big} in [cap, cap+jitter)`);
  }
  const n = backoffSeconds('network', 100, 'anything');
  t.ok(n >= 21_600 && n < 21_630);
});

t.test('DESIGN §5 table, offline included', async (t) => {
  t.same(BACKOFF_TABLE.offline, { baseSeconds: 30, capSeconds: 600, maxJitterSeconds: 10 });
  t.same(BACKOFF_TABLE.auth, { baseSeconds: 21_600, capSeconds: 86_400, maxJitterSeconds: 600 });
  t.same(BACKOFF_TABLE.io, BACKOFF_TABLE.unknown);
  t.same(BACKOFF_TABLE.http, BACKOFF_TABLE.network);
  const first = backoffSeconds('offline', 1, 'k');
  t.ok(first >= 30 && first < 40);
  t.ok(backoffSeconds('offline', 6, 'k') >= 600 && backoffSeconds('offline', 6, 'k') < 610, 'offline reaches its 10 min cap at attempt 6');
});

t.test('jitter is deterministic, in range, and depends on key and attempt', async (t) => {
  const seen = new Set<number>();
  for (let i = 0; i < 500; i++) {
    const key = `00000000-0000-4000-8000-${String(i).padStart(12, '0')}`;
    const j = jitterSeconds(key, 3, 60);
    t.equal(jitterSeconds(key, 3, 60), j);
    if (j < 0 || j >= 60) t.fail(`jitter ${j} out of range`);
    seen.add(j);
  }
  t.ok(seen.size > 40, `jitter spreads keys (${seen.size} distinct values of 60)`);
  t.equal(jitterSeconds('k', 1, 0), 0, 'no jitter when max is 0');
  t.not(jitterSeconds('k', 1, 600), jitterSeconds('k', 2, 600), 'attempt changes the jitter');
  // u64 wrapping: a long key overflows 2^64 many times and must still be stable
  t.equal(jitterSeconds('é'.repeat(200), 7, 600), jitterSeconds('é'.repeat(200), 7, 600));
});

t.test('Retry-After wins when longer than the backoff, capped at 24 h', async (t) => {
  const b = backoffSeconds('network', 1, 'r1');
  t.equal(retryDelaySeconds('network', 1, 'r1', 5), b, 'shorter Retry-After: backoff');
  t.equal(retryDelaySeconds('network', 1, 'r1', 3600), 3600);
  t.equal(retryDelaySeconds('network', 1, 'r1', 10 ** 9), MAX_RETRY_AFTER_SECONDS);
  t.equal(retryDelaySeconds('network', 1, 'r1', null), b);
  t.equal(retryDelaySeconds('network', 1, 'r1', -7), b);
});
