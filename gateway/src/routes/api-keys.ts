import type { FastifyInstance } from 'fastify';
import type { personaV1 } from '@chat/contracts';
import { AppError } from '@chat/errors';
import type { GatewayDeps } from '../deps.js';
import { ApiKeyList, CreatedApiKey, noContent, obj, params } from '../schemas.js';
import { ownerOf } from './util.js';

const iso = (d: Date | undefined) => (d ? d.toISOString() : null);

/** apiKeyToJson renders a key's description: never the key or its digest. */
export function apiKeyToJson(k: personaV1.ApiKey | undefined) {
  if (!k) throw new Error('service answered without an API key');
  return { id: k.id, name: k.name, prefix: k.prefix, created_at: iso(k.createdAt), revoked_at: iso(k.revokedAt) };
}

/**
 * apiKeyRoutes: the caller's owner's API keys in the shared key store. A new key is shown once;
 * lists never show secrets; DELETE revokes (the key stops working at once on this gateway, within
 * API_KEY_CACHE_TTL_MS on others). Keys from API_KEYS and the dev key are configuration, not listed.
 */
export function apiKeyRoutes(app: FastifyInstance, deps: GatewayDeps): void {
  const store = () => {
    if (!deps.auth.store) throw AppError.unavailable('this gateway has no key store (only configured keys)');
    return deps.auth.store;
  };

  app.post(
    '/api_keys',
    {
      schema: {
        tags: ['api_keys'],
        summary: 'Create another API key for the caller’s owner (the key is shown only in this answer)',
        body: obj(undefined, { name: { type: 'string', minLength: 1, maxLength: 100 } }, ['name']),
        response: { 201: CreatedApiKey },
      },
    },
    async (req, reply) => {
      const body = (req.body ?? {}) as { name?: string };
      const res = await store().createApiKey({ ownerId: ownerOf(req), name: body.name ?? 'key' });
      return reply.code(201).send({ ...apiKeyToJson(res.apiKey), api_key: res.secret });
    },
  );

  app.get('/api_keys', { schema: { tags: ['api_keys'], summary: 'List the owner’s stored API keys (no secrets)', response: { 200: ApiKeyList } } }, async (req) => {
    const res = await store().listApiKeys({ ownerId: ownerOf(req) });
    return { api_keys: res.apiKeys.map(apiKeyToJson) };
  });

  app.delete(
    '/api_keys/:id',
    { schema: { tags: ['api_keys'], summary: 'Revoke one of the owner’s API keys (idempotent)', params: params('id'), response: { 204: noContent } } },
    async (req, reply) => {
      const { id } = req.params as { id: string };
      await store().revokeApiKey({ ownerId: ownerOf(req), id });
      deps.auth.forget(id);
      return reply.code(204).send();
    },
  );
}
