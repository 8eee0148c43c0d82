/**
 * `bastion hub`: database (embedded unless DATABASE_URL is set), migrations,
 * workers and the gateway in one process — what `npm start` runs.
 *
 * Shutdown order matters: stop listening first (no new requests), then let
 * the workers finish their running tasks, then close the pool, and stop the
 * embedded PostgreSQL last, so nothing loses its database mid-task.
 */
import type { Logger } from 'pino';
import { migrate } from '../../db/migrator.ts';
import { needsSetup } from '../../db/queries/users.ts';
import { SecretKeyProvider } from '../../engine/secrets/secret-key.ts';
import { createGateway } from '../../gateway/app.ts';
import { startWorkers } from '../../worker/runner.ts';
import { ConfigError, type Config } from '../config.ts';
import { openDatabase } from '../database.ts';
import { waitForShutdownSignal } from '../shutdown.ts';

/** Run the command; resolves with the exit code once stopped. */
export async function hubCommand(config: Config, logger: Logger, version: string): Promise<number> {
  const db = await openDatabase(config, logger, 'start', 'bastion-hub');
  try {
    await migrate(db.pool, { logger });
    const workers = await startWorkers({ pool: db.pool, logger, concurrency: config.workerConcurrency, dataDir: config.dataDir, secretKey: config.secretKey });
    const gateway = createGateway({
      pool: db.pool,
      logger,
      version,
      workersRunning: workers.running,
      trustedProxies: config.trustedProxies,
      graphiql: config.graphiql,
      secretKeys: new SecretKeyProvider({ dataDir: config.dataDir, envKey: config.secretKey }),
    });
    try {
      // GraphQL's schema comes from the database; a broken one is a startup error.
      await gateway.ready();
      let port: number;
      try {
        port = await gateway.listen(config.listen.host, config.listen.port);
      } catch (e) {
        throw new ConfigError('BASTION_LISTEN', (e as Error).message);
      }
      const host = config.listen.host.includes(':') ? `[${config.listen.host}]` : config.listen.host;
      logger.info(
        { url: `http://${host}:${port}`, data_dir: config.dataDir, database: db.embedded ? 'embedded' : 'DATABASE_URL' },
        `Bastion hub ready at http://${host}:${port} (health: /healthz, readiness: /readyz, GraphQL: /graphql)`,
      );
      if (await needsSetup(db.pool)) {
        logger.info(
          { setup_url: `http://${host}:${port}/api/setup/initialize` },
          `No admin yet: create one with  curl -X POST http://${host}:${port}/api/setup/initialize -H 'content-type: application/json' -d '{"username":"admin","password":"<12+ characters>"}'  or  bastion user create --username admin --role admin  (password on stdin)`,
        );
      }
      const reason = await Promise.race([waitForShutdownSignal(logger), workers.done.then(() => 'runner' as const)]);
      await gateway.close();
      await workers.stop();
      logger.info('Bastion hub stopped');
      return reason === 'runner' ? 1 : 0;
    } finally {
      await gateway.close();
      await workers.stop();
    }
  } finally {
    await db.close();
  }
}
