import t from 'tap';
import type { BackupProgress } from '../format/run-backup.ts';
import { progressDoc, progressMessage, RunProgress, type RunProgressDoc } from './run-progress.ts';

const report = (files: number, bytes: number, stage: BackupProgress['stage'] = 'packaging'): BackupProgress => ({
  stage,
  done: { files, dirs: 1, bytes },
  total: stage === 'scan' ? null : { files: 10, dirs: 2, bytes: 3 * 1024 * 1024 * 1024 },
  stored_files: 0,
  written_bytes: bytes,
});

const settle = () => new Promise((r) => setImmediate(r));

t.test('progress events: the first at once, then at most one per interval; the latest value wins', async (t) => {
  let now = 0;
  const sent: Array<{ doc: RunProgressDoc | null; message: string | null }> = [];
  const p = new RunProgress({ send: async (doc, message) => (sent.push({ doc, message }), true), progressEventMs: 1000, heartbeatMs: 10_000, now: () => now });
  p.report(report(1, 10));
  await settle();
  t.equal(sent.length, 1, 'first report is sent at once');
  t.match(sent[0], { doc: { files_done: 1 }, message: /^packaging: 1\/10 files/ });
  for (const ms of [100, 400, 999]) {
    now = ms;
    p.report(report(ms, ms));
    await settle();
  }
  t.equal(sent.length, 1, 'nothing more within the second');
  now = 1000;
  p.report(report(1000, 1000));
  await settle();
  t.equal(sent.length, 2);
  t.equal(sent[1]!.doc!.files_done, 1000, 'the latest value');
  now = 1500;
  p.report(report(1500, 1500));
  await p.stop();
  t.equal(sent.length, 3, 'stop stores the last value');
  t.same([sent[2]!.doc!.files_done, sent[2]!.message], [1500, null], '…without an event');
  t.equal(p.eventsSent, 2);
});

t.test('a slow database never queues calls: one in flight, the newest value goes next', async (t) => {
  let now = 0;
  let release!: () => void;
  let calls = 0;
  const docs: number[] = [];
  const p = new RunProgress({
    send: (doc) => {
      calls++;
      docs.push(doc?.files_done ?? -1);
      return calls === 1 ? new Promise<boolean>((r) => (release = () => r(true))) : Promise.resolve(true);
    },
    progressEventMs: 1000,
    now: () => now,
  });
  p.report(report(1, 1));
  for (let i = 2; i <= 50; i++) {
    now += 1000;
    p.report(report(i, i));
  }
  t.equal(calls, 1, 'still the first call');
  release();
  await settle();
  await settle();
  t.equal(calls, 2, 'one follow-up call');
  t.same(docs, [1, 50], 'with the newest value');
  await p.stop();
});

t.test('heartbeats without progress; "not running" aborts; errors do not', async (t) => {
  let alive = true;
  let beats = 0;
  const errors: unknown[] = [];
  let fail = false;
  const p = new RunProgress({
    send: async (doc) => {
      if (fail) throw new Error('database down');
      if (doc === null) beats++;
      return alive;
    },
    heartbeatMs: 20,
    progressEventMs: 1000,
    onError: (e) => errors.push(e),
  });
  p.start();
  while (beats < 2) await new Promise((r) => setTimeout(r, 10));
  t.notOk(p.lost.aborted);
  fail = true;
  while (errors.length < 1) await new Promise((r) => setTimeout(r, 10));
  t.notOk(p.lost.aborted, 'a failed heartbeat does not stop the run');
  fail = false;
  alive = false;
  // (The heartbeat timer is unref'd: poll with a ref'd timer so the test process stays up.)
  while (!p.lost.aborted) await new Promise((r) => setTimeout(r, 10));
  t.ok(p.lost.aborted, 'the run was ended elsewhere');
  await p.stop();
});

t.test('messages and documents', async (t) => {
  const d = progressDoc(report(3, 1536, 'scan'), new Date('2026-01-01T00:00:00Z'));
  t.same({ ...d, updated_at: d.updated_at }, { stage: 'scan', files_done: 3, dirs_done: 1, bytes_done: 1536, files_total: null, dirs_total: null, bytes_total: null, stored_files: 0, written_bytes: 1536, updated_at: '2026-01-01T00:00:00.000Z' });
  t.equal(progressMessage(d), 'scan: 3 files, 1 directories, 1.50 KiB so far');
  t.equal(progressMessage(progressDoc(report(4, 2 * 1024 ** 3))), 'packaging: 4/10 files, 2.00 GiB of 3.00 GiB, 2.00 GiB written');
});
