import fs from 'node:fs/promises';
import path from 'node:path';
import { randomUUID } from 'node:crypto';
import t from 'tap';
import { ResultsCache } from './results-cache.ts';

t.test('results survive a reopen, are bounded, and damaged entries count as absent', async (t) => {
  const dir = t.testdir();
  const cache = await ResultsCache.open(dir, 3);
  const ids = Array.from({ length: 5 }, () => randomUUID());
  t.equal(await cache.get(ids[0]!), undefined);
  for (const [i, id] of ids.entries()) {
    await cache.put({ message_id: id, type: 'task_result', result: { outcome: 'deleted', message: `m${i}` } });
    await new Promise((r) => setTimeout(r, 5));
  }
  t.equal(cache.size, 3, 'only the newest 3 are kept');
  t.equal(await cache.get(ids[0]!), undefined, 'the oldest went');
  const reopened = await ResultsCache.open(dir, 3);
  t.match(await reopened.get(ids[4]!), { type: 'task_result', result: { outcome: 'deleted', message: 'm4' } }, 'survives a restart');
  t.equal((await fs.stat(path.join(dir, 'results', `${ids[4]}.json`))).mode & 0o777, 0o600);
  await reopened.put({ message_id: ids[2]!, type: 'run_result', result: { status: 'failed', error_code: 'x', error: 'y' } });
  t.match(await reopened.get(ids[2]!), { type: 'run_result' });
  await fs.writeFile(path.join(dir, 'results', `${ids[3]}.json`), '{"v":1');
  t.equal(await reopened.get(ids[3]!), undefined, 'a damaged entry is treated as absent (the work is idempotent)');
  await fs.writeFile(path.join(dir, 'results', `${ids[4]}.json.tmp-99`), 'partial');
  await ResultsCache.open(dir, 3);
  t.notOk((await fs.readdir(path.join(dir, 'results'))).some((n) => n.includes('.tmp-')), 'an interrupted write is cleaned up');
  await t.rejects(reopened.put({ message_id: '../../x', type: 'task_result', result: { outcome: 'deleted', message: '' } }));
});
