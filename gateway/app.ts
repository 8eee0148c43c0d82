/**
 * The gateway: one uWebSockets.js app on one port for health, metrics, the
 * auth and REST routes, GraphQL over HTTP and WebSocket, Ruru, and the agent
 * socket with agent enrollment (gateway/agents/agent-hub.ts). {@link createGateway} builds the app
 * without listening, so tests and embedders choose the port (0 in tests).
 *
 * GraphQL's schema is introspected from the database in the background;
 * `ready()` resolves once it is built (the hub waits for it before saying it
 * is ready), and requests that arrive earlier wait for it.
 */
import './graphile-env.ts';
import { App, us_listen_socket_close, us_socket_local_port, type TemplatedApp, type us_listen_socket, type us_socket } from 'uWebSockets.js';
import type { Logger } from 'pino';
import { postgraphile, type PostGraphileInstance } from 'postgraphile';
import type { SecretKeyProvider } from '../engine/secrets/secret-key.ts';
import { LATENCY_BUCKETS, metrics as defaultMetrics, type MetricsRegistry } from '../core/metrics.ts';
import { authenticate } from './auth/authenticate.ts';
import { beginRequestTransaction } from './auth/request-transaction.ts';
import { NO_TRUSTED_PROXIES, resolveClient, type TrustedProxies } from './auth/client-address.ts';
import { originAllowed } from './auth/origin.ts';
import { addAuthRoutes } from './auth/routes.ts';
import { UwsGrafserv } from './grafserv-uws.ts';
import { addGraphQLWebSocket, type GraphQLWebSocket } from './graphql-ws.ts';
import { makeBastionPreset } from './graphql/preset.ts';
import { addHealthRoutes, type ReadinessDeps } from './health.ts';
import { Router } from './http-adapter.ts';
import { addMetricsRoute, addQueueDepthCollector } from './metrics-route.ts';
import { AgentHub, type AgentHubTiming } from './agents/agent-hub.ts';
import { mountApiRoutes, type ApiRoute } from './rest/api-route.ts';
import { REST_ROUTES } from './rest/routes.ts';

/** How long close() waits for requests in flight. */
const CLOSE_GRACE_MS = 5000;

/** Everything the gateway needs from the process that hosts it. */
export interface GatewayDeps extends ReadinessDeps {
  logger: Logger;
  /** Proxies whose X-Forwarded-For / X-Forwarded-Proto are believed (default: none). */
  trustedProxies?: TrustedProxies;
  /** Serve GraphQL at /graphql (default true). */
  graphql?: boolean;
  /** Serve the Ruru IDE at /graphiql for admins (default true). */
  graphiql?: boolean;
  /** Metrics registry served at /metrics (default: the process-wide one). */
  metrics?: MetricsRegistry;
  /** REST routes to mount (default: all of gateway/rest/routes.ts). */
  restRoutes?: readonly ApiRoute[];
  /** Seals secrets for the secret routes (absent: they answer secret_key_unavailable); also opens agents' WebDAV logins at delivery. */
  secretKeys?: SecretKeyProvider;
  /** Serve /agent/ws and /agent/enroll (default true). */
  agents?: boolean;
  /** Agent hub timing (tests shorten it). */
  agentTiming?: Partial<AgentHubTiming>;
}

/** A built gateway. */
export interface Gateway {
  readonly app: TemplatedApp;
  /** The HTTP routes (for docs and tests). */
  readonly router: Router;
  /** The agents' side of this gateway (undefined when agents are off). */
  readonly agents: AgentHub | undefined;
  /** Resolves when GraphQL's schema is built (at once when GraphQL is off); rejects when it cannot be. */
  ready(): Promise<void>;
  /** Start listening; resolves with the bound port (useful with port 0). */
  listen(host: string, port: number): Promise<number>;
  /** Stop listening, close every open connection and release GraphQL. */
  close(): Promise<void>;
}

