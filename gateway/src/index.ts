import { join } from 'node:path';
import { PersonaClient, RagClient, resolveTarget, SchedulerClient, SessionClient, targetsConfig } from '@chat/clients';
import type { ConfigOf } from '@chat/config';
import type { EventBus } from '@chat/events';
import type { Logger } from '@chat/logger';
import { defineModule } from '@chat/runtime';
import { ApiKeyAuth, DEV_OWNER, GrpcKeyStore, loadOrCreateDevKey, WsTokens, type KeyStore } from './auth.js';
import { gatewayConfig, parseListen } from './config.js';
import { GatewayLimits } from './limits.js';
import { startGateway } from './start.js';

export { ApiKeyAuth, DEV_OWNER, GrpcKeyStore, loadOrCreateDevKey, WsTokens, type KeyStore, type Principal, type WsTokenClaims, type WsTokenProblem } from './auth.js';
export { GatewayLimits, RateLimiter, StreamLimiter, type BucketSpec, type LimitOptions } from './limits.js';
export { installApiGuards } from './server.js';
export { ResponseChecker, buildDocument } from './openapi/index.js';
export { gatewayConfig, parseListen, type ApiKeyEntry } from './config.js';
export type { GatewayDeps, PersonaApi, RagApi, SchedulerApi, SessionApi } from './deps.js';
export { buildApp, DEFAULT_MAX_BODY_BYTES, type Gateway } from './server.js';
export { startGateway, type RunningGateway, type StartOptions } from './start.js';
export { SocketHub } from './ws/hub.js';
export { subscribeReplies } from './ws/replies.js';

/** The value of the gateway module. */
export interface GatewayValue {
  /** The bound http URL, e.g. http://127.0.0.1:8080. */
  url: string;
}

/**
 * buildAuth: keys from API_KEYS (or else the local dev key, created on first run) checked in memory,
 * and every other key looked up in the shared key store (the persona service).
 */
async function buildAuth(cfg: ConfigOf<typeof gatewayConfig>, logger: Logger, store: KeyStore): Promise<ApiKeyAuth> {
  const options = { store, cacheTtlMs: cfg.API_KEY_CACHE_TTL_MS };
  if (cfg.API_KEYS) return new ApiKeyAuth(cfg.API_KEYS, options);
  const file = cfg.DEV_API_KEY_FILE ?? join(cfg.DATA_DIR, 'dev-api-key');
  const { key, created } = await loadOrCreateDevKey(file);
  // Keys never go to logs, not even this local one: the line names the file that holds it.
  logger.info(
    `API_KEYS is unset: ${created ? 'created' : 'using'} the local dev API key in ${file} (owner "${DEV_OWNER}"); send its content in the Authorization header; set API_KEYS in production`,
  );
  return new ApiKeyAuth([{ owner: DEV_OWNER, key }], options);
}

/** gatewayModule serves the public REST + WebSocket API and fans reply events out to sockets. */
export const gatewayModule = defineModule<GatewayValue>({
  name: 'gateway',
  target: true,
  description: 'public REST + WebSocket API (auth, validation, reply streaming)',
  deps: ['bus'],
  after: ['persona', 'session', 'rag', 'scheduler'],
  config: [gatewayConfig, targetsConfig],
  async init(ctx) {
    const cfg = ctx.config(gatewayConfig);
    const bus = ctx.get<EventBus>('bus');
    const store = new GrpcKeyStore(resolveTarget(ctx, 'persona'));
    const auth = await buildAuth(cfg, ctx.logger, store);
    if (!cfg.WS_TOKEN_SECRET) ctx.logger.debug('WS_TOKEN_SECRET is unset: ws_tokens only work on this gateway process');
    const { host, port } = parseListen(cfg.GATEWAY_HTTP_LISTEN);
    const running = await startGateway({
      persona: new PersonaClient(resolveTarget(ctx, 'persona')),
      session: new SessionClient(resolveTarget(ctx, 'session')),
      rag: new RagClient(resolveTarget(ctx, 'rag')),
      scheduler: new SchedulerClient(resolveTarget(ctx, 'scheduler')),
      auth,
      tokens: new WsTokens(cfg.WS_TOKEN_SECRET, 60_000, Date.now, store),
      limits: new GatewayLimits({
        perKey: { perMinute: cfg.RATE_LIMIT_KEY_PER_MINUTE, burst: cfg.RATE_LIMIT_KEY_BURST },
        perSession: { perMinute: cfg.RATE_LIMIT_SESSION_PER_MINUTE, burst: cfg.RATE_LIMIT_SESSION_BURST },
        maxStreamsPerOwner: cfg.MAX_STREAMS_PER_OWNER,
      }),
      allowedOrigins: cfg.WS_ALLOWED_ORIGINS,
      adminOwners: cfg.ADMIN_OWNERS,
      logger: ctx.logger,
      maxBodyBytes: cfg.MAX_BODY_BYTES,
      bus,
      host,
      port,
    });
    ctx.logger.info('gateway listening', { url: running.url });
    return {
      value: { url: running.url },
      stop: async () => {
        await running.stop();
        store.close();
      },
      crashed: running.crashed,
    };
  },
});
