/**
 * Graceful shutdown on SIGINT/SIGTERM: the first signal resolves
 * {@link waitForShutdownSignal} so the command can stop its services in
 * order; a second signal exits at once (an operator who presses Ctrl-C twice
 * means it).
 */
import type { Logger } from 'pino';

/** Resolve with the signal name on the first SIGINT or SIGTERM. */
export function waitForShutdownSignal(logger: Logger): Promise<NodeJS.Signals> {
  return new Promise((resolve) => {
    let received = false;
    const onSignal = (signal: NodeJS.Signals) => {
      if (received) {
        logger.warn({ signal }, 'second signal: exiting without waiting for running tasks');
        process.exit(130);
      }
      received = true;
      logger.info({ signal }, 'shutting down: finishing running tasks (signal again to exit at once)');
      resolve(signal);
    };
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
  });
}
