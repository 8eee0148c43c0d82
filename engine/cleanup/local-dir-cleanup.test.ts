import { randomUUID } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import t from 'tap';
import { TaskAttemptError } from '../../core/task-attempt-error.ts';
import { writePartialRunDir, writeRunDir } from '../../test/factories.ts';
import { cleanupLocalRunDir, cleanupVerdict } from './local-dir-cleanup.ts';

const exists = (p: string) => fs.lstat(p).then(() => true, () => false);

t.test('verdicts from a listing', async (t) => {
  t.same(cleanupVerdict(['complete.json', 'manifest.json']).action, 'keep');
  t.match(cleanupVerdict(['complete.json']), { action: 'keep', reason: 'complete' });
  for (const names of [['manifest.json'], ['entries.jsonl.zst'], ['payload.part000001'], ['payload.part000002.partial'], ['data', 'x.partial']]) t.same(cleanupVerdict(names), { action: 'remove' }, names.join(','));
  for (const names of [[], ['photos'], ['complete.json.bak'], ['payload'], ['MANIFEST.JSON'], ['notes.partial.txt']]) t.match(cleanupVerdict(names), { action: 'keep', reason: 'not_bastion_data' }, `[${names.join(',')}]`);
});

t.test('partial runs are removed, complete ones kept, missing ones skipped, foreign ones left alone', async (t) => {
  const base = await fs.realpath(t.testdir({}));
  const job = randomUUID();
  const partial = randomUUID();
  const complete = randomUUID();
  const foreign = randomUUID();
  await writePartialRunDir(base, job, partial, { stage: 'parts' });
  await writeRunDir(base, job, complete);
  await fs.mkdir(path.join(base, job, foreign, 'sub'), { recursive: true });
  await fs.writeFile(path.join(base, job, foreign, 'sub', 'cat.jpg'), 'meow');
  t.match(await cleanupLocalRunDir(base, job, partial), { outcome: 'deleted', path: path.join(base, job, partial) });
  t.notOk(await exists(path.join(base, job, partial)));
  t.match(await cleanupLocalRunDir(base, job, partial), { outcome: 'skip_not_found' }, 'again: nothing there (idempotent)');
  t.match(await cleanupLocalRunDir(base, job, complete), { outcome: 'skip_complete', reason: 'complete' });
  t.ok(await exists(path.join(base, job, complete, 'complete.json')), 'nothing deleted');
  t.match(await cleanupLocalRunDir(base, job, foreign), { outcome: 'skip_not_found', reason: 'not_bastion_data' });
  t.equal(await fs.readFile(path.join(base, job, foreign, 'sub', 'cat.jpg'), 'utf8'), 'meow');
  t.match(await cleanupLocalRunDir(base, randomUUID(), randomUUID()), { outcome: 'skip_not_found' }, 'no job directory');
  t.ok(await exists(path.join(base, job)), 'the job directory stays');
});

t.test('a complete.json written between the check and the removal keeps the directory', async (t) => {
  const base = await fs.realpath(t.testdir({}));
  const job = randomUUID();
  const run = randomUUID();
  const dir = await writePartialRunDir(base, job, run);
  const r = await cleanupLocalRunDir(base, job, run, { beforeRemove: () => fs.writeFile(path.join(dir, 'complete.json'), '{}') });
  t.match(r, { outcome: 'skip_complete' });
  t.ok(await exists(path.join(dir, 'manifest.json')), 'the late writer\'s data is whole');
});

t.test('the delete queue\'s safety rules hold: symlinks refused with config, a missing base_dir is io', async (t) => {
  const root = await fs.realpath(t.testdir({ base: {}, outside: { 'manifest.json': '{}', 'precious.txt': 'keep' } }));
  const base = path.join(root, 'base');
  const job = randomUUID();
  const run = randomUUID();
  await fs.mkdir(path.join(base, job));
  await fs.symlink(path.join(root, 'outside'), path.join(base, job, run));
  const err = await cleanupLocalRunDir(base, job, run).catch((e: unknown) => e);
  t.type(err, TaskAttemptError);
  t.match(err, { kind: 'config', reason: 'run_dir_is_symlink' });
  t.ok(await exists(path.join(root, 'outside', 'precious.txt')));
  t.match(await cleanupLocalRunDir(path.join(root, 'nope'), job, run).catch((e: unknown) => e), { kind: 'io', reason: 'base_dir_missing' });
  t.match(await cleanupLocalRunDir(base, job, '../x').catch((e: unknown) => e), { kind: 'config', reason: 'invalid_run_id' });
});
