import { randomUUID } from 'node:crypto';
import Fastify, { type FastifyInstance, type FastifyReply } from 'fastify';
import { AppError, Code, errorBody, httpStatus } from '@chat/errors';
import { newTraceId, withContext } from '@chat/logger';
import { METRICS_CONTENT_TYPE, renderMetrics } from '@chat/metrics';
import type { WebSocketServer } from 'ws';
import type { GatewayDeps } from './deps.js';
import { setKeyId, setOwner } from './routes/util.js';
import { GatewayLimits } from './limits.js';
import { installOpenApi, RouteRegistry } from './openapi/index.js';
import { ErrorBody, obj } from './schemas.js';
import { apiKeyRoutes } from './routes/api-keys.js';
import { adminRoutes } from './routes/admin.js';
import { toHttpAppError } from './errors.js';
import { apiProfileRoutes } from './routes/api-profiles.js';
import { knowledgeRoutes } from './routes/knowledge.js';
import { personaRoutes } from './routes/personas.js';
import { sessionRoutes } from './routes/sessions.js';
import { SocketHub } from './ws/hub.js';
import { attachWebSocket } from './ws/upgrade.js';
import { openaiRoutes } from './openai/routes.js';
import { attachConnect } from './connect/mount.js';


export const DEFAULT_MAX_BODY_BYTES = 1024 * 1024;

/** Gateway is a built (not yet listening) gateway: the fastify app plus its WebSocket side. */
export interface Gateway {
  app: FastifyInstance;
  hub: SocketHub;
  wss: WebSocketServer;
  /** Marks the gateway ready (GET /readyz answers 200). */
  setReady(ready: boolean): void;
  /** Stops taking new requests and WebSocket upgrades (both answer 503). */
  stopAccepting(): void;
}

/** Oversized bodies up to this size are read and dropped so the client gets its 413. */
const DRAIN_LIMIT_BYTES = 64 * 1024 * 1024;

/** drain consumes a request body without keeping it. */
function drain(req: NodeJS.ReadableStream): Promise<void> {
  return new Promise((resolve) => {
    req.on('end', resolve).on('error', () => resolve()).on('close', () => resolve());
    req.resume();
  });
}

/**
 * installApiGuards makes a scope (a registered plugin: /api, /v1, …) authenticated and limited:
 * every route in it is documented with bearer security, and every request first needs a valid
 * API key (401; the owner is then `ownerOf(req)`), passes the key's rate limit (429 with
 * Retry-After) and declares a body within MAX_BODY_BYTES (413). Call it first inside the scope.
 */
export function installApiGuards(scope: FastifyInstance, deps: GatewayDeps, maxBodyBytes = deps.maxBodyBytes ?? DEFAULT_MAX_BODY_BYTES): void {
  scope.addHook('onRoute', (route) => {
    route.schema = { ...route.schema, security: (route.schema as { security?: unknown } | undefined)?.security ?? [{ bearer: [] }] } as typeof route.schema;
  });
  scope.addHook('onRequest', async (req, reply) => {
    const principal = await deps.auth.authenticate(req.headers.authorization);
    setOwner(req, principal.owner);
    setKeyId(req, principal.keyId);
    deps.limits?.perKey.check(principal.keyId, 'API key');
    const declared = Number(req.headers['content-length'] ?? 0);
    if (declared > maxBodyBytes) {
      // Only after auth: read and drop a moderately oversized body before answering 413, or a
      // client still writing it sees a broken pipe instead of the answer. Beyond the bound, close.
      if (declared <= DRAIN_LIMIT_BYTES) await drain(req.raw);
      else reply.header('connection', 'close');
      throw AppError.tooLarge(`the request body is larger than ${maxBodyBytes} bytes`, maxBodyBytes);
    }
  });
}

/**
 * buildApp makes the public REST + WebSocket API over the given service clients (real or fake).
 * Every error — validation, body parsing, services, bugs — is rendered by one error handler as
 * `{"error":{"code","message","details"}}` with httpStatus/errorBody of @chat/errors.
 */
