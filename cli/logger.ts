/**
 * The process logger: JSON lines on stdout (pino). Credentials never reach it:
 * callers log redacted values only, and common secret-bearing keys are
 * censored as a second line of defence.
 */
import { pino, type Logger } from 'pino';

/** Create the root logger for a CLI command. */
export function createLogger(level: string, name: string): Logger {
  return pino({
    name,
    level,
    base: { pid: process.pid },
    redact: { paths: ['password', '*.password', 'authorization', '*.authorization', 'token', '*.token', 'connectionString', '*.connectionString'], censor: '[redacted]' },
  });
}
