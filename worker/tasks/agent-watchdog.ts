/**
 * The agents' watchdog (crontab, every minute, one run per tick across all
 * worker processes). The gateway holding an agent's socket fails the agent's
 * work in flight 25 s after the socket closed if the agent did not come back
 * (gateway/agents/agent-hub.ts); this tick covers what a gateway could not:
 * a gateway that crashed or was killed (its heartbeat stops, so its agents
 * count as disconnected since then), a gateway stopped before its timer
 * fired. Attempts fail with kind `offline` (retried with the offline backoff,
 * and at once when the agent says hello again), runs with `agent_lost`.
 * It also prunes completed outbox messages older than a week and gateway rows
 * silent for an hour. All the work is bastion_private.agent_lost, which a DBA
 * can also call.
 */
import type { Task } from 'graphile-worker';
import { AGENT_LOST_GRACE_MS } from '../../core/agent-protocol.ts';
import { agentLost } from '../../db/queries/agents.ts';

/** Task identifier (also the crontab entry and this file's name). */
export const AGENT_WATCHDOG = 'agent-watchdog';

declare global {
  namespace GraphileWorker {
    interface Tasks {
      'agent-watchdog': Record<string, unknown>;
    }
  }
}

/** The task. */
export const agentWatchdog: Task<'agent-watchdog'> = async (_payload, helpers) => {
  const r = await helpers.withPgClient((c) => agentLost(c, null, AGENT_LOST_GRACE_MS / 1000));
  if (r.agents > 0) helpers.logger.warn(`agent watchdog: ${r.agents} agent(s) stayed away; failed ${r.tasks} attempt(s) (offline) and ${r.runs} run(s) (agent_lost)`);
};
