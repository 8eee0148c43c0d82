/**
 * REST routes for agents and enrollment tokens, over the functions of
 * sql/migrations/0007. Everyone reads agents; managing them and their
 * credentials is for admins. Keys and tokens are returned once, by the call
 * that creates them.
 *
 *   GET  /api/agents                              agents with online state (?all=true: also revoked)
 *   GET  /api/agents/:agent_id                    one agent and its open outbox messages
 *   PUT  /api/agents/:agent_id/name               {name}
 *   POST /api/agents/:agent_id/rotate-key         → {agent_id, agent_key} (shown once; live socket closed)
 *   POST /api/agents/:agent_id/revoke             key refused, socket closed, work in flight failed
 *   GET  /api/enrollment-tokens                   tokens (never the secret)
 *   POST /api/enrollment-tokens                   {ttl_seconds?, uses?, note?} → {id, token, expires_at, remaining_uses}
 *   POST /api/enrollment-tokens/:token_id/revoke
 */
import { z } from 'zod';
import { BastionError } from '../../core/errors.ts';
import { getAgent, listAgents } from '../../db/queries/agents.ts';
import { callFunctionRow, callFunctionRows, route, type ApiRoute } from './api-route.ts';
import { queryBoolean, uuid } from './input.ts';

const agentParam = z.object({ agent_id: uuid }).strict();
const tokenParam = z.object({ token_id: uuid }).strict();

/** Agent routes. */
export const agentRoutes: readonly ApiRoute[] = [
  route({
    method: 'get',
    path: '/api/agents',
    role: 'viewer',
    summary: 'List agents with online state, last seen, version and capabilities (?all=true also lists revoked ones)',
    query: z.object({ all: queryBoolean.optional() }).strict(),
    handle: async ({ db, query }) => ({ items: await listAgents(db, { includeRevoked: query.all === true }) }),
  }),
  route({
    method: 'get',
    path: '/api/agents/:agent_id',
    role: 'viewer',
    summary: 'One agent and its open outbox messages (work sent or waiting to be sent to it)',
    params: agentParam,
    handle: async ({ db, params }) => {
      const agent = await getAgent(db, params.agent_id);
      if (!agent) throw new BastionError('agent_not_found');
      const { rows } = await db.query(
        `select id, kind, queue, run_id, attempt, created_at, delivered_at, delivery_count, acked_at
           from bastion.agent_outbox where agent_id = $1 and completed_at is null order by created_at limit 200`,
        [params.agent_id],
      );
      return { agent, open_messages: rows };
    },
  }),
  route({
    method: 'put',
    path: '/api/agents/:agent_id/name',
    role: 'admin',
    summary: 'Rename an agent {name} (409 agent_name_taken, agent_revoked)',
    params: agentParam,
    body: z.object({ name: z.string().max(200) }).strict(),
    handle: async ({ db, params, body }) => ({ agent: await callFunctionRow(db, 'bastion.rename_agent', { agent_id: params.agent_id, name: body.name }) }),
  }),
  route({
    method: 'post',
    path: '/api/agents/:agent_id/rotate-key',
    role: 'admin',
    summary: 'Replace an agent\'s key: {agent_id, agent_key} shown once; the live socket is closed (give the key to the agent: bastion agent --replace-key)',
    params: agentParam,
    handle: async ({ db, params }) => callFunctionRow(db, 'bastion.rotate_agent_key', { agent_id: params.agent_id }),
  }),
  route({
    method: 'post',
    path: '/api/agents/:agent_id/revoke',
    role: 'admin',
    summary: 'Revoke an agent: its key is refused, its live socket closed at once, its work in flight failed',
    params: agentParam,
    handle: async ({ db, params }) => ({ agent: await callFunctionRow(db, 'bastion.revoke_agent', { agent_id: params.agent_id }) }),
  }),
  route({
    method: 'get',
    path: '/api/enrollment-tokens',
    role: 'admin',
    summary: 'List enrollment tokens (hint, uses left, expiry; never the token)',
    handle: async ({ db }) => ({ items: await callFunctionRows(db, 'bastion.enrollment_tokens', {}) }),
  }),
  route({
    method: 'post',
    path: '/api/enrollment-tokens',
    role: 'admin',
    summary: 'Create an enrollment token {ttl_seconds? (60–2592000, default 3600), uses? (1–1000, default 1), note?}; the token is shown once',
    status: 201,
    body: z
      .object({
        ttl_seconds: z.number().int().min(60).max(2_592_000).optional(),
        uses: z.number().int().min(1).max(1000).optional(),
        note: z.string().max(200).optional(),
      })
      .strict(),
    handle: async ({ db, body }) => callFunctionRow(db, 'bastion.create_enrollment_token', { ttl_seconds: body.ttl_seconds ?? 3600, uses: body.uses ?? 1, note: body.note ?? null }),
  }),
  route({
    method: 'post',
    path: '/api/enrollment-tokens/:token_id/revoke',
    role: 'admin',
    summary: 'Revoke an enrollment token (agents already enrolled keep working)',
    params: tokenParam,
    handle: async ({ db, params }) => ({ token: await callFunctionRow(db, 'bastion.revoke_enrollment_token', { token_id: params.token_id }) }),
  }),
];
