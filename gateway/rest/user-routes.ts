/**
 * REST routes for users and API tokens (admin), over the functions of
 * sql/migrations/0002. Passwords are hashed here before SQL sees them.
 */
import { z } from 'zod';
import { CREATE_USER_FN, SET_USER_PASSWORD_FN, createUser, getUser, listUsers, requireExecute, setUserPassword } from '../../db/queries/users.ts';
import { BastionError } from '../../core/errors.ts';
import { checkPassword, hashPassword } from '../auth/password.ts';
import { callFunctionRow, callFunctionRows, route, type ApiRoute } from './api-route.ts';
import { uuid } from './input.ts';

const role = z.enum(['viewer', 'operator', 'admin']);
const userParam = z.object({ user_id: uuid }).strict();
const tokenParam = z.object({ token_id: uuid }).strict();

/** Users and tokens. */
export const userRoutes: readonly ApiRoute[] = [
  route({
    method: 'get',
    path: '/api/users',
    role: 'viewer',
    summary: 'List users (admins see everyone, others only themselves)',
    handle: async ({ db }) => ({ items: await listUsers(db) }),
  }),
  route({
    method: 'post',
    path: '/api/users',
    role: 'admin',
    summary: 'Create a user {username, role, password}',
    status: 201,
    body: z.object({ username: z.string().max(200), role, password: z.string() }).strict(),
    handle: async ({ db, body }) => {
      await requireExecute(db, CREATE_USER_FN);
      checkPassword(body.password);
      const id = await createUser(db, body.username, body.role, await hashPassword(body.password));
      return { user: await getUser(db, id) };
    },
  }),
  route({
    method: 'get',
    path: '/api/users/:user_id',
    role: 'viewer',
    summary: 'One user (yourself unless admin)',
    params: userParam,
    handle: async ({ db, params }) => {
      const user = await getUser(db, params.user_id);
      if (!user) throw new BastionError('user_not_found');
      return { user };
    },
  }),
  route({
    method: 'put',
    path: '/api/users/:user_id/role',
    role: 'admin',
    summary: 'Change a user\'s role {role}',
    params: userParam,
    body: z.object({ role }).strict(),
    handle: async ({ db, params, body }) => ({ user: await callFunctionRow(db, 'bastion.set_user_role', { user_id: params.user_id, role: body.role }) }),
  }),
  route({
    method: 'post',
    path: '/api/users/:user_id/disable',
    role: 'admin',
    summary: 'Disable a user: sessions end and tokens are revoked at once',
    params: userParam,
    handle: async ({ db, params }) => ({ user: await callFunctionRow(db, 'bastion.disable_user', { user_id: params.user_id }) }),
  }),
  route({
    method: 'post',
    path: '/api/users/:user_id/enable',
    role: 'admin',
    summary: 'Enable a disabled user',
    params: userParam,
    handle: async ({ db, params }) => ({ user: await callFunctionRow(db, 'bastion.enable_user', { user_id: params.user_id }) }),
  }),
  route({
    method: 'post',
    path: '/api/users/:user_id/password',
    role: 'admin',
    summary: 'Reset a user\'s password {password}; their sessions end',
    params: userParam,
    body: z.object({ password: z.string() }).strict(),
    handle: async ({ db, params, body }) => {
      await requireExecute(db, SET_USER_PASSWORD_FN);
      checkPassword(body.password);
      await setUserPassword(db, params.user_id, await hashPassword(body.password));
      return undefined;
    },
  }),
  route({
    method: 'get',
    path: '/api/tokens',
    role: 'admin',
    summary: 'List API tokens (never the secret)',
    handle: async ({ db }) => ({ items: await callFunctionRows(db, 'bastion.api_tokens', {}) }),
  }),
  route({
    method: 'post',
    path: '/api/tokens',
    role: 'admin',
    summary: 'Create an API token {name, role, expires_at?, user_id?}; the token is in this answer only',
    status: 201,
    body: z
      .object({
        name: z.string().max(200),
        role,
        expires_at: z.iso.datetime({ offset: true }).nullish(),
        user_id: uuid.nullish(),
      })
      .strict(),
    handle: async ({ db, body }) => ({
      token: await callFunctionRow(db, 'bastion.create_api_token', { name: body.name, role: body.role, expires_at: body.expires_at ?? null, user_id: body.user_id ?? null }),
    }),
  }),
  route({
    method: 'post',
    path: '/api/tokens/:token_id/revoke',
    role: 'admin',
    summary: 'Revoke an API token (refused from the next request on)',
    params: tokenParam,
    handle: async ({ db, params }) => ({ token: await callFunctionRow(db, 'bastion.revoke_api_token', { token_id: params.token_id }) }),
  }),
];
