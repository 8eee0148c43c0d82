import { randomUUID } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import t from 'tap';

type Test = Parameters<Parameters<typeof t.test>[0]>[0];
import { TaskAttemptError } from '../../core/task-attempt-error.ts';
import { writeRunDir } from '../../test/factories.ts';
import { deleteLocalRunDir, looksLikeBastionRunDir } from './local-dir-delete.ts';

const exists = (p: string) => fs.lstat(p).then(() => true, () => false);

/** A directory tree with a base_dir and an "outside" directory holding data that must survive. */
async function setup(t: Test) {
  const root = await fs.realpath(t.testdir({ base: {}, outside: { 'precious.txt': 'keep me', 'complete.json': '{}' } }));
  return { root, base: path.join(root, 'base'), outside: path.join(root, 'outside') };
}

async function refused(t: Test, p: Promise<unknown>, kind: string, reason: string) {
  const err = await p.then(
    () => null,
    (e: unknown) => e,
  );
  t.type(err, TaskAttemptError, 'a classified failure');
  t.equal((err as TaskAttemptError).kind, kind, `kind ${kind}`);
  t.equal((err as TaskAttemptError).reason, reason, `reason ${reason}`);
}

t.test('deletes a real archive_v1 run directory and nothing else', async (t) => {
  const { base } = await setup(t);
  const job = randomUUID();
  const run = randomUUID();
  const other = randomUUID();
  const dir = await writeRunDir(base, job, run);
  await writeRunDir(base, job, other);
  t.ok(await exists(path.join(dir, 'complete.json')), 'the writer produced a complete run');
  const r = await deleteLocalRunDir(base, job, run);
  t.equal(r.outcome, 'deleted');
  t.equal(r.path, dir);
  t.notOk(await exists(dir), 'run directory gone');
  t.ok(await exists(path.join(base, job, other, 'complete.json')), 'the sibling run is untouched');
  t.ok(await exists(path.join(base, job)), 'the job directory stays');
  const again = await deleteLocalRunDir(base, job, run);
  t.equal(again.outcome, 'not_found', 'deleting again: missing = success');
});

t.test('deletes a raw_tree_v1 run and an incomplete run holding only a .partial file', async (t) => {
  const { base } = await setup(t);
  const job = randomUUID();
  const raw = randomUUID();
  await writeRunDir(base, job, raw, { format: 'raw_tree_v1', files: { 'x/y/z.txt': 'deep' } });
  t.equal((await deleteLocalRunDir(base, job, raw)).outcome, 'deleted');
  const partial = randomUUID();
  await fs.mkdir(path.join(base, job, partial), { recursive: true });
  await fs.writeFile(path.join(base, job, partial, 'payload.part000001.partial'), 'half');
  t.equal((await deleteLocalRunDir(base, job, partial)).outcome, 'deleted');
});

t.test('missing job or run directory is success (not_found)', async (t) => {
  const { base } = await setup(t);
  t.equal((await deleteLocalRunDir(base, randomUUID(), randomUUID())).outcome, 'not_found');
  const job = randomUUID();
  await fs.mkdir(path.join(base, job));
  t.equal((await deleteLocalRunDir(base, job, randomUUID())).outcome, 'not_found');
});

t.test('a missing base_dir is an io failure, not missing data (an unmounted disk)', async (t) => {
  const { root } = await setup(t);
  await refused(t, deleteLocalRunDir(path.join(root, 'nope'), randomUUID(), randomUUID()), 'io', 'base_dir_missing');
});

t.test('ids that are not canonical UUIDs are refused before touching anything', async (t) => {
  const { base, root } = await setup(t);
  const job = randomUUID();
  await writeRunDir(base, job, randomUUID());
  for (const [j, r] of [
    ['..', randomUUID()],
    [job, '..'],
    [job, '.'],
    [`${job}/..`, randomUUID()],
    [job, `../${job}`],
    [job, 'a/b'],
    [job.toUpperCase(), randomUUID()],
    [job, ''],
    [` ${job}`, randomUUID()],
  ] as const) {
    await refused(t, deleteLocalRunDir(base, j, r), 'config', j === job ? 'invalid_run_id' : 'invalid_job_id');
  }
  t.ok(await exists(path.join(base, job)), 'the job directory survived');
  t.ok(await exists(path.join(root, 'outside', 'precious.txt')));
  await refused(t, deleteLocalRunDir('relative/base', job, randomUUID()), 'config', 'invalid_base_dir');
  await refused(t, deleteLocalRunDir('/a/../b', job, randomUUID()), 'config', 'invalid_base_dir');
});

t.test('a run directory that is a symlink to Bastion-looking data outside base_dir is refused', async (t) => {
  const { base, outside } = await setup(t);
  const job = randomUUID();
  const run = randomUUID();
  await fs.mkdir(path.join(base, job), { recursive: true });
  await fs.symlink(outside, path.join(base, job, run));
  await refused(t, deleteLocalRunDir(base, job, run), 'config', 'run_dir_is_symlink');
  t.equal(await fs.readFile(path.join(outside, 'precious.txt'), 'utf8'), 'keep me');
  t.ok((await fs.lstat(path.join(base, job, run))).isSymbolicLink(), 'the link itself is left alone too');
});