/** Build the gateway app and its routes. */
export function createGateway(deps: GatewayDeps): Gateway {
  const app = App();
  const registry = deps.metrics ?? defaultMetrics;
  const trusted = deps.trustedProxies ?? NO_TRUSTED_PROXIES;
  const httpSeconds = registry.histogram('bastion_http_request_duration_seconds', 'HTTP request latency by method, route pattern and status.', ['method', 'route', 'status'], LATENCY_BUCKETS);
  const graphqlSeconds = registry.histogram('bastion_graphql_request_duration_seconds', 'GraphQL HTTP request latency by status.', ['status'], LATENCY_BUCKETS);
  const wsConnections = registry.gauge('bastion_websocket_connections', 'Open WebSocket connections by path.', ['path']);
  const logins = registry.counter('bastion_logins_total', 'Login attempts by outcome (success, failure, throttled).', ['outcome']);

  const router = new Router(deps.logger, { onResponse: (r) => httpSeconds.observe({ method: r.method, route: r.route, status: String(r.status) }, r.seconds) });
  addHealthRoutes(router, deps);
  addMetricsRoute(router, registry);
  const removeCollector = addQueueDepthCollector(registry, deps.pool, deps.logger);
  addAuthRoutes(router, { pool: deps.pool, logger: deps.logger, trustedProxies: trusted, onLogin: (outcome) => logins.inc({ outcome }) });
  mountApiRoutes(router, { pool: deps.pool, logger: deps.logger, trustedProxies: trusted, services: { secretKeys: deps.secretKeys } }, deps.restRoutes ?? REST_ROUTES);

  let pgl: PostGraphileInstance | undefined;
  let serv: UwsGrafserv | undefined;
  let ws: GraphQLWebSocket | undefined;
  let schemaReady: Promise<void> = Promise.resolve();
  if (deps.graphql ?? true) {
    const preset = makeBastionPreset({ pool: deps.pool, logger: deps.logger, graphiql: deps.graphiql ?? true, secretKeys: deps.secretKeys });
    const instance = postgraphile(preset);
    pgl = instance;
    const authenticateHeaders = (headers: Readonly<Record<string, string>>) => authenticate(deps.pool, headers);
    const grafserv = instance.createServ(
      (config) =>
        new UwsGrafserv(config, {
          logger: deps.logger,
          // Authentication and the operation's transaction in one round trip.
          authenticate: async (headers) => {
            const transaction = await beginRequestTransaction(deps.pool, headers, deps.logger);
            return { auth: transaction.auth, transaction };
          },
          isSecure: (headers, peer) => resolveClient(peer, headers, trusted).secure,
          onResponse: (r) => graphqlSeconds.observe({ status: String(r.status) }, r.seconds),
        }),
    );
    serv = grafserv;
    schemaReady = Promise.resolve(instance.getSchema()).then(
      () => undefined,
      (err: unknown) => {
        deps.logger.error({ err }, 'GraphQL schema could not be built; /graphql answers with errors until restart');
        throw err;
      },
    );
    // Nobody may be waiting on ready(); the failure is logged above.
    schemaReady.catch(() => {});
    app.any('/graphql', (res, req) => grafserv.handle(res, req));
    if (deps.graphiql ?? true) {
      app.get('/graphiql', (res, req) => grafserv.handle(res, req, { requireAdmin: true }));
      app.get('/ruru-static/*', (res, req) => grafserv.handle(res, req));
    }
    ws = addGraphQLWebSocket(app, '/graphql', grafserv, {
      logger: deps.logger,
      authenticate: authenticateHeaders,
      originAllowed: (headers, peer) => originAllowed(headers, resolveClient(peer, headers, trusted).secure),
      onConnectionChange: (delta) => wsConnections.inc({ path: '/graphql' }, delta),
    });
  }
  const agents = (deps.agents ?? true) ? new AgentHub({ pool: deps.pool, logger: deps.logger, version: deps.version, trustedProxies: trusted, secretKeys: deps.secretKeys, metrics: registry, timing: deps.agentTiming }) : undefined;
  agents?.mount(app, router);
  const agentsReady = agents ? agents.start() : Promise.resolve();
  agentsReady.catch((err: unknown) => deps.logger.error({ err }, 'the agent hub could not start; agents cannot connect until restart'));
  router.mount(app);

  let listenSocket: us_listen_socket | undefined;
  let closed: Promise<void> | undefined;
  return {
    app,
    router,
    agents,
    ready: () => Promise.all([schemaReady, agentsReady]).then(() => undefined),
    listen: (host, port) =>
      new Promise((resolve, reject) => {
        app.listen(host, port, (socket: us_listen_socket | false) => {
          if (!socket) {
            reject(new Error(`cannot listen on ${host}:${port} (address in use or not available)`));
            return;
          }
          listenSocket = socket;
          resolve(us_socket_local_port(socket as unknown as us_socket));
        });
      }),
    close: () =>
      (closed ??= (async () => {
        if (listenSocket) us_listen_socket_close(listenSocket);
        listenSocket = undefined;
        // Let requests already being handled finish (bounded), so none of
        // them meets a closed pool.
        const deadline = Date.now() + CLOSE_GRACE_MS;
        while ((router.inFlight > 0 || (serv?.inFlight ?? 0) > 0) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
        ws?.close();
        await agents?.stop();
        app.close();
        removeCollector();
        if (pgl) {
          await schemaReady.catch(() => {});
          // The LISTEN client of PostGraphile's subscriber belongs to our
          // pool; release it, or ending the pool would wait for it forever.
          const services = pgl.getResolvedPreset().pgServices ?? [];
          await Promise.resolve(pgl.release()).catch(() => {});
          for (const s of services) await Promise.resolve(s.release?.()).catch(() => {});
        }
      })()),
  };
}
