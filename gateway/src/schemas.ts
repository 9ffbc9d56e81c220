/*
 * JSON Schemas of the public API — the ONE source for validation and documentation.
 *
 * How the OpenAPI document is made (read this before adding a route):
 *   - Every fastify route is recorded when it is declared (an `onRoute` hook that buildApp installs
 *     before anything else, see src/openapi/registry.ts). GET /openapi.json is generated from those
 *     records, so the schemas a route validates its input with (`schema.params`, `querystring`,
 *     `headers`, `body`) ARE its documented input. Nothing is written twice.
 *   - Declare what a route answers in `schema.response` (`{ 200: SomeSchema, 204: noContent }`;
 *     non-JSON bodies as `{ 200: { description, content: { 'text/plain': { schema } } } }`). The error
 *     body (`errorResponses`: 4XX/5XX with `ErrorBody`, 429 with Retry-After) is added to every route
 *     automatically. Add `summary`/`description`/`tags` for the docs page (GET /docs).
 *   - Response schemas document and are checked by the test suites (test/harness.ts validates every
 *     response any gateway test receives against the served document and fails the test on a
 *     mismatch); they do not filter output (responses are serialised with JSON.stringify).
 *   - A schema object with a `title` (PascalCase) becomes `#/components/schemas/<title>`.
 *   - Routes inside the /api scope (and any scope given `installApiGuards`) get bearer security,
 *     rate limits and the body-size check. `schema: { hide: true }` keeps a route out of the document.
 *   - Every object forbids unknown properties (requests: refused with 400; responses: the tests fail).
 */

/** An id in a path: a non-empty string of at most 100 characters. */
export const id = { type: 'string', minLength: 1, maxLength: 100 } as const;

/** params builds a path-parameter schema for the given names. */
export function params(...names: string[]) {
  return {
    type: 'object',
    required: names,
    additionalProperties: false,
    properties: Object.fromEntries(names.map((n) => [n, id])),
  } as const;
}

/** A whole number given in a query string (types are not coerced, so it is matched as text). */
export function queryInt(max: number) {
  return { type: 'string', pattern: '^[0-9]{1,6}$', description: `1..${max}` } as const;
}

export const settings = {
  type: 'object',
  additionalProperties: false,
  properties: {
    temperature: { type: 'number', minimum: 0, maximum: 2 },
    max_tokens: { type: 'integer', minimum: 1, maximum: 1_000_000 },
    history_budget_tokens: { type: 'integer', minimum: 0, maximum: 10_000_000 },
    retrieval: {
      type: 'object',
      additionalProperties: false,
      properties: {
        top_k: { type: 'integer', minimum: 1, maximum: 50 },
        score_threshold: { type: 'number', minimum: -1, maximum: 1 },
        mode: { type: 'string', enum: ['dense', 'hybrid'] },
        rerank: { type: 'boolean' },
        query_rewrite: { type: 'boolean' },
      },
    },
  },
} as const;

/* ---------- Response schemas ---------- */

const str = { type: 'string' } as const;
const timestamp = { type: ['string', 'null'], description: 'RFC 3339 time' } as const;
const nullableStr = { type: ['string', 'null'] } as const;

/** obj makes a closed object schema: every listed property required unless named in `optional`. */
export function obj(title: string | undefined, properties: Record<string, object>, optional: string[] = [], description?: string) {
  return {
    ...(title ? { title } : {}),
    ...(description ? { description } : {}),
    type: 'object',
    additionalProperties: false,
    required: Object.keys(properties).filter((k) => !optional.includes(k)),
    properties,
  } as const;
}

/** The error object inside every error body and `error` WebSocket frame. */
export const ErrorObject = obj('ErrorObject', {
  code: { type: 'string', pattern: '^[a-z][a-z0-9_]*$', description: 'snake_case reason, e.g. invalid_argument, not_found, rate_limited' },
  message: { type: 'string', description: 'human-readable; never a stack trace or a secret' },
  details: { type: 'object', description: 'e.g. `fields` (field → problem) for invalid_argument, `retry_after_seconds` for rate_limited' },
});

/** The error body of every endpoint: `{"error":{"code","message","details"}}`. */
export const ErrorBody = obj('ErrorBody', { error: ErrorObject }, [], 'Every error, with the HTTP status matching its code.');

/** A 204 answer: no body. */
export const noContent = { description: 'No Content', type: 'null' } as const;

export const Settings = { ...settings, title: 'PersonaSettings' } as const;

export const Persona = obj('Persona', {
  id: str,
  name: str,
  system_prompt: str,
  background: { type: 'string', description: 'ingested into the persona’s knowledge, never into the prompt' },
  api_profile_id: nullableStr,
  settings: Settings,
  created_at: timestamp,
  updated_at: timestamp,
});

export const PersonaList = obj('PersonaList', { personas: { type: 'array', items: Persona }, next_page_token: { type: 'string', description: 'empty on the last page' } });

export const ApiProfile = obj(
  'ApiProfile',
  {
    id: str,
    name: str,
    provider: str,
    base_url: str,
    model: str,
    embedding_model: nullableStr,
    embedding_base_url: nullableStr,
    limits: obj(undefined, { max_concurrent_generations: { type: 'integer' }, requests_per_minute: { type: 'integer' } }, ['max_concurrent_generations', 'requests_per_minute']),
    has_api_key: { type: 'boolean' },
    api_key_fingerprint: { ...nullableStr, description: 'a short fingerprint of the stored key; the key itself is write-only' },
    created_at: timestamp,
    updated_at: timestamp,
  },
  [],
  'An LLM endpoint profile. `api_key` is write-only.',
);