t.test('a job directory that is a symlink is refused', async (t) => {
  const { base, root } = await setup(t);
  const job = randomUUID();
  const run = randomUUID();
  await writeRunDir(path.join(root, 'outside'), job, run);
  await fs.symlink(path.join(root, 'outside', job), path.join(base, job));
  await refused(t, deleteLocalRunDir(base, job, run), 'config', 'job_dir_is_symlink');
  t.ok(await exists(path.join(root, 'outside', job, run, 'complete.json')));
});

t.test('a directory without Bastion markers is refused and untouched', async (t) => {
  const { base } = await setup(t);
  const job = randomUUID();
  const run = randomUUID();
  const dir = path.join(base, job, run);
  await fs.mkdir(path.join(dir, 'photos'), { recursive: true });
  await fs.writeFile(path.join(dir, 'photos', 'cat.jpg'), 'meow');
  await refused(t, deleteLocalRunDir(base, job, run), 'config', 'not_bastion_data');
  t.equal(await fs.readFile(path.join(dir, 'photos', 'cat.jpg'), 'utf8'), 'meow');
  t.notOk(looksLikeBastionRunDir(['photos', 'notes.json', 'payload']), 'near misses are not markers');
  t.ok(looksLikeBastionRunDir(['manifest.json']));
  t.ok(looksLikeBastionRunDir(['entries.jsonl.zst']));
  t.ok(looksLikeBastionRunDir(['payload.part000007']));
});

t.test('base_dir replaced by a symlink (or reached through one) is refused; the target is untouched', async (t) => {
  const { base, root } = await setup(t);
  const job = randomUUID();
  const run = randomUUID();
  await writeRunDir(base, job, run);
  // The operator's base_dir is moved away and replaced by a link to other data.
  await fs.rename(base, path.join(root, 'moved'));
  await fs.symlink(path.join(root, 'moved'), base);
  await refused(t, deleteLocalRunDir(base, job, run), 'config', 'base_dir_is_symlink');
  t.ok(await exists(path.join(root, 'moved', job, run, 'complete.json')));
  // A parent that is a symlink: the path does not lead where it says.
  await fs.symlink(root, path.join(root, 'alias'));
  await refused(t, deleteLocalRunDir(path.join(root, 'alias', 'moved'), job, run), 'config', 'base_dir_through_symlink');
  t.ok(await exists(path.join(root, 'moved', job, run, 'complete.json')));
  await refused(t, deleteLocalRunDir(path.join(root, 'outside', 'precious.txt'), job, run), 'config', 'base_dir_not_directory');
});

t.test('symlinks inside the run directory are removed without following them', async (t) => {
  const { base, outside } = await setup(t);
  const job = randomUUID();
  const run = randomUUID();
  const dir = await writeRunDir(base, job, run);
  await fs.symlink(outside, path.join(dir, 'link-to-dir'));
  await fs.symlink(path.join(outside, 'precious.txt'), path.join(dir, 'link-to-file'));
  await fs.mkdir(path.join(dir, 'data'));
  await fs.symlink(outside, path.join(dir, 'data', 'nested-link'));
  t.equal((await deleteLocalRunDir(base, job, run)).outcome, 'deleted');
  t.notOk(await exists(dir));
  t.equal(await fs.readFile(path.join(outside, 'precious.txt'), 'utf8'), 'keep me');
  t.ok(await exists(path.join(outside, 'complete.json')));
});

t.test('a swap between the check and the removal is caught by the re-check', async (t) => {
  const { base, outside, root } = await setup(t);
  const job = randomUUID();
  const run = randomUUID();
  const dir = await writeRunDir(base, job, run);
  // The run directory is replaced by another real directory (different inode).
  await refused(
    t,
    deleteLocalRunDir(base, job, run, {
      beforeRemove: async () => {
        await fs.rename(dir, path.join(root, 'stash'));
        await fs.mkdir(dir);
        await fs.writeFile(path.join(dir, 'complete.json'), '{}');
        await fs.writeFile(path.join(dir, 'other.txt'), 'not the snapshot we checked');
      },
    }),
    'config',
    'replaced_during_delete',
  );
  t.ok(await exists(path.join(dir, 'other.txt')), 'the replacement is untouched');
  // The run directory becomes a symlink to outside data.
  await fs.rm(dir, { recursive: true });
  await fs.rename(path.join(root, 'stash'), dir);
  await refused(
    t,
    deleteLocalRunDir(base, job, run, {
      beforeRemove: async () => {
        await fs.rename(dir, path.join(root, 'stash2'));
        await fs.symlink(outside, dir);
      },
    }),
    'config',
    'run_dir_is_symlink',
  );
  t.equal(await fs.readFile(path.join(outside, 'precious.txt'), 'utf8'), 'keep me');
  // The run directory vanishes (another deleter won): success.
  await fs.rm(dir);
  await fs.rename(path.join(root, 'stash2'), dir);
  const r = await deleteLocalRunDir(base, job, run, { beforeRemove: () => fs.rm(dir, { recursive: true }) });
  t.equal(r.outcome, 'not_found');
});
