/**
 * graphile-worker logs through its own Logger interface; route it into the
 * process's pino logger so the queue's messages are JSON lines like ours.
 */
import { Logger as WorkerLogger, type LogLevel } from 'graphile-worker';
import type { Logger } from 'pino';

const LEVELS: Record<LogLevel, 'error' | 'warn' | 'info' | 'debug'> = {
  error: 'error',
  warning: 'warn',
  info: 'info',
  debug: 'debug',
};

/** A graphile-worker Logger writing to `logger` with the worker's scope as fields. */
export function workerLogger(logger: Logger): WorkerLogger {
  return new WorkerLogger((scope) => {
    const child = logger.child({ component: 'graphile-worker', ...(scope.label ? { label: scope.label } : {}), ...(scope.taskIdentifier ? { task: scope.taskIdentifier } : {}), ...(scope.jobId ? { job_id: scope.jobId } : {}) });
    return (level, message, meta) => {
      child[LEVELS[level] ?? 'info']({ ...(meta && typeof meta === 'object' ? { meta } : {}) }, message);
    };
  });
}
