import { isDeepStrictEqual } from 'node:util';
import type { RouteOptions } from 'fastify';
import { ClientFrame, ErrorBody, ServerFrame } from '../schemas.js';

/* Builds the OpenAPI 3.1 document from the recorded routes (see the comment at the top of schemas.ts). */

type Json = Record<string, unknown>;

export interface DocumentOptions {
  title: string;
  version: string;
  description: string;
  /** Paths that are not fastify routes (the WebSocket upgrade). */
  extraPaths?: Record<string, Json>;
}

const STATUS_TEXT: Record<string, string> = {
  '200': 'OK',
  '201': 'Created',
  '202': 'Accepted',
  '204': 'No Content',
  '4XX': 'Client error: the error body (400 invalid_argument, 401 unauthenticated, 403, 404 not_found, 409, 413 too_large, 415 unsupported_media_type, 422, 429 rate_limited)',
  '5XX': 'Server error: the error body (500 internal, 503 unavailable, 504 deadline_exceeded)',
};

const ref = (name: string) => ({ $ref: `#/components/schemas/${name}` });

const defaultErrorContent = { 'application/json': { schema: ErrorBody } };

/**
 * The error responses every route documents (added unless the route names the status itself). A
 * route with an error shape of its own (its `4XX`, e.g. OpenAI's under /v1) gets it for 401/429 too.
 */
export function errorResponses(secured: boolean, ownErrorContent?: unknown): Json {
  const errorContent = ownErrorContent ?? defaultErrorContent;
  return {
    ...(secured
      ? {
          '401': { description: 'Missing or invalid API key (`WWW-Authenticate: Bearer`)', content: errorContent },
          '429': {
            description: 'Rate limited (per API key, per session) or too many concurrent streams',
            headers: { 'Retry-After': { description: 'seconds to wait before retrying', schema: { type: 'integer', minimum: 1 } } },
            content: errorContent,
          },
        }
      : {}),
    '4XX': { description: STATUS_TEXT['4XX'], content: errorContent },
    '5XX': { description: STATUS_TEXT['5XX'], content: errorContent },
  };
}

function responseObject(code: string, r: Json): Json {
  const description = (r.description as string | undefined) ?? STATUS_TEXT[code] ?? 'Response';
  if (r.content && typeof r.content === 'object') {
    return { description, content: r.content, ...(r.headers ? { headers: r.headers } : {}) };
  }
  if (r.type === 'null') return { description };
  return { description, content: { 'application/json': { schema: r } } };
}

function parameters(where: 'path' | 'query' | 'header', schema: Json | undefined): Json[] {
  if (!schema || typeof schema.properties !== 'object') return [];
  const required = new Set((schema.required as string[] | undefined) ?? []);
  return Object.entries(schema.properties as Record<string, Json>).map(([name, s]) => {
    const { description, ...rest } = s;
    return { name, in: where, required: where === 'path' || required.has(name), ...(description ? { description } : {}), schema: rest };
  });
}

const camel = (s: string) => s.replace(/[^A-Za-z0-9]+(.)?/g, (_m, c: string | undefined) => (c ? c.toUpperCase() : ''));

function operation(method: string, path: string, route: RouteOptions): Json {
  const schema = (route.schema ?? {}) as Json;
  const secured = Array.isArray(schema.security) && (schema.security as unknown[]).length > 0;
  const responses: Json = {};
  for (const [code, r] of Object.entries((schema.response as Record<string, Json> | undefined) ?? {})) responses[code.toUpperCase()] = responseObject(code.toUpperCase(), r);
  const own = (responses['4XX'] as Json | undefined)?.content;
  for (const [code, r] of Object.entries(errorResponses(secured, own))) responses[code] ??= r;
  const segments = path.split('/').filter((s) => s && !s.startsWith('{'));
  const op: Json = {
    operationId: (schema.operationId as string | undefined) ?? camel(`${method.toLowerCase()} ${path.replace(/[{}]/g, '')}`),
    tags: (schema.tags as string[] | undefined) ?? [segments[1] ?? segments[0] ?? 'service'],
    ...(schema.summary ? { summary: schema.summary } : {}),
    ...(schema.description ? { description: schema.description } : {}),
    parameters: [...parameters('path', schema.params as Json), ...parameters('query', schema.querystring as Json), ...parameters('header', schema.headers as Json)],
    ...(schema.body ? { requestBody: { required: true, content: { 'application/json': { schema: schema.body } } } } : {}),
    responses,
    ...(secured ? { security: schema.security } : { security: [] }),
  };
  if ((op.parameters as unknown[]).length === 0) delete op.parameters;
  return op;
}

/**
 * liftTitled moves every schema object with a PascalCase `title` into components.schemas and puts a
 * $ref in its place. Two different schemas with one title are a bug (thrown).
 */
function liftTitled(node: unknown, components: Record<string, unknown>, top = true): unknown {
  if (Array.isArray(node)) return node.map((n) => liftTitled(n, components, false));
  if (!node || typeof node !== 'object') return node;
  const o = node as Json;
  const out: Json = {};
  for (const [k, v] of Object.entries(o)) out[k] = k === 'examples' || k === 'const' || k === 'enum' ? v : liftTitled(v, components, false);
  if (!top && typeof o.title === 'string' && /^[A-Z][A-Za-z0-9]*$/.test(o.title) && (o.type !== undefined || o.oneOf !== undefined)) {
    const existing = components[o.title];
    if (existing === undefined) components[o.title] = out;
    else if (!isDeepStrictEqual(existing, out)) throw new Error(`two different schemas are titled ${o.title}; give one another title`);
    return ref(o.title);
  }
  return out;
}

/** buildDocument makes the OpenAPI 3.1 document of the recorded routes. */
export function buildDocument(routes: readonly RouteOptions[], options: DocumentOptions): Json {
  const paths: Record<string, Json> = {};
  for (const route of routes) {
    if ((route.schema as Json | undefined)?.hide) continue;
    const path = route.url.replace(/:([A-Za-z0-9_]+)/g, '{$1}');
    for (const method of [route.method].flat()) {
      if (method === 'HEAD' || method === 'OPTIONS') continue;
      paths[path] ??= {};
      paths[path][method.toLowerCase()] = operation(method, path, route);
    }
  }
  for (const [p, item] of Object.entries(options.extraPaths ?? {})) paths[p] = { ...paths[p], ...item };
  const components: Record<string, unknown> = {};
  // The frames and the error body are components even where no route names them.
  const shared = liftTitled({ a: ErrorBody, b: ClientFrame, c: ServerFrame }, components);
  void shared;
  const sortedPaths = Object.fromEntries(Object.entries(paths).sort(([a], [b]) => (a < b ? -1 : 1)));
  const liftedPaths = liftTitled(sortedPaths, components, false) as Json;
  return {
    openapi: '3.1.0',
    jsonSchemaDialect: 'https://json-schema.org/draft/2020-12/schema',
    info: { title: options.title, version: options.version, description: options.description },
    paths: liftedPaths,
    components: {
      schemas: Object.fromEntries(Object.entries(components).sort(([a], [b]) => (a < b ? -1 : 1))),
      securitySchemes: { bearer: { type: 'http', scheme: 'bearer', description: 'Authorization: Bearer <API key>' } },
    },
  };
}
