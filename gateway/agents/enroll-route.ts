/**
 * `POST /agent/enroll` — an agent exchanges an enrollment token for its
 * identity:
 *
 *   {token: "bet_…", name: "nas-01"} → 201 {agent_id, agent_key: "bak_…", name, hub_version}
 *
 * Rate-limited like login (the same bastion_private.login_throttle, keyed
 * `enroll:<client address>`): every attempt counts before the token is
 * looked at, 10 without success within 10 minutes lock the address for 15
 * minutes (429 with Retry-After), a success clears the count. Errors (401):
 * enrollment_token_invalid (unknown or malformed), enrollment_token_expired,
 * enrollment_token_exhausted (all its uses spent — a reused one-time token),
 * enrollment_token_revoked; 409 agent_name_taken; 400 invalid_input.
 */
import type pg from 'pg';
import type { Logger } from 'pino';
import { z } from 'zod';
import { BastionError } from '../../core/errors.ts';
import { ENROLLMENT_TOKEN_RE, enrollAgent } from '../../db/queries/agents.ts';
import { beginLoginAttempt } from '../../db/queries/sessions.ts';
import { resolveClient, type TrustedProxies } from '../auth/client-address.ts';
import { errorResponse, json, type Router } from '../http-adapter.ts';
import { jsonBody, parseInput } from '../rest/input.ts';

const body = z
  .object({
    token: z.string().max(200, 'must be at most 200 characters'),
    // PostgreSQL text cannot hold NUL; the other rules (1–64 characters,
    // no control characters, unique) are the SQL function's, named the same.
    name: z
      .string()
      .max(200, 'must be at most 200 characters')
      .refine((v) => !v.includes('\u0000'), 'must not contain control characters'),
  })
  .strict();

/** Register the enroll route. */
export function addEnrollRoute(router: Router, deps: { pool: pg.Pool; logger: Logger; trustedProxies: TrustedProxies; version: string }): void {
  router.post(
    '/agent/enroll',
    async (req) => {
      const input = parseInput(body, jsonBody(req), 'body');
      const client = resolveClient(req.remoteAddress, req.headers, deps.trustedProxies);
      const throttleKey = `enroll:${client.address}`.slice(0, 64);
      const lockedUntil = await beginLoginAttempt(deps.pool, throttleKey);
      if (lockedUntil) {
        const retryAfter = Math.max(1, Math.ceil((lockedUntil.getTime() - Date.now()) / 1000));
        const res = errorResponse('rate_limited', `Too many failed enrollments from this address; retry in ${retryAfter} seconds`, { reason: 'throttled', retry_after_seconds: retryAfter });
        res.headers = { ...res.headers, 'retry-after': String(retryAfter) };
        return res;
      }
      if (!ENROLLMENT_TOKEN_RE.test(input.token)) throw new BastionError('enrollment_token_invalid', undefined, { details: { field: 'token', reason: 'invalid_format' } });
      const agent = await enrollAgent(deps.pool, input.token, input.name, throttleKey);
      deps.logger.info({ agent_id: agent.agent_id, name: agent.name, client: client.address }, 'agent enrolled');
      return json(201, { agent_id: agent.agent_id, agent_key: agent.agent_key, name: agent.name, hub_version: deps.version }, { 'cache-control': 'no-store' });
    },
    { maxBodyBytes: 16 * 1024 },
  );
}