export function buildApp(given: GatewayDeps): Gateway {
  const deps: GatewayDeps = { ...given, limits: given.limits ?? new GatewayLimits() };
  const limits = deps.limits!;
  const maxBodyBytes = deps.maxBodyBytes ?? DEFAULT_MAX_BODY_BYTES;
  const { logger } = deps;
  let ready = false;
  let accepting = true;

  const app = Fastify({
    logger: false,
    bodyLimit: maxBodyBytes,
    genReqId: () => randomUUID(),
    routerOptions: { maxParamLength: 100 },
    // Router-level failures (bad URL encoding, over-long ids) use the same error body.
    frameworkErrors: (err, req, reply) => {
      const appErr =
        err.code === 'FST_ERR_MAX_PARAM_LENGTH'
          ? AppError.invalid('a path parameter is longer than 100 characters', { '(path)': 'must be at most 100 characters' })
          : err.code === 'FST_ERR_BAD_URL'
            ? AppError.invalid('the URL is malformed')
            : toHttpAppError(err, maxBodyBytes);
      void req;
      void (reply as unknown as FastifyReply).code(httpStatus(appErr)).send(errorBody(appErr));
    },
    return503OnClosing: true,
    // Reject unknown fields and wrong types instead of silently dropping or coercing them.
    ajv: { customOptions: { removeAdditional: false, coerceTypes: false, allErrors: false } },
  });

  // Every route is recorded as it is declared: GET /openapi.json is built from these records (see
  // the comment at the top of schemas.ts). This must stay the first thing added to the app.
  const registry = new RouteRegistry().attach(app);
  // Response schemas document (and the tests check) what a route answers; they never filter it.
  app.setSerializerCompiler(() => (data) => JSON.stringify(data));

  // Only JSON bodies. An empty body is "no body" (for body-less POSTs sent with a JSON content type);
  // routes that need one reject it in validation. Prototype poisoning is refused.
  app.removeAllContentTypeParsers();
  const jsonParser = app.getDefaultJsonParser('error', 'error');
  app.addContentTypeParser('application/json', { parseAs: 'string' }, (req, body, done) => {
    const text = typeof body === 'string' ? body : body.toString('utf8');
    if (text.trim() === '') return done(null, undefined);
    jsonParser(req, text, done);
  });

  app.decorateRequest('ownerId', '');

  app.addHook('onRequest', async (req, reply) => {
    reply.header('x-request-id', req.id);
    if (!accepting) throw AppError.unavailable('the gateway is shutting down');
  });
  // Carry a trace id through the handler into gRPC calls (runs after body parsing).
  app.addHook('preHandler', (req, _reply, done) => {
    withContext({ traceId: newTraceId(), requestId: req.id }, done);
  });
  // The access log: the route pattern (never the raw URL, which may carry a query), never headers.
  app.addHook('onResponse', async (req, reply) => {
    logger.info('request', {
      method: req.method,
      route: req.routeOptions.url ?? 'unmatched',
      status: reply.statusCode,
      duration_ms: Math.round(reply.elapsedTime * 100) / 100,
      request_id: req.id,
    });
  });

  app.setErrorHandler((err, req, reply) => {
    const appErr = toHttpAppError(err, maxBodyBytes);
    const status = httpStatus(appErr);
    if (status >= 500) {
      logger.error('request failed', { method: req.method, route: req.routeOptions.url ?? 'unmatched', request_id: req.id, status, err: appErr.cause ?? appErr });
    }
    if (status === 401) reply.header('www-authenticate', 'Bearer');
    const retryAfter = (appErr.details as { retry_after_seconds?: unknown } | undefined)?.retry_after_seconds;
    if (status === 429 && typeof retryAfter === 'number') reply.header('retry-after', String(retryAfter));
    return reply.code(status).send(errorBody(appErr));
  });

  app.setNotFoundHandler((req, reply) => {
    const path = req.url.split('?')[0] ?? '/';
    return reply.code(404).send(errorBody(new AppError(Code.NotFound, `no route ${req.method} ${path}`, { reason: 'not_found', details: { method: req.method, path } })));
  });

  installOpenApi(app, registry);
  app.get('/healthz', { schema: { tags: ['service'], summary: 'Liveness', response: { 200: obj('Health', { status: { const: 'ok' } }) } } }, async () => ({ status: 'ok' }));
  // Prometheus text exposition of this process's metrics (every component running in it); no auth,
  // like /healthz: bind the gateway (or firewall /metrics) accordingly.
  app.get(
    '/metrics',
    { schema: { tags: ['service'], summary: 'Prometheus metrics of this process', response: { 200: { description: 'Prometheus text format 0.0.4', content: { 'text/plain': { schema: { type: 'string' } } } } } } },
    async (_req, reply) => reply.type(METRICS_CONTENT_TYPE).send(await renderMetrics()),
  );
  app.get(
    '/readyz',
    { schema: { tags: ['service'], summary: 'Readiness (503 while starting or draining)', response: { 200: obj('Ready', { status: { const: 'ready' } }), 503: ErrorBody } } },
    async (_req, reply) => {
      if (!ready || !accepting) return reply.code(503).send(errorBody(AppError.unavailable('not ready')));
      return { status: 'ready' };
    },
  );

  void app.register(
    async (api) => {
      installApiGuards(api, deps, maxBodyBytes);
      // Routes without query parameters refuse any (a query is never silently ignored).
      api.addHook('onRoute', (route) => {
        route.schema = { ...route.schema, querystring: route.schema?.querystring ?? { type: 'object', additionalProperties: false, properties: {} } };
      });
      personaRoutes(api, deps);
      knowledgeRoutes(api, deps);
      apiProfileRoutes(api, deps);
      sessionRoutes(api, deps);
      apiKeyRoutes(api, deps);
      adminRoutes(api, deps);
    },
    { prefix: '/api' },
  );

  const hub = new SocketHub({
    logger,
    maxBufferedBytes: deps.maxBufferedBytes ?? 1024 * 1024,
    heartbeatMs: deps.heartbeatMs ?? 30_000,
  });
  const wss = attachWebSocket(app.server, {
    session: deps.session,
    scheduler: deps.scheduler,
    tokens: deps.tokens,
    hub,
    logger,
    accepting: () => accepting,
    limits,
    allowedOrigins: deps.allowedOrigins,
  });
  void app.register(async (v1) => openaiRoutes(v1, deps, hub), { prefix: '/v1' });
  attachConnect(app, deps, hub, () => accepting);
  // Last: test hooks (e.g. the OpenAPI response check) see every route.
  deps.decorate?.(app);

  return {
    app,
    hub,
    wss,
    setReady: (r) => {
      ready = r;
    },
    stopAccepting: () => {
      accepting = false;
    },
  };
}
