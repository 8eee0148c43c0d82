/**
 * Outbox rows → frames, at delivery time. Task messages copy the row's
 * payload (the task's run and job ids and target snapshot, as stored). A
 * backup run on a WebDAV target gets its login here, resolved from the
 * secret of the agent's node scope (DESIGN §8: credentials are sent, never
 * stored in the outbox, never logged). A login that cannot be resolved fails
 * the run at once with the secret's error code instead of sending anything.
 */
import type pg from 'pg';
import type { OutgoingFrame } from '../../core/agent-protocol.ts';
import { BastionError } from '../../core/errors.ts';
import { sanitizeErrorText } from '../../core/redact.ts';
import type { OutboxMessage } from '../../db/queries/agents.ts';
import type { SecretKeyProvider } from '../../engine/secrets/secret-key.ts';
import { resolveWebdavCredentials } from '../../engine/secrets/secret-store.ts';

/** A frame to send, or a failure to record for a backup run that cannot be sent. */
export type DeliveryPlan =
  | { send: OutgoingFrame; secrets: readonly string[] }
  | { fail: { error_code: string; error: string } };

const text = (v: unknown): string => (typeof v === 'string' ? v : v === undefined || v === null ? '' : JSON.stringify(v)).slice(0, 4096);

/** The frame of an outbox message. */
export async function planDelivery(m: OutboxMessage, deps: { pool: pg.Pool; secretKeys?: SecretKeyProvider | undefined }): Promise<DeliveryPlan> {
  const p = m.payload;
  if (m.kind === 'snapshot_delete' || m.kind === 'incomplete_cleanup') {
    return {
      send: {
        type: m.kind,
        message_id: m.id,
        attempt: m.attempt ?? 1,
        run_id: text(p['run_id']),
        job_id: text(p['job_id']),
        target_snapshot: (p['target_snapshot'] ?? {}) as never,
      },
      secrets: [],
    };
  }
  const spec = p['spec'] as { target?: { type?: string; secret_name?: string } } | undefined;
  const frame = {
    type: 'backup_run' as const,
    message_id: m.id,
    run_id: text(p['run_id']),
    job_id: text(p['job_id']),
    started_at: text(p['started_at']),
    spec: spec as never,
    target_snapshot: p['target_snapshot'] as never,
  };
  if (spec?.target?.type !== 'webdav') return { send: frame, secrets: [] };
  if (!deps.secretKeys) {
    return { fail: { error_code: 'secret_key_unavailable', error: 'the gateway that delivers this run has no secret key, so the WebDAV login cannot be read' } };
  }
  try {
    const credentials = await resolveWebdavCredentials(deps.pool, deps.secretKeys, m.agent_id, text(spec.target.secret_name));
    return { send: { ...frame, credentials }, secrets: [credentials.password] };
  } catch (e) {
    if (e instanceof BastionError) return { fail: { error_code: e.code, error: sanitizeErrorText(e.message) } };
    throw e;
  }
}
