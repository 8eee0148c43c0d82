/**
 * The resume journal: what a run has already stored on its target, kept in
 * the local staging directory (`<staging>/resume.jsonl`, mode 0600).
 *
 * Why: the reference skips a stored file on resume when its size equals the
 * new one. Sizes alone are not enough (every payload part but the last is
 * exactly `split_bytes` long, whatever it contains, so a source that changed
 * between attempts would mix parts of two different archives). A stored file
 * is therefore skipped only when its size matches AND its BLAKE3 matches the
 * bytes we would write now, the stored hash coming from this journal (or from
 * the target itself when it offers `storedHash`, as local_dir does).
 *
 * Format: line 1 is a header identifying the run and pipeline; each further
 * line is `{"name","size","hash"}` appended after a file was committed. When a
 * run resumes, the previous journal is moved to `resume.prev.jsonl` and read
 * sequentially while a fresh journal is written (skipped files are recorded
 * again), so memory stays bounded by a small look-ahead window whatever the
 * number of files (raw_tree_v1 may store millions).
 *
 * Encrypted runs: age draws a random file key and nonce, so two attempts
 * never produce the same ciphertext. The header stores the age session (file
 * key, header, nonce) so a resumed run re-encrypts to identical bytes and can
 * skip what is stored. That file key decrypts this run's payload: it never
 * leaves this machine (it is not in the run directory), the file is 0600 and
 * is deleted when the run completes. Without the journal (staging directory
 * lost), a resumed encrypted run gets a new session and rewrites every part.
 */
import fs from 'node:fs/promises';
import { createReadStream } from 'node:fs';
import readline from 'node:readline';
import { deserializeAgeSession, serializeAgeSession, type AgeSession } from './age-header.ts';

/** Identifies the run and the pipeline a journal belongs to; any difference starts a fresh journal. */
export interface JournalHeader {
  v: 1;
  job_id: string;
  run_id: string;
  format: 'archive_v1' | 'raw_tree_v1';
  split_bytes: number;
  encryption: 'none' | 'age';
  /** The age recipient (public), when encrypted. */
  recipient?: string;
}

/** A file recorded as stored. */
export interface JournalRecord {
  size: number;
  hash: string;
}

const JOURNAL = 'resume.jsonl';
const PREVIOUS = 'resume.prev.jsonl';
const WINDOW = 4096;

function sameHeader(a: Record<string, unknown>, b: JournalHeader): boolean {
  return (
    a.v === b.v &&
    a.job_id === b.job_id &&
    a.run_id === b.run_id &&
    a.format === b.format &&
    a.split_bytes === b.split_bytes &&
    a.encryption === b.encryption &&
    (a.recipient ?? null) === (b.recipient ?? null)
  );
}

/** Journal of one run attempt (see the module comment). */
export class ResumeJournal {
  private readonly dir: string;
  private readonly fh: fs.FileHandle;
  private readonly hasPrevious: boolean;
  /** The age session to encrypt with (reused from the previous attempt when there was one). */
  readonly ageSession: AgeSession | null;
  private lines: AsyncIterator<string> | null = null;
  private window = new Map<string, JournalRecord>();
  private exhausted = false;

  private constructor(dir: string, fh: fs.FileHandle, hasPrevious: boolean, ageSession: AgeSession | null) {
    this.dir = dir;
    this.fh = fh;
    this.hasPrevious = hasPrevious;
    this.ageSession = ageSession;
  }

