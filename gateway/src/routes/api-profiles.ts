import type { FastifyInstance } from 'fastify';
import type { personaV1 } from '@chat/contracts';
import type { GatewayDeps } from '../deps.js';
import { ApiProfile, ApiProfileList, noContent, params, queryInt } from '../schemas.js';
import { intParam, ownerOf } from './util.js';

/** nullable lets a JSON Schema also accept null (a merge-patch "reset this field"). */
export function nullable<S extends object>(schema: S): S {
  const s = schema as { type?: string | string[]; enum?: unknown[] };
  return {
    ...schema,
    type: [...(Array.isArray(s.type) ? s.type : [s.type!]), 'null'],
    ...(s.enum ? { enum: [...s.enum, null] } : {}),
  } as S;
}

/** The LLM providers a profile may name (the persona service checks the same list). */
export const PROVIDERS = ['openai', 'openai_compatible', 'azure_openai', 'ollama', 'vllm'] as const;

/** An http(s) URL; the persona service checks it fully (parsable, no credentials). */
const httpUrl = { type: 'string', minLength: 8, maxLength: 2_000, pattern: '^[Hh][Tt][Tt][Pp][Ss]?://[^\\s]+$' } as const;
/** An API key: printable, no whitespace. Never echoed back, not even in validation errors. */
const apiKey = { type: 'string', minLength: 1, maxLength: 4_096, pattern: '^[\\x21-\\x7e]+$' } as const;
const limits = {
  type: 'object',
  additionalProperties: false,
  properties: {
    max_concurrent_generations: { type: 'integer', minimum: 1, maximum: 10_000 },
    requests_per_minute: { type: 'integer', minimum: 1, maximum: 1_000_000 },
  },
} as const;

const profileFields = {
  name: { type: 'string', minLength: 1, maxLength: 200 },
  provider: { type: 'string', enum: [...PROVIDERS] },
  base_url: httpUrl,
  model: { type: 'string', minLength: 1, maxLength: 200 },
  api_key: apiKey,
  embedding_model: { type: 'string', minLength: 1, maxLength: 200 },
  embedding_base_url: httpUrl,
  limits,
} as const;

interface LimitsJson {
  max_concurrent_generations?: number | null;
  requests_per_minute?: number | null;
}

interface ProfileBody {
  name?: string;
  provider?: string;
  base_url?: string;
  model?: string;
  api_key?: string | null;
  embedding_model?: string | null;
  embedding_base_url?: string | null;
  limits?: LimitsJson | null;
}

const iso = (d: Date | undefined) => (d ? d.toISOString() : null);

/** profileToJson renders a profile: the key only as has_api_key and its fingerprint. */
export function profileToJson(p: personaV1.ApiProfile | undefined) {
  if (!p) throw new Error('service answered without an API profile');
  const l = p.limits;
  return {
    id: p.id,
    name: p.name,
    provider: p.provider,
    base_url: p.baseUrl,
    model: p.model,
    embedding_model: p.embeddingModel ?? null,
    embedding_base_url: p.embeddingBaseUrl ?? null,
    limits: {
      ...(l?.maxConcurrentGenerations !== undefined ? { max_concurrent_generations: l.maxConcurrentGenerations } : {}),
      ...(l?.requestsPerMinute !== undefined ? { requests_per_minute: l.requestsPerMinute } : {}),
    },
    has_api_key: p.hasApiKey,
    api_key_fingerprint: p.apiKeyFingerprint || null,
    created_at: iso(p.createdAt),
    updated_at: iso(p.updatedAt),
  };
}

const limitsFromJson = (l: LimitsJson | null | undefined) =>
  l ? { maxConcurrentGenerations: l.max_concurrent_generations ?? undefined, requestsPerMinute: l.requests_per_minute ?? undefined } : undefined;

/** profileFromJson maps the JSON fields of a create or update body to the RPC's (null means unset). */
const profileFromJson = (body: ProfileBody) => ({
  name: body.name,
  provider: body.provider,
  baseUrl: body.base_url,
  model: body.model,
  apiKey: body.api_key ?? undefined,
  embeddingModel: body.embedding_model ?? undefined,
  embeddingBaseUrl: body.embedding_base_url ?? undefined,
  limits: limitsFromJson(body.limits),
});