export const ApiProfileList = obj('ApiProfileList', { api_profiles: { type: 'array', items: ApiProfile }, next_page_token: str });

export const Citation = obj('Citation', { source_id: str, title: str, url: str, chunk_id: str, score: { type: 'number' } }, ['url']);

export const Message = obj(
  'Message',
  {
    id: str,
    role: { type: 'string', enum: ['user', 'assistant'] },
    content: str,
    status: { type: 'string', enum: ['pending', 'streaming', 'completed', 'failed', 'cancelled'] },
    reply_id: str,
    reply_to: str,
    citations: { type: 'array', items: Citation },
    model: str,
    error: str,
    created_at: timestamp,
  },
  ['reply_id', 'reply_to', 'model', 'error'],
);

const sessionFields = { id: str, persona_id: str, title: str, created_at: timestamp };
export const Session = obj('Session', sessionFields);
export const SessionWithMessages = obj('SessionWithMessages', { ...sessionFields, messages: { type: 'array', items: Message, description: 'the most recent messages, oldest first' } });
export const SessionList = obj('SessionList', { sessions: { type: 'array', items: Session }, next_page_token: nullableStr });
export const MessagePage = obj('MessagePage', { messages: { type: 'array', items: Message }, has_more: { type: 'boolean' } });
export const MessageAccepted = obj('MessageAccepted', { message_id: str, reply_id: str }, [], 'The user message is durable when this answers.');
export const CancelResult = obj('CancelResult', { cancelled: { type: 'boolean' } });
export const WsToken = obj('WsToken', { ws_token: { type: 'string', description: 'single use, bound to the owner and session' }, expires_at: { type: 'string', description: 'at most 60 s ahead' } });

export const JobAccepted = obj('JobAccepted', { job_id: str });
export const IngestJob = obj(
  'IngestJob',
  {
    job_id: str,
    persona_id: str,
    status: { type: 'string', enum: ['queued', 'running', 'succeeded', 'failed'] },
    progress: obj(undefined, { chunks_done: { type: 'integer' }, chunks_total: { type: 'integer' } }),
    stage: {
      type: 'string',
      enum: ['queued', 'fetch', 'extract', 'chunk', 'embed', 'upsert', 'done'],
      description: 'where the job is, or where it failed',
    },
    error: str,
    source_id: str,
  },
  ['stage', 'error', 'source_id'],
);

export const ApiKey = obj('ApiKey', {
  id: str,
  name: str,
  prefix: { type: 'string', description: 'the first characters of the key, to tell keys apart' },
  created_at: timestamp,
  revoked_at: timestamp,
});
export const CreatedApiKey = obj(
  'CreatedApiKey',
  { ...ApiKey.properties, api_key: { type: 'string', description: 'the key itself: shown only in this answer, stored only as a digest' } },
  [],
  'A new API key; `api_key` is never shown again.',
);
export const ApiKeyList = obj('ApiKeyList', { api_keys: { type: 'array', items: ApiKey } });

/* ---------- WebSocket frames (documented under the /ws/sessions/{id} path as x-websocket) ---------- */

const frame = (title: string, type: string, properties: Record<string, object>, optional: string[] = []) => ({
  ...obj(title, { type: { const: type }, ...properties }, optional),
  additionalProperties: true,
});

export const ClientFrame = {
  title: 'ClientFrame',
  description: 'client → server text frames (JSON, at most 64 KiB)',
  oneOf: [
    obj('MessageFrame', { type: { const: 'message' }, content: { type: 'string', minLength: 1, maxLength: 32_000 }, client_id: { type: 'string', minLength: 1, maxLength: 100 } }, ['client_id']),
    obj('CancelFrame', { type: { const: 'cancel' }, reply_id: { type: 'string', minLength: 1, maxLength: 100 } }),
    obj('ResumeFrame', { type: { const: 'resume' }, last_seq: { type: 'integer', minimum: 0 } }),
    obj('PingFrame', { type: { const: 'ping' } }),
  ],
} as const;

const seq = { type: 'integer', minimum: 0, description: 'increases by one per event within a session' };
export const ServerFrame = {
  title: 'ServerFrame',
  description: 'server → client text frames (JSON)',
  oneOf: [
    frame('MessageAcceptedFrame', 'message.accepted', { message_id: str, reply_id: str, client_id: str }, ['client_id']),
    frame('ReplyDeltaFrame', 'reply.delta', { reply_id: str, seq, text: str }),
    frame('ReplyCompletedFrame', 'reply.completed', { reply_id: str, seq, content: str, citations: { type: 'array', items: Citation }, model: str }, ['model']),
    frame('ReplyFailedFrame', 'reply.failed', { reply_id: str, seq, error: { type: 'object', required: ['code', 'message'], properties: { code: str, message: str } } }),
    frame('ErrorFrame', 'error', { error: ErrorObject, client_id: str }, ['client_id']),
    frame('PongFrame', 'pong', {}),
  ],
} as const;
