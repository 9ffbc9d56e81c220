import assert from 'node:assert/strict';
import type { LightMyRequestResponse } from 'fastify';
import { alice, ALICE_KEY, bob, captureLogs, testApp, tick } from './harness.js';

type App = ReturnType<typeof testApp>;

function json(res: LightMyRequestResponse): any {
  return JSON.parse(res.body);
}

/** assertError checks the API.md error body: status, code, and no stack or internals. */
function assertError(res: LightMyRequestResponse, status: number, code: string): any {
  assert.equal(res.statusCode, status, res.body);
  const body = json(res);
  assert.deepEqual(Object.keys(body), ['error']);
  assert.equal(body.error.code, code);
  assert.equal(typeof body.error.message, 'string');
  assert.equal(typeof body.error.details, 'object');
  assert.doesNotMatch(res.body, /\bat .+\.js:\d+/, 'no stack trace');
  return body.error;
}

async function createPersona(t: App, headers = alice, body: Record<string, unknown> = { name: 'Ada', system_prompt: 'You are Ada.' }) {
  const res = await t.gateway.app.inject({ method: 'POST', url: '/api/personas', headers, payload: body });
  assert.equal(res.statusCode, 201, res.body);
  return json(res);
}

async function createSession(t: App, headers = alice) {
  const persona = await createPersona(t, headers);
  const res = await t.gateway.app.inject({ method: 'POST', url: '/api/sessions', headers, payload: { persona_id: persona.id, title: 'chat' } });
  assert.equal(res.statusCode, 201, res.body);
  return json(res);
}