/**
 * apiProfileRoutes: the owner's LLM endpoint profiles. api_key is write-only; PATCH is a JSON
 * merge patch (null removes api_key, embedding_model, embedding_base_url, limits or one limit).
 */
export function apiProfileRoutes(app: FastifyInstance, deps: GatewayDeps): void {
  app.post(
    '/api_profiles',
    {
      schema: {
        body: { type: 'object', required: ['name', 'provider', 'base_url', 'model'], additionalProperties: false, properties: profileFields },
        tags: ['api_profiles'],
        summary: 'Create an LLM endpoint profile (api_key is write-only)',
        response: { 201: ApiProfile },
      },
    },
    async (req, reply) => {
      const body = req.body as ProfileBody;
      const res = await deps.persona.createApiProfile({
        ownerId: ownerOf(req),
        ...profileFromJson(body),
      });
      return reply.code(201).send(profileToJson(res.profile));
    },
  );

  app.get(
    '/api_profiles',
    {
      schema: {
        querystring: { type: 'object', additionalProperties: false, properties: { page_size: queryInt(200), page_token: { type: 'string', maxLength: 500 } } },
        tags: ['api_profiles'],
        summary: 'List the owner’s API profiles',
        response: { 200: ApiProfileList },
      },
    },
    async (req) => {
      const q = req.query as { page_size?: string; page_token?: string };
      const res = await deps.persona.listApiProfiles({ ownerId: ownerOf(req), pageSize: intParam('page_size', q.page_size, 1, 200) ?? 50, pageToken: q.page_token ?? '' });
      return { api_profiles: res.profiles.map(profileToJson), next_page_token: res.nextPageToken };
    },
  );

  app.get('/api_profiles/:id', { schema: { tags: ['api_profiles'], summary: 'One API profile', params: params('id'), response: { 200: ApiProfile } } }, async (req) => {
    const { id } = req.params as { id: string };
    return profileToJson((await deps.persona.getApiProfile({ ownerId: ownerOf(req), id })).profile);
  });

  app.patch(
    '/api_profiles/:id',
    {
      schema: {
        params: params('id'),
        body: {
          type: 'object',
          additionalProperties: false,
          minProperties: 1,
          properties: {
            ...profileFields,
            api_key: nullable(apiKey),
            embedding_model: nullable(profileFields.embedding_model),
            embedding_base_url: nullable(httpUrl),
            limits: nullable({ ...limits, properties: { max_concurrent_generations: nullable(limits.properties.max_concurrent_generations), requests_per_minute: nullable(limits.properties.requests_per_minute) } }),
          },
        },
        tags: ['api_profiles'],
        summary: 'Change an API profile (JSON merge patch; null removes api_key, embedding fields or limits)',
        response: { 200: ApiProfile },
      },
    },
    async (req) => {
      const { id } = req.params as { id: string };
      const body = req.body as ProfileBody;
      const clearFields: string[] = [];
      if (body.api_key === null) clearFields.push('api_key');
      if (body.embedding_model === null) clearFields.push('embedding_model');
      if (body.embedding_base_url === null) clearFields.push('embedding_base_url');
      if (body.limits === null) clearFields.push('limits');
      if (body.limits?.max_concurrent_generations === null) clearFields.push('limits.max_concurrent_generations');
      if (body.limits?.requests_per_minute === null) clearFields.push('limits.requests_per_minute');
      const res = await deps.persona.updateApiProfile({
        ownerId: ownerOf(req),
        id,
        ...profileFromJson(body),
        clearFields,
      });
      return profileToJson(res.profile);
    },
  );

  app.delete('/api_profiles/:id', { schema: { tags: ['api_profiles'], summary: 'Delete an API profile (409 profile_in_use while personas name it)', params: params('id'), response: { 204: noContent } } }, async (req, reply) => {
    const { id } = req.params as { id: string };
    await deps.persona.deleteApiProfile({ ownerId: ownerOf(req), id });
    return reply.code(204).send();
  });
}
