/**
 * `bastion migrate`: bring the database schema up to date and exit. Safe to
 * run while hubs and workers are running or starting (they migrate too, under
 * the same lock).
 */
import type { Logger } from 'pino';
import { migrate } from '../../db/migrator.ts';
import type { Config } from '../config.ts';
import { openDatabase } from '../database.ts';

/** Run the command; resolves with the exit code. */
export async function migrateCommand(config: Config, logger: Logger): Promise<number> {
  const db = await openDatabase(config, logger, 'start-or-join', 'bastion-migrate');
  try {
    const result = await migrate(db.pool, { logger });
    logger.info({ applied: result.applied, current: result.current }, result.applied.length ? `applied ${result.applied.length} migration(s)` : 'database is up to date');
    return 0;
  } finally {
    await db.close();
  }
}
