/**
 * `bastion worker`: background workers only (graphile-worker tasks and
 * crontab), for scale-out next to one or more hubs. Uses DATABASE_URL, or joins
 * the embedded PostgreSQL of a hub running on the same data directory.
 */
import type { Logger } from 'pino';
import { migrate } from '../../db/migrator.ts';
import { startWorkers } from '../../worker/runner.ts';
import type { Config } from '../config.ts';
import { openDatabase } from '../database.ts';
import { waitForShutdownSignal } from '../shutdown.ts';

/** Run the command; resolves with the exit code once stopped. */
export async function workerCommand(config: Config, logger: Logger): Promise<number> {
  const db = await openDatabase(config, logger, 'join', 'bastion-worker');
  try {
    await migrate(db.pool, { logger });
    const workers = await startWorkers({ pool: db.pool, logger, concurrency: config.workerConcurrency, dataDir: config.dataDir, secretKey: config.secretKey });
    logger.info({ concurrency: config.workerConcurrency }, 'Bastion worker running');
    const stoppedByItself = workers.done.then(() => 'runner' as const);
    const reason = await Promise.race([waitForShutdownSignal(logger), stoppedByItself]);
    await workers.stop();
    logger.info('Bastion worker stopped');
    return reason === 'runner' ? 1 : 0;
  } finally {
    await db.close();
  }
}
