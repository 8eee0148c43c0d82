/**
 * The database of an operator tool command (`bastion job …`, `bastion
 * secret …`): DATABASE_URL when set; otherwise the embedded cluster of the
 * data directory — joined when a hub runs it, started (and migrated) for the
 * duration of the command when none does (cli/database.ts `start-or-join`).
 *
 * Commands that need a worker to act (`job run`) pass `requireHub`: with the
 * embedded cluster and no hub there is nobody to execute the run.
 */
import type { Logger } from 'pino';
import { migrate } from '../db/migrator.ts';
import { ConfigError, type Config } from './config.ts';
import { openDatabase, type Database } from './database.ts';

/** Open the database for a tool command. */
export async function openToolDatabase(config: Config, logger: Logger, name: string, options: { requireHub?: boolean } = {}): Promise<Database> {
  if (config.databaseUrl) return openDatabase(config, logger, 'join', name);
  if (options.requireHub) {
    try {
      return await openDatabase(config, logger, 'join', name);
    } catch (e) {
      if (!(e instanceof ConfigError)) throw e;
      throw new ConfigError('DATABASE_URL', `not set, and no hub is running on ${config.dataDir}; start "bastion hub" (it executes runs) or set DATABASE_URL`);
    }
  }
  const db = await openDatabase(config, logger, 'start-or-join', name);
  if (!db.embedded) return db;
  try {
    await migrate(db.pool);
  } catch (e) {
    await db.close();
    throw e;
  }
  return db;
}
