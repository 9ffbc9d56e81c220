import assert from 'node:assert/strict';
import type { LightMyRequestResponse } from 'fastify';
import { alice, bob, captureLogs, testApp } from './harness.js';

type App = ReturnType<typeof testApp>;
const json = (res: LightMyRequestResponse): any => JSON.parse(res.body);

function assertError(res: LightMyRequestResponse, status: number, code: string): any {
  assert.equal(res.statusCode, status, res.body);
  const body = json(res);
  assert.deepEqual(Object.keys(body), ['error']);
  assert.equal(body.error.code, code);
  assert.equal(typeof body.error.message, 'string');
  assert.doesNotMatch(res.body, /\bat .+\.js:\d+/, 'no stack trace');
  return body.error;
}

const KEY = 'sk-gateway-test-0123456789';
const PROFILE = { name: 'OpenAI', provider: 'openai', base_url: 'https://api.openai.com/v1', model: 'gpt-4o-mini', api_key: KEY };

describe('gateway: persona PATCH/DELETE and API profiles', () => {
  let t: App;
  let logs: ReturnType<typeof captureLogs>;
  const req = (method: string, url: string, payload?: unknown, headers: Record<string, string> = alice) =>
    t.gateway.app.inject({ method: method as 'GET', url, headers: payload === undefined ? headers : { ...headers, 'content-type': 'application/json' }, payload: payload as string });
  const createPersona = async (headers = alice, body: Record<string, unknown> = { name: 'Ada', system_prompt: 'You are Ada.' }) => {
    const res = await req('POST', '/api/personas', body, headers);
    assert.equal(res.statusCode, 201, res.body);
    return json(res);
  };
  const createProfile = async (headers = alice, body: Record<string, unknown> = PROFILE) => {
    const res = await req('POST', '/api/api_profiles', body, headers);
    assert.equal(res.statusCode, 201, res.body);
    return json(res);
  };

  beforeEach(() => {
    t = testApp();
    logs = captureLogs();
  });
  afterEach(async () => {
    logs.stop();
    await t.gateway.app.close();
    // No request, good or bad, writes the key into a log line.
    for (const line of logs.lines) assert.ok(!line.includes(KEY), `log line leaks the key: ${line}`);
  });

  describe('PATCH /api/personas/{id}', () => {
    it('sends only the given fields and turns nulls into cleared fields', async () => {
      const p = await createPersona();
      const res = await req('PATCH', `/api/personas/${p.id}`, { name: 'Ada L.', api_profile_id: null, settings: { temperature: null, max_tokens: 99, retrieval: { top_k: 3, mode: null } } });
      assert.equal(res.statusCode, 200, res.body);
      assert.equal(json(res).name, 'Ada L.');
      assert.equal(json(res).system_prompt, 'You are Ada.');
      const call = t.personas.calls.find((c) => c.method === 'updatePersona')!.req as any;
      assert.equal(call.ownerId, 'alice');
      assert.equal(call.systemPrompt, undefined);
      assert.equal(call.settings.maxTokens, 99);
      assert.equal(call.settings.retrieval.topK, 3);
      assert.deepEqual([...call.clearFields].sort(), ['api_profile_id', 'settings.retrieval.mode', 'settings.temperature']);
      await req('PATCH', `/api/personas/${p.id}`, { settings: null });
      assert.deepEqual((t.personas.calls.filter((c) => c.method === 'updatePersona')[1]!.req as any).clearFields, ['settings']);
    });

    it('rejects bad input with 400 and field details', async () => {
      const p = await createPersona();
      const url = `/api/personas/${p.id}`;
      assertError(await req('PATCH', url, '{"name":'), 400, 'invalid_argument');
      assert.ok(assertError(await req('PATCH', url, { name: 5 }), 400, 'invalid_argument').details.fields.name);
      assert.ok(assertError(await req('PATCH', url, { owner_id: 'bob' }), 400, 'invalid_argument').details.fields.owner_id);
      assert.ok(assertError(await req('PATCH', url, { settings: { retrieval: { top_k: 'many' } } }), 400, 'invalid_argument').details.fields['settings.retrieval.top_k']);
      assert.ok(assertError(await req('PATCH', url, { settings: { retrieval: { mode: 'sparse' } } }), 400, 'invalid_argument').details.fields['settings.retrieval.mode']);
      assertError(await req('PATCH', url, { name: null }), 400, 'invalid_argument');
      assertError(await req('PATCH', url, {}), 400, 'invalid_argument');
      assert.equal(t.personas.calls.filter((c) => c.method === 'updatePersona').length, 0);
    });

    it('answers 404 for unknown and foreign personas, and for a foreign api_profile_id', async () => {
      const theirs = await createPersona(bob);
      assertError(await req('PATCH', '/api/personas/nope', { name: 'x' }), 404, 'not_found');
      assertError(await req('PATCH', `/api/personas/${theirs.id}`, { name: 'x' }), 404, 'not_found');
      const mine = await createPersona();
      const theirProfile = await createProfile(bob);
      assert.equal(assertError(await req('PATCH', `/api/personas/${mine.id}`, { api_profile_id: theirProfile.id }), 404, 'not_found').details.kind, 'api profile');
    });
  });

  describe('DELETE /api/personas/{id}', () => {
    it('answers 204 with no body, then 404', async () => {
      const p = await createPersona();
      const res = await req('DELETE', `/api/personas/${p.id}`);
      assert.equal(res.statusCode, 204);
      assert.equal(res.body, '');
      assertError(await req('GET', `/api/personas/${p.id}`), 404, 'not_found');
      assertError(await req('DELETE', `/api/personas/${p.id}`), 404, 'not_found');
    });

    it('answers 404 for a foreign persona and keeps it', async () => {
      const p = await createPersona(bob);
      assertError(await req('DELETE', `/api/personas/${p.id}`), 404, 'not_found');
      assert.ok(t.personas.personas.has(p.id));
    });
  });

  describe('/api/api_profiles', () => {
    it('creates a profile (201) and never answers with the key, only has_api_key and a fingerprint', async () => {
      const res = await req('POST', '/api/api_profiles', { ...PROFILE, embedding_model: 'text-embedding-3-small', limits: { requests_per_minute: 60 } });
      assert.equal(res.statusCode, 201, res.body);
      assert.ok(!res.body.includes(KEY));
      const p = json(res);
      assert.deepEqual(Object.keys(p).sort(), [
        'api_key_fingerprint', 'base_url', 'created_at', 'embedding_base_url', 'embedding_model', 'has_api_key', 'id', 'limits', 'model', 'name', 'provider', 'updated_at',
      ]);
      assert.equal(p.has_api_key, true);
      assert.match(p.api_key_fingerprint, /^…[0-9a-f]{8}$/);
      assert.deepEqual(p.limits, { requests_per_minute: 60 });
      assert.equal(p.embedding_base_url, null);
      assert.equal(t.personas.keys.get(p.id), KEY, 'the key reached the service');
      for (const r of [await req('GET', `/api/api_profiles/${p.id}`), await req('GET', '/api/api_profiles')]) {
        assert.equal(r.statusCode, 200);
        assert.ok(!r.body.includes(KEY));
      }
      const list = json(await req('GET', '/api/api_profiles?page_size=10'));
      assert.deepEqual(list.api_profiles.map((x: any) => x.id), [p.id]);
      assert.equal(list.next_page_token, '');
      assert.deepEqual(json(await req('GET', '/api/api_profiles', undefined, bob)).api_profiles, []);
    });

    it('patches given fields, rotates or removes the key, and clears with null', async () => {
      const p = await createProfile();
      const renamed = await req('PATCH', `/api/api_profiles/${p.id}`, { name: 'Renamed', limits: { max_concurrent_generations: 2 } });
      assert.equal(renamed.statusCode, 200, renamed.body);
      assert.equal(json(renamed).name, 'Renamed');
      assert.equal(json(renamed).api_key_fingerprint, p.api_key_fingerprint);
      const rekeyed = json(await req('PATCH', `/api/api_profiles/${p.id}`, { api_key: `${KEY}-new` }));
      assert.notEqual(rekeyed.api_key_fingerprint, p.api_key_fingerprint);
      const cleared = await req('PATCH', `/api/api_profiles/${p.id}`, { api_key: null, embedding_model: null, limits: { requests_per_minute: null }, provider: 'ollama', base_url: 'http://127.0.0.1:11434/v1' });
      assert.equal(cleared.statusCode, 200, cleared.body);
      assert.equal(json(cleared).has_api_key, false);
      assert.equal(json(cleared).api_key_fingerprint, null);
      const call = t.personas.calls.filter((c) => c.method === 'updateApiProfile').at(-1)!.req as any;
      assert.deepEqual([...call.clearFields].sort(), ['api_key', 'embedding_model', 'limits.requests_per_minute']);
    });

    it('rejects bad input with 400 naming the field, never echoing the key', async () => {
      const cases: Array<[unknown, string]> = [
        ['{"name":', '(body)'],
        [{ ...PROFILE, provider: 'anthropic' }, 'provider'],
        [{ ...PROFILE, base_url: 'ftp://example.com' }, 'base_url'],
        [{ ...PROFILE, base_url: 'not a url' }, 'base_url'],
        [{ ...PROFILE, model: 42 }, 'model'],
        [{ ...PROFILE, extra: true }, 'extra'],
        [{ ...PROFILE, owner_id: 'bob' }, 'owner_id'],
        [{ ...PROFILE, api_key: `${KEY} with spaces` }, 'api_key'],
        [{ ...PROFILE, api_key: 12345 }, 'api_key'],
        [{ ...PROFILE, limits: { requests_per_minute: 0 } }, 'limits.requests_per_minute'],
        [{ ...PROFILE, limits: { burst: 1 } }, 'limits.burst'],
        [{ name: 'x', provider: 'openai', base_url: 'https://x.example' }, 'model'],
        [{ ...PROFILE, api_key: null }, 'api_key'],
      ];
      for (const [body, field] of cases) {
        const res = await req('POST', '/api/api_profiles', body);
        const err = assertError(res, 400, 'invalid_argument');
        assert.ok(err.details.fields[field], `${JSON.stringify(body)} → ${res.body}`);
        assert.ok(!res.body.includes(KEY), res.body);
      }
      const p = await createProfile();
      for (const body of ['[', { id: 'x' }, { provider: null }, { base_url: 'javascript:alert(1)' }, {}, { limits: { max_concurrent_generations: 1.5 } }]) {
        const res = await req('PATCH', `/api/api_profiles/${p.id}`, body);
        assertError(res, 400, 'invalid_argument');
      }
      assert.equal(t.personas.calls.filter((c) => c.method === 'updateApiProfile').length, 0);
    });

    it('answers 404 for unknown and foreign profiles on every route', async () => {
      const theirs = await createProfile(bob);
      for (const id of ['nope', theirs.id]) {
        assertError(await req('GET', `/api/api_profiles/${id}`), 404, 'not_found');
        assertError(await req('PATCH', `/api/api_profiles/${id}`, { name: 'x' }), 404, 'not_found');
        assertError(await req('DELETE', `/api/api_profiles/${id}`), 404, 'not_found');
      }
      assert.ok(t.personas.profiles.has(theirs.id));
    });

    it('refuses to delete a profile in use with 409 profile_in_use and the persona ids, then deletes it (204)', async () => {
      const p = await createProfile();
      const persona = await createPersona(alice, { name: 'P', system_prompt: 'x', api_profile_id: p.id });
      const err = assertError(await req('DELETE', `/api/api_profiles/${p.id}`), 409, 'profile_in_use');
      assert.deepEqual(err.details.persona_ids, [persona.id]);
      assert.equal((await req('DELETE', `/api/personas/${persona.id}`)).statusCode, 204);
      const res = await req('DELETE', `/api/api_profiles/${p.id}`);
      assert.equal(res.statusCode, 204);
      assert.equal(res.body, '');
      assertError(await req('GET', `/api/api_profiles/${p.id}`), 404, 'not_found');
    });

    it('requires an API key on every route', async () => {
      for (const [method, url] of [['POST', '/api/api_profiles'], ['GET', '/api/api_profiles'], ['GET', '/api/api_profiles/x'], ['PATCH', '/api/api_profiles/x'], ['DELETE', '/api/api_profiles/x'], ['PATCH', '/api/personas/x'], ['DELETE', '/api/personas/x']] as const) {
        assertError(await req(method, url, method === 'POST' || method === 'PATCH' ? PROFILE : undefined, {}), 401, 'unauthenticated');
      }
    });
  });
});
