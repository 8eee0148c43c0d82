import { makeWorkerUtils } from 'graphile-worker';
import { pino } from 'pino';
import t from 'tap';
import { testDatabase } from '../test/db.ts';
import { crontab, startWorkers, taskList } from './runner.ts';

t.test('graceful stop lets a running task finish and leaves no locked job behind', async (t) => {
  const { pool } = await testDatabase(t);
  await pool.query('create table public.finished (at timestamptz)');
  let started!: () => void;
  const running = new Promise<void>((r) => (started = r));
  const workers = await startWorkers({
    pool,
    logger: pino({ level: 'silent' }),
    concurrency: 2,
    tasks: {
      ...taskList(),
      slow: async (_payload, helpers) => {
        started();
        await new Promise((r) => setTimeout(r, 1500));
        await helpers.withPgClient((c) => c.query('insert into public.finished values (now())'));
      },
    },
  });
  const utils = await makeWorkerUtils({ pgPool: pool });
  t.teardown(() => utils.release());
  await utils.addJob('slow', {});
  await running;
  t.ok(workers.running());
  await workers.stop();
  t.notOk(workers.running());
  const { rows } = await pool.query('select count(*)::int as n from public.finished');
  t.equal(rows[0].n, 1, 'the task ran to completion during the stop');
  const { rows: jobs } = await pool.query('select count(*)::int as n from graphile_worker.jobs');
  t.equal(jobs[0].n, 0, 'the job is complete, not left locked for a retry');
});

t.test('the crontab parses and names only known tasks', async (t) => {
  const known = new Set(Object.keys(taskList()));
  for (const line of crontab().split('\n')) {
    const task = line.trim().split(/\s+/)[5];
    t.ok(task && known.has(task), `${line} names a known task`);
  }
});
