import assert from 'node:assert/strict';
import { Validator } from '@seriousme/openapi-schema-validator';
import type { RouteOptions } from 'fastify';
import { ResponseChecker } from '../src/openapi/index.js';
import { alice, checkResponses, takeContractProblems, testApp } from './harness.js';

type App = ReturnType<typeof testApp>;

/** The routes the app declared (as fastify knows them), without HEAD and hidden ones. */
function declaredRoutes(t: App): Array<{ method: string; path: string }> {
  const out: Array<{ method: string; path: string }> = [];
  const seen: RouteOptions[] = (t.gateway.app as any).__routes ?? [];
  for (const r of seen) for (const m of [r.method].flat()) if (m !== 'HEAD' && !(r.schema as any)?.hide) out.push({ method: m.toLowerCase(), path: r.url.replace(/:([A-Za-z0-9_]+)/g, '{$1}') });
  return out;
}

describe('gateway OpenAPI document and docs page', () => {
  let t: App;
  const routes: RouteOptions[] = [];
  beforeEach(() => {
    routes.length = 0;
    t = testApp({
      decorate: (app) => {
        checkResponses(app);
        // An independent record of every route, to compare with the document.
        app.addHook('onRoute', (r) => void routes.push(r as RouteOptions));
      },
    });
    (t.gateway.app as any).__routes = routes;
  });
  afterEach(async () => {
    await t.gateway.app.close();
  });

  async function document(): Promise<any> {
    const res = await t.gateway.app.inject({ method: 'GET', url: '/openapi.json' });
    assert.equal(res.statusCode, 200);
    assert.match(String(res.headers['content-type']), /^application\/json/);
    return JSON.parse(res.body);
  }

  it('is a valid OpenAPI 3.1 document, served without credentials', async () => {
    const doc = await document();
    assert.equal(doc.openapi, '3.1.0');
    const validator = new Validator();
    const res = await validator.validate(doc);
    assert.equal(res.valid, true, JSON.stringify(res.errors, null, 1)?.slice(0, 3000));
  });

  it('documents every declared route, with the error body, and bearer security on every /api route', async () => {
    const doc = await document();
    const declared = declaredRoutes(t);
    assert.ok(declared.length >= 25, `only ${declared.length} routes declared`);
    for (const { method, path } of declared) {
      const op = doc.paths[path]?.[method];
      assert.ok(op, `${method.toUpperCase()} ${path} is missing from the document`);
      assert.ok(op.responses['4XX'] && op.responses['5XX'], `${method} ${path} lacks the error responses`);
      // /v1 answers errors in OpenAI's shape (its own documented schema); everything else in ours.
      if (!path.startsWith('/v1/')) assert.deepEqual(op.responses['4XX'].content['application/json'].schema, { $ref: '#/components/schemas/ErrorBody' }, `${method} ${path}`);
      const success = Object.keys(op.responses).filter((c) => /^[123]/.test(c));
      assert.ok(success.length > 0, `${method} ${path} documents no success response`);
      if (path.startsWith('/api/') || path.startsWith('/v1/')) {
        assert.deepEqual(op.security, [{ bearer: [] }], `${method} ${path} is not marked as needing a key`);
        assert.ok(op.responses['401'] && op.responses['429'].headers['Retry-After'], `${method} ${path} lacks 401/429`);
      }
      for (const name of [...path.matchAll(/\{([^}]+)\}/g)].map((m) => m[1])) {
        assert.ok(op.parameters?.some((p: any) => p.in === 'path' && p.name === name && p.required), `${method} ${path} does not declare path parameter ${name}`);
      }
    }
    const ids = Object.values(doc.paths).flatMap((item: any) => Object.values(item).map((op: any) => op.operationId));
    assert.equal(new Set(ids).size, ids.length, 'operationIds are unique');
    for (const p of ['/api/personas', '/api/api_profiles/{id}', '/api/sessions/{id}/messages', '/api/sessions/{id}/ws_token', '/api/api_keys', '/openapi.json', '/docs', '/healthz', '/readyz', '/metrics', '/ws/sessions/{id}']) {
      assert.ok(doc.paths[p], `${p} is documented`);
    }
    for (const c of ['ErrorBody', 'Persona', 'ApiProfile', 'Session', 'Message', 'ClientFrame', 'ServerFrame', 'CreatedApiKey']) assert.ok(doc.components.schemas[c], `component ${c}`);
  });

  it('documents the very schemas the routes validate with (one source)', async () => {
    const doc = await document();
    const route = routes.find((r) => r.url === '/api/sessions/:id/messages' && r.method === 'POST')!;
    const op = doc.paths['/api/sessions/{id}/messages'].post;
    assert.deepEqual(op.requestBody.content['application/json'].schema, route.schema!.body);
    assert.deepEqual(
      op.parameters.find((p: any) => p.in === 'header' && p.name === 'idempotency-key').schema,
      (route.schema!.headers as any).properties['idempotency-key'],
    );
    // The /api scope's default (no query parameters accepted) is part of the route's schema and
    // so of the document: such an operation lists no query parameters.
    assert.ok(!doc.paths['/api/personas/{id}'].get.parameters.some((p: any) => p.in === 'query'));
    assert.deepEqual(
      doc.paths['/api/sessions/{id}/messages'].get.parameters.filter((p: any) => p.in === 'query').map((p: any) => p.name),
      ['before', 'limit'],
    );
  });

  it('serves a self-contained HTML docs page naming every path', async () => {
    const doc = await document();
    const res = await t.gateway.app.inject({ method: 'GET', url: '/docs' });
    assert.equal(res.statusCode, 200);
    assert.match(String(res.headers['content-type']), /^text\/html/);
    for (const path of Object.keys(doc.paths)) assert.ok(res.body.includes(path.replace(/&/g, '&amp;')), `the page names ${path}`);
    assert.doesNotMatch(res.body, /<script|<link|(src|href)="https?:/i, 'no scripts or external resources');
    assert.match(res.body, /id="schema-ErrorBody"/);
  });

  describe('the response check', () => {
    it('finds an undocumented field, a wrong type, an undocumented status, route or content type', async () => {
      const doc = await document();
      const checker = new ResponseChecker(doc);
      const persona = { id: 'p', name: 'n', system_prompt: '', background: '', api_profile_id: null, settings: {}, created_at: null, updated_at: null };
      const ok = { method: 'GET', route: '/api/personas/:id', status: 200, contentType: 'application/json; charset=utf-8' };
      assert.deepEqual(checker.check({ ...ok, body: JSON.stringify(persona) }), []);
      assert.equal(checker.check({ ...ok, body: JSON.stringify({ ...persona, owner_id: 'alice' }) }).length, 1, 'an undocumented field');
      assert.equal(checker.check({ ...ok, body: JSON.stringify({ ...persona, name: 5 }) }).length, 1, 'a wrong type');
      assert.equal(checker.check({ ...ok, status: 302, body: '' }).length, 1, 'an undocumented status');
      assert.equal(checker.check({ ...ok, route: '/api/nowhere', body: '{}' }).length, 1, 'an undocumented route');
      assert.equal(checker.check({ ...ok, contentType: 'text/plain', body: 'x' }).length, 1, 'an undocumented content type');
      assert.equal(checker.check({ ...ok, status: 404, body: JSON.stringify({ error: { code: 'not_found', message: 'x' } }) }).length, 1, 'an error body without details');
      assert.deepEqual(checker.check({ ...ok, status: 404, body: JSON.stringify({ error: { code: 'not_found', message: 'x', details: {} } }) }), []);
      assert.equal(checker.check({ method: 'DELETE', route: '/api/personas/:id', status: 204, contentType: undefined, body: '{}' }).length, 1, 'a body on 204');
    });

    it('records every mismatching response a test receives (the harness fails that test)', async () => {
      await t.gateway.app.close();
      t = testApp({
        decorate: (app) => {
          checkResponses(app);
          // A route whose answer breaks its own documented schema.
          app.get('/broken', { schema: { response: { 200: { type: 'object', additionalProperties: false, properties: { a: { type: 'string' } } } } } }, async () => ({ a: 1 }));
        },
      });
      const res = await t.gateway.app.inject({ method: 'GET', url: '/broken' });
      assert.equal(res.statusCode, 200);
      const problems = takeContractProblems();
      assert.equal(problems.length, 1);
      assert.match(problems[0]!, /GET \/broken → 200/);
      const fine = await t.gateway.app.inject({ method: 'GET', url: '/api/personas', headers: alice });
      assert.equal(fine.statusCode, 200);
      assert.deepEqual(takeContractProblems(), []);
    });
  });
});