  /**
   * Open the journal of a run in `stagingDir`, taking over the previous
   * attempt's records when its header matches. For encrypted runs,
   * `newAgeSession` is called only when no previous session can be reused.
   */
  static async open(stagingDir: string, header: JournalHeader, newAgeSession?: () => AgeSession): Promise<ResumeJournal> {
    await fs.mkdir(stagingDir, { recursive: true, mode: 0o700 });
    const cur = `${stagingDir}/${JOURNAL}`;
    const prev = `${stagingDir}/${PREVIOUS}`;
    let previousHeader: Record<string, unknown> | null = null;
    try {
      const first = await readFirstLine(cur);
      previousHeader = first === null ? null : (JSON.parse(first) as Record<string, unknown>);
    } catch {
      previousHeader = null;
    }
    let hasPrevious = false;
    let age: AgeSession | null = null;
    if (previousHeader && sameHeader(previousHeader, header)) {
      await fs.rename(cur, prev);
      hasPrevious = true;
      if (header.encryption === 'age') age = deserializeAgeSession(previousHeader.age);
    } else {
      await fs.rm(prev, { force: true });
    }
    if (header.encryption === 'age' && !age) {
      if (!newAgeSession) throw new Error('an encrypted run needs an age session');
      age = newAgeSession();
      hasPrevious = false; // parts of another session can never be reused
    }
    const fh = await fs.open(cur, 'w', 0o600);
    const full = age ? { ...header, age: serializeAgeSession(age) } : header;
    await fh.write(JSON.stringify(full) + '\n');
    return new ResumeJournal(stagingDir, fh, hasPrevious, age);
  }

  /** Start reading the previous records from the beginning again (a restarted attempt). */
  async rewind(): Promise<void> {
    await this.lines?.return?.();
    this.lines = null;
    this.window = new Map();
    this.exhausted = false;
  }

  /**
   * The previous record for `name`, looked up in a window of the next
   * {@link WINDOW} records in order; records before a hit are dropped (the
   * walk order is deterministic, so they will not be asked for again).
   */
  async lookup(name: string): Promise<JournalRecord | null> {
    if (!this.hasPrevious) return null;
    if (!this.window.has(name)) await this.fill();
    const hit = this.window.get(name);
    if (!hit) return null;
    for (const key of this.window.keys()) {
      this.window.delete(key);
      if (key === name) break;
    }
    return hit;
  }

  private async fill(): Promise<void> {
    if (this.exhausted) return;
    if (!this.lines) {
      const rl = readline.createInterface({ input: createReadStream(`${this.dir}/${PREVIOUS}`), crlfDelay: Infinity });
      this.lines = rl[Symbol.asyncIterator]();
      await this.lines.next(); // header
    }
    while (this.window.size < WINDOW) {
      const r = await this.lines.next();
      if (r.done) {
        this.exhausted = true;
        return;
      }
      try {
        const rec = JSON.parse(r.value) as { name?: unknown; size?: unknown; hash?: unknown };
        if (typeof rec.name === 'string' && typeof rec.size === 'number' && typeof rec.hash === 'string') {
          this.window.set(rec.name, { size: rec.size, hash: rec.hash });
        }
      } catch {
        // A torn last line (crash while appending) is ignored.
      }
    }
  }

  /** Record a committed file. */
  async record(name: string, size: number, hash: string): Promise<void> {
    await this.fh.write(JSON.stringify({ name, size, hash }) + '\n');
  }

  /** Close without deleting (the run failed; a later attempt may resume). */
  async close(): Promise<void> {
    await this.lines?.return?.();
    await this.fh.close().catch(() => {});
  }

  /** The run completed: delete the journal (and with it any age session). */
  async discard(): Promise<void> {
    await this.close();
    await fs.rm(`${this.dir}/${JOURNAL}`, { force: true });
    await fs.rm(`${this.dir}/${PREVIOUS}`, { force: true });
  }
}

async function readFirstLine(p: string): Promise<string | null> {
  let fh: fs.FileHandle;
  try {
    fh = await fs.open(p, 'r');
  } catch {
    return null;
  }
  try {
    const buf = Buffer.alloc(64 * 1024);
    const { bytesRead } = await fh.read(buf, 0, buf.length, 0);
    const nl = buf.subarray(0, bytesRead).indexOf(0x0a);
    return nl < 0 ? null : buf.toString('utf8', 0, nl);
  } finally {
    await fh.close();
  }
}
