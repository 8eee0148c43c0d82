/**
 * Storing one named file of the run directory through a RunDirWriter, with
 * bounded memory and disk: streamed straight to the target when it offers
 * `openStream` (local_dir), otherwise staged to ONE local file at a time and
 * handed to `putFile` (WebDAV needs a replayable body), then deleted.
 * Also the resume rule: when a stored copy can be trusted to equal what we
 * are about to write.
 */
import fs from 'node:fs/promises';
import type { RunDirWriter } from '../targets/target.ts';
import type { JournalRecord, ResumeJournal } from './resume-journal.ts';

/** A file being written. */
export interface FileSink {
  /** Append bytes (resolves when the target can take more: backpressure). */
  write(buf: Buffer): Promise<void>;
  /** Make the file visible under its name. */
  commit(): Promise<void>;
  /** Drop it (no partial file is left behind). */
  abort(): Promise<void>;
}

/** Name of the single staging file used when the target cannot take a stream. */
export const STAGED_UPLOAD = 'upload.tmp';

/** Open a sink for `name`. */
export async function openFileSink(writer: RunDirWriter, name: string, stagingDir: string): Promise<FileSink> {
  const direct = await writer.openStream(name);
  if (direct) return streamSink(direct.stream, direct.commit, direct.abort);
  const staged = `${stagingDir}/${STAGED_UPLOAD}`;
  const fh = await fs.open(staged, 'w', 0o600);
  const stream = fh.createWriteStream({ highWaterMark: 8 * 1024 * 1024 });
  let size = 0;
  const closed = new Promise<void>((resolve, reject) => {
    stream.once('close', resolve);
    stream.once('error', reject);
  });
  closed.catch(() => {});
  const inner = streamSink(
    stream,
    async () => {
      stream.end();
      await closed;
      try {
        await writer.putFile(name, staged, size);
      } finally {
        await fs.rm(staged, { force: true });
      }
    },
    async () => {
      stream.destroy();
      await closed.catch(() => {});
      await fs.rm(staged, { force: true });
    },
  );
  return {
    write: (buf) => {
      size += buf.length;
      return inner.write(buf);
    },
    commit: inner.commit,
    abort: inner.abort,
  };
}

function streamSink(stream: NodeJS.WritableStream, commit: () => Promise<void>, abort: () => Promise<void>): FileSink {
  let failure: unknown = null;
  const onError = (e: unknown) => {
    failure ??= e;
  };
  stream.on('error', onError);
  return {
    async write(buf) {
      if (failure) throw failure;
      if (!stream.write(buf)) {
        await new Promise<void>((resolve) => {
          const done = () => {
            stream.off('drain', done);
            stream.off('error', done);
            resolve();
          };
          stream.on('drain', done);
          stream.on('error', done);
        });
      }
      if (failure) throw failure;
    },
    async commit() {
      if (failure) throw failure;
      await commit();
    },
    abort,
  };
}

/**
 * Size and hash of the copy of `name` already on the target, when it can be
 * trusted: recorded in the journal of an earlier attempt with the size found
 * now, or hashed by the target itself. Null means: write it.
 */
export async function trustedStoredCopy(writer: RunDirWriter, journal: ResumeJournal, name: string): Promise<JournalRecord | null> {
  const recorded = await journal.lookup(name);
  if (!recorded && !writer.storedHash) return null; // first run on a remote target: no HEAD per file
  const size = await writer.storedSize(name);
  if (size === null) return null;
  if (recorded && recorded.size === size) return recorded;
  if (writer.storedHash) {
    const hash = await writer.storedHash(name);
    return hash === null ? null : { size, hash };
  }
  return null;
}
