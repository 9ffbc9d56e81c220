import type { FastifyInstance } from 'fastify';
import { ClientFrame, ServerFrame } from '../schemas.js';
import { buildDocument, errorResponses } from './document.js';
import { docsPage } from './docs-page.js';
import type { RouteRegistry } from './registry.js';

export { buildDocument, errorResponses } from './document.js';
export { docsPage } from './docs-page.js';
export { RouteRegistry } from './registry.js';
export { ResponseChecker, type ObservedResponse } from './validate.js';

const DESCRIPTION = `Multi-persona chat with retrieval-augmented generation.

Auth: every /api and /v1 route needs "Authorization: Bearer <API key>". A key sees only its owner's
resources: another owner's id answers 404 exactly like an unknown one. Keys: API_KEYS, the local dev
key (DATA_DIR/dev-api-key), or POST /api/api_keys / the api-keys admin command.

Errors: always {"error":{"code","message","details"}} with the matching status (400 invalid_argument,
401 unauthenticated, 403, 404 not_found, 409, 413 too_large, 415 unsupported_media_type, 422,
429 rate_limited | too_many_streams with Retry-After, 503 unavailable, 504 deadline_exceeded).

Limits: a token bucket per API key and per session (429 with Retry-After), a body size limit (413),
and a cap on concurrent streams per owner.

WebSocket: POST /api/sessions/{id}/ws_token, then GET /ws/sessions/{id}?ws_token=… (single use,
at most 60 s to connect, bound to the owner and session). Frames: see x-websocket of that path.`;

/** The WebSocket upgrade, which is not a fastify route, documented by hand (its frames as schemas). */
const WS_PATH = {
  '/ws/sessions/{id}': {
    get: {
      operationId: 'openSessionSocket',
      tags: ['websocket'],
      summary: 'Open the session’s WebSocket (HTTP upgrade)',
      description:
        'Refused before upgrading (plain HTTP error body) for a missing, expired, reused, forged or other-session ws_token (401), an Origin outside WS_ALLOWED_ORIGINS (403), too many streams of the owner (429) or a shutting-down gateway (503). Client frames larger than 64 KiB close the socket with 1009; a client too slow to read is closed with 1013.',
      parameters: [
        { name: 'id', in: 'path', required: true, schema: { type: 'string', minLength: 1, maxLength: 100 } },
        { name: 'ws_token', in: 'query', required: true, description: 'from POST /api/sessions/{id}/ws_token; never logged', schema: { type: 'string' } },
        { name: 'last_seq', in: 'query', required: false, description: 'resume: replay the reply events after this seq first', schema: { type: 'string', pattern: '^[0-9]{1,15}$' } },
      ],
      responses: { '101': { description: 'Switching Protocols: the socket is open' }, ...errorResponses(false) },
      security: [],
      'x-websocket': { client: ClientFrame, server: ServerFrame },
    },
  },
};

/**
 * installOpenApi serves GET /openapi.json (the document built from every recorded route) and
 * GET /docs (a self-contained HTML page of it). The document is built once the app is ready.
 */
export function installOpenApi(app: FastifyInstance, registry: RouteRegistry, version = '1.0.0'): { document: () => Record<string, unknown> } {
  let doc: Record<string, unknown> | undefined;
  let html: string | undefined;
  const document = () =>
    (doc ??= buildDocument(registry.routes, { title: 'persona-chat-mesh public API', version, description: DESCRIPTION, extraPaths: WS_PATH }));
  app.get(
    '/openapi.json',
    { schema: { tags: ['service'], summary: 'This OpenAPI 3.1 document', response: { 200: { description: 'The OpenAPI document', type: 'object', required: ['openapi', 'paths'] } } } },
    async () => document(),
  );
  app.get(
    '/docs',
    { schema: { tags: ['service'], summary: 'Human-readable API reference (HTML, self-contained)', response: { 200: { description: 'HTML page', content: { 'text/html': { schema: { type: 'string' } } } } } } },
    async (_req, reply) => reply.type('text/html; charset=utf-8').send((html ??= docsPage(document() as Record<string, any>))),
  );
  // Reachable from hooks (the test suites check every response against it): app.openapiDocument().
  app.decorate('openapiDocument', document);
  return { document };
}
