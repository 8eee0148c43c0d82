/**
 * Every REST route of the gateway, in one list (docs/api.md documents them
 * in the same order). Each module groups the routes of one resource.
 */
import { agentRoutes } from './agent-routes.ts';
import type { ApiRoute } from './api-route.ts';
import { cleanupRoutes } from './cleanup-routes.ts';
import { jobRoutes } from './job-routes.ts';
import { retentionRoutes } from './retention-routes.ts';
import { secretRoutes } from './secret-routes.ts';
import { snapshotRoutes } from './snapshot-routes.ts';
import { userRoutes } from './user-routes.ts';

/** All REST routes. */
export const REST_ROUTES: readonly ApiRoute[] = [...jobRoutes, ...snapshotRoutes, ...retentionRoutes, ...cleanupRoutes, ...secretRoutes, ...agentRoutes, ...userRoutes];
