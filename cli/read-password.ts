/**
 * Passwords for CLI commands come from stdin, never from a flag (flags end up
 * in shell history and `ps`): typed without echo on a terminal (twice when
 * `confirm`), otherwise the whole of stdin with one trailing newline dropped,
 * so `printf %s "$PW" | bastion …` and `bastion … < file` both work.
 */
import { UsageError } from './config.ts';

export interface ReadPasswordOptions {
  /** Command name for error messages (`user`, `secret`). */
  command: string;
  /** Largest input accepted from a pipe, in bytes. */
  maxBytes: number;
  /** Error message when the piped input is larger. */
  tooLong: string;
  /** Ask twice on a terminal and require both to match. */
  confirm?: boolean;
}

/** Read one line without echo from the terminal on stdin. */
async function readHidden(prompt: string, command: string): Promise<string> {
  const stdin = process.stdin;
  process.stderr.write(prompt);
  stdin.setRawMode(true);
  stdin.resume();
  try {
    return await new Promise<string>((resolve, reject) => {
      let value = '';
      const onData = (buf: Buffer) => {
        for (const ch of buf.toString('utf8')) {
          if (ch === '\r' || ch === '\n') {
            stdin.off('data', onData);
            process.stderr.write('\n');
            resolve(value);
            return;
          }
          if (ch === '\u0003') {
            stdin.off('data', onData);
            reject(new UsageError(`${command}: interrupted`));
            return;
          }
          if (ch === '\u007f' || ch === '\b') value = [...value].slice(0, -1).join('');
          else value += ch;
        }
      };
      stdin.on('data', onData);
    });
  } finally {
    stdin.setRawMode(false);
    stdin.pause();
  }
}

/** The password from the terminal or from a pipe; see the file comment. */
export async function readPassword(options: ReadPasswordOptions): Promise<string> {
  if (process.stdin.isTTY) {
    const first = await readHidden('password: ', options.command);
    if (!options.confirm) return first;
    const second = await readHidden('again: ', options.command);
    if (first !== second) throw new UsageError(`${options.command}: the two passwords differ`);
    return first;
  }
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const c of process.stdin) {
    size += (c as Buffer).length;
    if (size > options.maxBytes) throw new UsageError(options.tooLong);
    chunks.push(c as Buffer);
  }
  return Buffer.concat(chunks).toString('utf8').replace(/\r?\n$/, '');
}
