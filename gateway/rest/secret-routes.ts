/**
 * REST routes for node-scoped secrets (admin). The plaintext is sealed here
 * with the hub's secret key (engine/secrets) before bastion.put_secret sees
 * it; lists show names and dates, never values.
 *
 *   GET    /api/secrets                                   every secret's name, node, kind, dates
 *   PUT    /api/secrets/webdav/:name                      {username, password} for the hub
 *   PUT    /api/nodes/:node_id/secrets/webdav/:name       {username, password} for a node
 *   DELETE /api/nodes/:node_id/secrets/:kind/:name
 */
import { z } from 'zod';
import { BastionError } from '../../core/errors.ts';
import { isNodeId } from '../../core/ids.ts';
import { requireExecute } from '../../db/queries/users.ts';
import { putWebdavSecret } from '../../engine/secrets/secret-store.ts';
import { callFunction, callFunctionRows, route, type ApiContext, type ApiRoute } from './api-route.ts';

const name = z.string().min(1).max(200);
const nodeId = z.string().max(64).refine(isNodeId, "must be 'hub' or an agent UUID");
const credentials = z.object({ username: z.string().max(1024), password: z.string().max(4096) }).strict();

async function putWebdav(ctx: ApiContext<{ node_id: string; name: string }, unknown, z.output<typeof credentials>>) {
  await requireExecute(ctx.db, 'bastion.put_secret(text, bastion.secret_kind, text, text, bytea, bytea)');
  if (!ctx.services.secretKeys) throw new BastionError('secret_key_unavailable');
  const created = await putWebdavSecret(ctx.db, ctx.services.secretKeys, ctx.params.node_id, ctx.params.name, ctx.body);
  return { node_id: ctx.params.node_id, kind: 'webdav', name: ctx.params.name, created };
}

/** Secret routes. */
export const secretRoutes: readonly ApiRoute[] = [
  route({
    method: 'get',
    path: '/api/secrets',
    role: 'admin',
    summary: 'List secrets (node, kind, name, key id, dates; never the value)',
    handle: async ({ db }) => ({ items: await callFunctionRows(db, 'bastion.list_secrets', {}) }),
  }),
  route({
    method: 'put',
    path: '/api/secrets/webdav/:name',
    role: 'admin',
    summary: 'Store WebDAV credentials {username, password} for the hub (created: true when new)',
    params: z.object({ name }).strict(),
    body: credentials,
    handle: (ctx) => putWebdav({ ...ctx, params: { node_id: 'hub', name: ctx.params.name } }),
  }),
  route({
    method: 'put',
    path: '/api/nodes/:node_id/secrets/webdav/:name',
    role: 'admin',
    summary: 'Store WebDAV credentials {username, password} for a node',
    params: z.object({ node_id: nodeId, name }).strict(),
    body: credentials,
    handle: (ctx) => putWebdav(ctx),
  }),
  route({
    method: 'del',
    path: '/api/nodes/:node_id/secrets/:kind/:name',
    role: 'admin',
    summary: 'Delete a secret (404 secret_not_found)',
    params: z.object({ node_id: nodeId, kind: z.enum(['webdav', 'backup_age_identity']), name }).strict(),
    handle: async ({ db, params }) => {
      await callFunction(db, 'bastion.delete_secret', { node_id: params.node_id, kind: params.kind, name: params.name });
      return undefined;
    },
  }),
];