describe('gateway REST API', () => {
  let t: App;
  beforeEach(() => {
    t = testApp({ maxBodyBytes: 64 * 1024 });
  });
  afterEach(async () => {
    await t.gateway.app.close();
  });

  describe('health', () => {
    it('answers healthz with status ok and no credentials', async () => {
      const res = await t.gateway.app.inject({ method: 'GET', url: '/healthz' });
      assert.equal(res.statusCode, 200);
      assert.deepEqual(json(res), { status: 'ok' });
    });

    it('answers readyz with 200 once started and 503 before', async () => {
      assert.equal((await t.gateway.app.inject({ method: 'GET', url: '/readyz' })).statusCode, 200);
      t.gateway.setReady(false);
      assertError(await t.gateway.app.inject({ method: 'GET', url: '/readyz' }), 503, 'unavailable');
    });
  });

  describe('authentication', () => {
    const routes: Array<[string, string]> = [
      ['POST', '/api/personas'],
      ['GET', '/api/personas'],
      ['GET', '/api/personas/p1'],
      ['POST', '/api/personas/p1/ingest_text'],
      ['GET', '/api/ingest_jobs/j1'],
      ['POST', '/api/personas/p1/search'],
      ['POST', '/api/sessions'],
      ['GET', '/api/sessions/s1'],
      ['GET', '/api/sessions/s1/messages'],
      ['POST', '/api/sessions/s1/messages'],
      ['POST', '/api/sessions/s1/ws_token'],
    ];

    for (const [method, url] of routes) {
      it(`refuses ${method} ${url} without an API key with 401 unauthenticated`, async () => {
        const res = await t.gateway.app.inject({ method: method as 'GET', url, payload: method === 'POST' ? {} : undefined });
        assertError(res, 401, 'unauthenticated');
        assert.equal(res.headers['www-authenticate'], 'Bearer');
      });
    }

    it('refuses a wrong API key with 401 unauthenticated', async () => {
      assertError(await t.gateway.app.inject({ method: 'GET', url: '/api/personas', headers: { authorization: 'Bearer not-a-real-key-123' } }), 401, 'unauthenticated');
    });

    it('refuses a key sent with another scheme than Bearer', async () => {
      assertError(await t.gateway.app.inject({ method: 'GET', url: '/api/personas', headers: { authorization: `Basic ${ALICE_KEY}` } }), 401, 'unauthenticated');
    });

    it('checks the API key before reading an oversized body', async () => {
      const res = await t.gateway.app.inject({ method: 'POST', url: '/api/personas', payload: { name: 'x'.repeat(100_000), system_prompt: '' } });
      assertError(res, 401, 'unauthenticated');
    });
  });

  describe('personas', () => {
    it('creates a persona and answers 201 with its public shape', async () => {
      const p = await createPersona(t, alice, {
        name: 'Ada',
        system_prompt: 'You are Ada.',
        background: 'Born 1815.',
        settings: { temperature: 0.3, max_tokens: 500, retrieval: { top_k: 4, mode: 'hybrid', rerank: true } },
      });
      assert.deepEqual(Object.keys(p).sort(), ['api_profile_id', 'background', 'created_at', 'id', 'name', 'settings', 'system_prompt', 'updated_at']);
      assert.equal(p.name, 'Ada');
      assert.equal(p.system_prompt, 'You are Ada.');
      assert.equal(p.background, 'Born 1815.');
      assert.equal(p.settings.max_tokens, 500);
      assert.equal(Math.round(p.settings.temperature * 10), 3);
      assert.deepEqual(p.settings.retrieval, { top_k: 4, mode: 'hybrid', rerank: true });
      assert.match(p.created_at, /^\d{4}-\d\d-\d\dT/);
      assert.equal(t.personas.personas.get(p.id)!.ownerId, 'alice', 'the owner comes from the key');
    });

    it('lists only the caller’s personas with a next_page_token', async () => {
      await createPersona(t, alice);
      await createPersona(t, bob);
      const res = await t.gateway.app.inject({ method: 'GET', url: '/api/personas?page_size=10', headers: alice });
      assert.equal(res.statusCode, 200);
      const body = json(res);
      assert.equal(body.personas.length, 1);
      assert.equal(body.next_page_token, '');
    });

    it('gets one persona by id', async () => {
      const p = await createPersona(t);
      const res = await t.gateway.app.inject({ method: 'GET', url: `/api/personas/${p.id}`, headers: alice });
      assert.equal(res.statusCode, 200);
      assert.equal(json(res).id, p.id);
    });

    it('answers 404 not_found for an unknown persona and for another owner’s persona', async () => {
      const p = await createPersona(t, bob);
      assertError(await t.gateway.app.inject({ method: 'GET', url: '/api/personas/nope', headers: alice }), 404, 'not_found');
      assertError(await t.gateway.app.inject({ method: 'GET', url: `/api/personas/${p.id}`, headers: alice }), 404, 'not_found');
    });

    it('rejects malformed JSON with 400 and a field detail', async () => {
      const res = await t.gateway.app.inject({ method: 'POST', url: '/api/personas', headers: { ...alice, 'content-type': 'application/json' }, payload: '{"name":' });
      const err = assertError(res, 400, 'invalid_argument');
      assert.ok(err.details.fields);
    });

    it('rejects a missing name with the field named in details.fields', async () => {
      const err = assertError(await t.gateway.app.inject({ method: 'POST', url: '/api/personas', headers: alice, payload: { system_prompt: 'x' } }), 400, 'invalid_argument');
      assert.deepEqual(Object.keys(err.details.fields), ['name']);
    });

    it('rejects a name of the wrong type instead of coercing it', async () => {
      const err = assertError(await t.gateway.app.inject({ method: 'POST', url: '/api/personas', headers: alice, payload: { name: 42, system_prompt: 'x' } }), 400, 'invalid_argument');
      assert.ok(err.details.fields.name);
    });

    it('rejects an unknown field instead of dropping it', async () => {
      const err = assertError(await t.gateway.app.inject({ method: 'POST', url: '/api/personas', headers: alice, payload: { name: 'a', system_prompt: 'x', owner_id: 'bob' } }), 400, 'invalid_argument');
      assert.equal(err.details.fields.owner_id, 'is not a known field');
    });

    it('rejects an empty name and a name over 200 characters', async () => {
      assertError(await t.gateway.app.inject({ method: 'POST', url: '/api/personas', headers: alice, payload: { name: '', system_prompt: 'x' } }), 400, 'invalid_argument');
      assertError(await t.gateway.app.inject({ method: 'POST', url: '/api/personas', headers: alice, payload: { name: 'n'.repeat(201), system_prompt: 'x' } }), 400, 'invalid_argument');
    });

    it('rejects unknown settings and out-of-range settings', async () => {
      const err = assertError(
        await t.gateway.app.inject({ method: 'POST', url: '/api/personas', headers: alice, payload: { name: 'a', system_prompt: 'x', settings: { retrieval: { top_k: 0 } } } }),
        400,
        'invalid_argument',
      );
      assert.ok(err.details.fields['settings.retrieval.top_k']);
      assertError(await t.gateway.app.inject({ method: 'POST', url: '/api/personas', headers: alice, payload: { name: 'a', system_prompt: 'x', settings: { colour: 'red' } } }), 400, 'invalid_argument');
    });

    it('rejects a body over the size limit with 413 too_large', async () => {
      const err = assertError(
        await t.gateway.app.inject({ method: 'POST', url: '/api/personas', headers: alice, payload: { name: 'a', system_prompt: 'x'.repeat(70_000) } }),
        413,
        'too_large',
      );
      assert.equal(err.details.limit_bytes, 64 * 1024);
    });

    it('rejects a body that is not JSON with a 4xx error body', async () => {
      const res = await t.gateway.app.inject({ method: 'POST', url: '/api/personas', headers: { ...alice, 'content-type': 'text/plain' }, payload: 'name=a' });
      assertError(res, 415, 'unsupported_media_type');
    });

    it('rejects a prototype-poisoning body', async () => {
      const res = await t.gateway.app.inject({
        method: 'POST',
        url: '/api/personas',
        headers: { ...alice, 'content-type': 'application/json' },
        payload: '{"name":"a","system_prompt":"x","__proto__":{"admin":true}}',
      });
      assertError(res, 400, 'invalid_argument');
    });

    it('rejects a page_size out of range and unknown query parameters', async () => {
      const err = assertError(await t.gateway.app.inject({ method: 'GET', url: '/api/personas?page_size=0', headers: alice }), 400, 'invalid_argument');
      assert.ok(err.details.fields.page_size);
      assertError(await t.gateway.app.inject({ method: 'GET', url: '/api/personas?page_size=abc', headers: alice }), 400, 'invalid_argument');
      assertError(await t.gateway.app.inject({ method: 'GET', url: '/api/personas?debug=1', headers: alice }), 400, 'invalid_argument');
    });

    it('rejects an id longer than 100 characters with 400', async () => {
      assertError(await t.gateway.app.inject({ method: 'GET', url: `/api/personas/${'x'.repeat(101)}`, headers: alice }), 400, 'invalid_argument');
    });
  });

  describe('knowledge', () => {
    it('ingests text after checking the persona and answers 202 with a job id', async () => {
      const p = await createPersona(t);
      const res = await t.gateway.app.inject({ method: 'POST', url: `/api/personas/${p.id}/ingest_text`, headers: alice, payload: { text: 'Ada wrote notes.', title: 'Notes', source: 'notebook' } });
      assert.equal(res.statusCode, 202, res.body);
      const { job_id } = json(res);
      assert.equal(typeof job_id, 'string');
      assert.equal(t.rag.ingested[0]!.kind, 1 /* SOURCE_KIND_TEXT */);
      assert.equal(t.rag.ingested[0]!.ownerId, 'alice');
      assert.equal(t.rag.ingested[0]!.title, 'Notes');
    });

    it('refuses to ingest into another owner’s persona with 404 and queues nothing', async () => {
      const p = await createPersona(t, bob);
      assertError(await t.gateway.app.inject({ method: 'POST', url: `/api/personas/${p.id}/ingest_text`, headers: alice, payload: { text: 'x' } }), 404, 'not_found');
      assert.equal(t.rag.ingested.length, 0);
    });

    it('rejects ingest_text without text, with an unknown field, or with a title over 500 characters', async () => {
      const p = await createPersona(t);
      const url = `/api/personas/${p.id}/ingest_text`;
      assertError(await t.gateway.app.inject({ method: 'POST', url, headers: alice, payload: {} }), 400, 'invalid_argument');
      assertError(await t.gateway.app.inject({ method: 'POST', url, headers: alice, payload: { text: 'x', kind: 'url' } }), 400, 'invalid_argument');
      assertError(await t.gateway.app.inject({ method: 'POST', url, headers: alice, payload: { text: 'x', title: 't'.repeat(501) } }), 400, 'invalid_argument');
    });

    it('rejects ingest_text bigger than the body limit with 413', async () => {
      const p = await createPersona(t);
      assertError(await t.gateway.app.inject({ method: 'POST', url: `/api/personas/${p.id}/ingest_text`, headers: alice, payload: { text: 'x'.repeat(100_000) } }), 413, 'too_large');
    });

    it('reports an ingest job with status, stage and progress', async () => {
      const p = await createPersona(t);
      const { job_id } = json(await t.gateway.app.inject({ method: 'POST', url: `/api/personas/${p.id}/ingest_text`, headers: alice, payload: { text: 'hello' } }));
      const res = await t.gateway.app.inject({ method: 'GET', url: `/api/ingest_jobs/${job_id}`, headers: alice });
      assert.equal(res.statusCode, 200);
      assert.deepEqual(json(res), { job_id, persona_id: p.id, status: 'queued', stage: 'queued', progress: { chunks_done: 0, chunks_total: 3 } });
    });

    it('answers 404 for an unknown ingest job and for another owner’s job', async () => {
      const p = await createPersona(t, bob);
      const { job_id } = json(await t.gateway.app.inject({ method: 'POST', url: `/api/personas/${p.id}/ingest_text`, headers: bob, payload: { text: 'hello' } }));
      assertError(await t.gateway.app.inject({ method: 'GET', url: `/api/ingest_jobs/${job_id}`, headers: alice }), 404, 'not_found');
      assertError(await t.gateway.app.inject({ method: 'GET', url: '/api/ingest_jobs/nope', headers: alice }), 404, 'not_found');
    });

    it('searches a persona’s knowledge and answers ranked results', async () => {
      const p = await createPersona(t);
      const res = await t.gateway.app.inject({ method: 'POST', url: `/api/personas/${p.id}/search`, headers: alice, payload: { query: 'engines', top_k: 3 } });
      assert.equal(res.statusCode, 200, res.body);
      const body = json(res);
      // The full shape is checked against the OpenAPI document by the harness.
      for (const k of ['chunk_id', 'score', 'source_id', 'text', 'title', 'url']) assert.ok(k in body.results[0], k);
      assert.equal(t.rag.retrieved[0]!.topK, 3);
    });

    it('rejects a search with top_k out of range, a missing query, or a string top_k', async () => {
      const p = await createPersona(t);
      const url = `/api/personas/${p.id}/search`;
      assertError(await t.gateway.app.inject({ method: 'POST', url, headers: alice, payload: { query: 'x', top_k: 51 } }), 400, 'invalid_argument');
      assertError(await t.gateway.app.inject({ method: 'POST', url, headers: alice, payload: { top_k: 5 } }), 400, 'invalid_argument');
      assertError(await t.gateway.app.inject({ method: 'POST', url, headers: alice, payload: { query: 'x', top_k: '5' } }), 400, 'invalid_argument');
    });

    it('answers 404 when searching an unknown persona', async () => {
      assertError(await t.gateway.app.inject({ method: 'POST', url: '/api/personas/nope/search', headers: alice, payload: { query: 'x' } }), 404, 'not_found');
    });
  });

  describe('sessions and messages', () => {
    it('creates a session and answers 201 with id, persona_id, title and created_at', async () => {
      const s = await createSession(t);
      assert.deepEqual(Object.keys(s).sort(), ['created_at', 'id', 'persona_id', 'title']);
      assert.equal(s.title, 'chat');
    });

    it('refuses a session for another owner’s persona with 404', async () => {
      const p = await createPersona(t, bob);
      assertError(await t.gateway.app.inject({ method: 'POST', url: '/api/sessions', headers: alice, payload: { persona_id: p.id } }), 404, 'not_found');
    });

    it('rejects a session without persona_id or with a numeric persona_id', async () => {
      assertError(await t.gateway.app.inject({ method: 'POST', url: '/api/sessions', headers: alice, payload: { title: 'x' } }), 400, 'invalid_argument');
      assertError(await t.gateway.app.inject({ method: 'POST', url: '/api/sessions', headers: alice, payload: { persona_id: 7 } }), 400, 'invalid_argument');
    });

    it('sends a message and answers 202 with message_id and reply_id', async () => {
      const s = await createSession(t);
      const res = await t.gateway.app.inject({ method: 'POST', url: `/api/sessions/${s.id}/messages`, headers: alice, payload: { content: 'Hello', priority: 2 } });
      assert.equal(res.statusCode, 202, res.body);
      const body = json(res);
      assert.deepEqual(Object.keys(body).sort(), ['message_id', 'reply_id']);
      assert.equal(t.sessions.sent[0]!.priority, 2);
    });

    it('passes the Idempotency-Key header so a repeat returns the same ids', async () => {
      const s = await createSession(t);
      const send = () =>
        t.gateway.app.inject({ method: 'POST', url: `/api/sessions/${s.id}/messages`, headers: { ...alice, 'idempotency-key': 'k-1' }, payload: { content: 'Hello' } });
      const a = json(await send());
      const b = json(await send());
      assert.deepEqual(a, b);
      assert.equal(t.sessions.sent.length, 1);
      assert.equal(t.sessions.sent[0]!.idempotencyKey, 'k-1');
    });

    it('rejects empty content, content over 32000 characters, and a priority out of range', async () => {
      const s = await createSession(t);
      const url = `/api/sessions/${s.id}/messages`;
      assertError(await t.gateway.app.inject({ method: 'POST', url, headers: alice, payload: { content: '' } }), 400, 'invalid_argument');
      assertError(await t.gateway.app.inject({ method: 'POST', url, headers: alice, payload: { content: 'c'.repeat(32_001) } }), 400, 'invalid_argument');
      assertError(await t.gateway.app.inject({ method: 'POST', url, headers: alice, payload: { content: 'x', priority: 11 } }), 400, 'invalid_argument');
      assertError(await t.gateway.app.inject({ method: 'POST', url, headers: alice, payload: { content: 'x', priority: 1.5 } }), 400, 'invalid_argument');
      assertError(await t.gateway.app.inject({ method: 'POST', url, headers: alice }), 400, 'invalid_argument');
    });

    it('answers 404 when sending to another owner’s session', async () => {
      const s = await createSession(t, bob);
      assertError(await t.gateway.app.inject({ method: 'POST', url: `/api/sessions/${s.id}/messages`, headers: alice, payload: { content: 'hi' } }), 404, 'not_found');
      assert.equal(t.sessions.sent.length, 0);
    });

    it('gets a session with its recent messages in the public message shape', async () => {
      const s = await createSession(t);
      await t.gateway.app.inject({ method: 'POST', url: `/api/sessions/${s.id}/messages`, headers: alice, payload: { content: 'Hello' } });
      const res = await t.gateway.app.inject({ method: 'GET', url: `/api/sessions/${s.id}`, headers: alice });
      assert.equal(res.statusCode, 200);
      const body = json(res);
      assert.equal(body.id, s.id);
      assert.equal(body.messages.length, 1);
      const m = body.messages[0];
      assert.equal(m.role, 'user');
      assert.equal(m.content, 'Hello');
      assert.equal(m.status, 'completed');
      assert.deepEqual(m.citations, []);
      assert.equal(typeof m.reply_id, 'string');
    });

    it('pages messages with before and limit and reports has_more', async () => {
      const s = await createSession(t);
      for (const c of ['a', 'b', 'c']) await t.gateway.app.inject({ method: 'POST', url: `/api/sessions/${s.id}/messages`, headers: alice, payload: { content: c } });
      const res = await t.gateway.app.inject({ method: 'GET', url: `/api/sessions/${s.id}/messages?limit=2`, headers: alice });
      assert.equal(res.statusCode, 200);
      const body = json(res);
      assert.deepEqual(body.messages.map((m: any) => m.content), ['b', 'c']);
      assert.equal(body.has_more, true);
      const older = json(await t.gateway.app.inject({ method: 'GET', url: `/api/sessions/${s.id}/messages?limit=2&before=${body.messages[0].id}`, headers: alice }));
      assert.deepEqual(older.messages.map((m: any) => m.content), ['a']);
    });

    it('rejects a message limit of 0 or 201 and unknown query parameters', async () => {
      const s = await createSession(t);
      assertError(await t.gateway.app.inject({ method: 'GET', url: `/api/sessions/${s.id}/messages?limit=0`, headers: alice }), 400, 'invalid_argument');
      assertError(await t.gateway.app.inject({ method: 'GET', url: `/api/sessions/${s.id}/messages?limit=201`, headers: alice }), 400, 'invalid_argument');
      assertError(await t.gateway.app.inject({ method: 'GET', url: `/api/sessions/${s.id}/messages?after=x`, headers: alice }), 400, 'invalid_argument');
    });

    it('answers 404 for another owner’s session on every session route', async () => {
      const s = await createSession(t, bob);
      assertError(await t.gateway.app.inject({ method: 'GET', url: `/api/sessions/${s.id}`, headers: alice }), 404, 'not_found');
      assertError(await t.gateway.app.inject({ method: 'GET', url: `/api/sessions/${s.id}/messages`, headers: alice }), 404, 'not_found');
      assertError(await t.gateway.app.inject({ method: 'POST', url: `/api/sessions/${s.id}/ws_token`, headers: alice }), 404, 'not_found');
    });

    it('issues a ws_token that expires within 60 seconds', async () => {
      const s = await createSession(t);
      const res = await t.gateway.app.inject({ method: 'POST', url: `/api/sessions/${s.id}/ws_token`, headers: alice });
      assert.equal(res.statusCode, 200, res.body);
      const body = json(res);
      assert.equal(typeof body.ws_token, 'string');
      const ttl = Date.parse(body.expires_at) - t.clock.now();
      assert.ok(ttl > 0 && ttl <= 60_000, `ttl ${ttl}`);
    });

    it('issues a ws_token also when a client sends an empty JSON body', async () => {
      const s = await createSession(t);
      const res = await t.gateway.app.inject({ method: 'POST', url: `/api/sessions/${s.id}/ws_token`, headers: { ...alice, 'content-type': 'application/json' }, payload: '' });
      assert.equal(res.statusCode, 200, res.body);
    });

    it('cancels a reply through the scheduler', async () => {
      const s = await createSession(t);
      const res = await t.gateway.app.inject({ method: 'POST', url: `/api/sessions/${s.id}/messages/rep_9/cancel`, headers: alice });
      assert.equal(res.statusCode, 202, res.body);
      assert.deepEqual(t.scheduler.cancelled, [{ ownerId: 'alice', sessionId: s.id, replyId: 'rep_9' }]);
    });
  });

  describe('errors', () => {
    it('answers an unknown route with 404 not_found in the error body', async () => {
      assertError(await t.gateway.app.inject({ method: 'GET', url: '/nope' }), 404, 'not_found');
      assertError(await t.gateway.app.inject({ method: 'DELETE', url: '/api/personas', headers: alice }), 404, 'not_found');
    });

    it('hides an unexpected failure behind 500 internal and logs its cause', async () => {
      const logs = captureLogs();
      t.personas.listPersonas = async () => {
        throw new Error('db password=hunter2 exploded');
      };
      const res = await t.gateway.app.inject({ method: 'GET', url: '/api/personas', headers: alice });
      const err = assertError(res, 500, 'internal');
      assert.equal(err.message, 'internal error');
      assert.doesNotMatch(res.body, /hunter2|exploded/);
      await tick();
      logs.stop();
      assert.ok(logs.lines.some((l) => l.includes('exploded')), 'the cause is logged');
    });

    it('passes a service AppError through with its own status', async () => {
      const { AppError } = await import('@chat/errors');
      t.personas.listPersonas = async () => {
        throw AppError.unavailable('persona service is unavailable');
      };
      assertError(await t.gateway.app.inject({ method: 'GET', url: '/api/personas', headers: alice }), 503, 'unavailable');
    });
  });

  describe('access logs', () => {
    it('log one line per request with the route pattern and never the API key or the query', async () => {
      const logs = captureLogs();
      const p = await createPersona(t);
      await t.gateway.app.inject({ method: 'GET', url: `/api/personas/${p.id}?secret=shh`, headers: alice });
      await t.gateway.app.inject({ method: 'GET', url: '/api/personas', headers: { authorization: 'Bearer wrong-key-abcdef' } });
      await tick();
      logs.stop();
      const access = logs.lines.map((l) => JSON.parse(l)).filter((l) => l.message === 'request');
      assert.equal(access.length, 3);
      assert.deepEqual(
        access.map((l) => [l.method, l.route, l.status]),
        [
          ['POST', '/api/personas', 201],
          ['GET', '/api/personas/:id', 400],
          ['GET', '/api/personas', 401],
        ],
      );
      for (const l of access) {
        assert.equal(typeof l.request_id, 'string');
        assert.equal(typeof l.duration_ms, 'number');
      }
      const all = logs.lines.join('\n');
      assert.ok(!all.includes(ALICE_KEY));
      assert.ok(!all.includes('wrong-key-abcdef'));
      assert.ok(!all.includes('shh'));
    });
  });
});
