import assert from 'node:assert/strict';
import { alice, bob, testApp } from './harness.js';

/*
 * The owner audit: for every documented /api operation that names a resource, another owner's id
 * never answers 2xx and never changes anything; with a valid body it answers 404 exactly like an
 * unknown id (ids cannot be probed).
 */

/** A valid body for the operations that take one (others get `{}`). */
const BODIES: Record<string, unknown> = {
  'patch /api/personas/{id}': { name: 'Bob was here' },
  'post /api/personas/{id}/ingest_text': { text: 'bob text' },
  'post /api/personas/{id}/ingest': { url: 'https://example.com/page' },
  'post /api/personas/{id}/search': { query: 'anything' },
  'post /api/sessions/{id}/messages': { content: 'hi from bob' },
  'patch /api/api_profiles/{id}': { name: 'Bob was here' },
};

describe('gateway owner audit', () => {
  it('answers 404 (never 2xx) to another owner’s ids on every documented /api route, and changes nothing', async () => {
    const t = testApp();
    try {
      const inject = (method: string, url: string, headers: Record<string, string>, payload?: unknown) =>
        t.gateway.app.inject({ method: method as 'GET', url, headers, ...(payload !== undefined ? { payload: payload as object } : {}) });
      const profile = JSON.parse((await inject('POST', '/api/api_profiles', alice, { name: 'p', provider: 'openai', base_url: 'https://api.example.com/v1', model: 'm' })).body);
      const persona = JSON.parse((await inject('POST', '/api/personas', alice, { name: 'Ada', system_prompt: 'x' })).body);
      const session = JSON.parse((await inject('POST', '/api/sessions', alice, { persona_id: persona.id })).body);
      const job = JSON.parse((await inject('POST', `/api/personas/${persona.id}/ingest_text`, alice, { text: 'alice text' })).body);
      const key = JSON.parse((await inject('POST', '/api/api_keys', alice, { name: 'k' })).body);
      const sent = JSON.parse((await inject('POST', `/api/sessions/${session.id}/messages`, alice, { content: 'hi' })).body);
      const ids: Record<string, string> = { personas: persona.id, sessions: session.id, api_profiles: profile.id, api_keys: key.id, ingest_jobs: job.job_id };
      const doc = JSON.parse((await inject('GET', '/openapi.json', {})).body);
      const sentBefore = t.sessions.sent.length;
      const ingestedBefore = t.rag.ingested.length;
      let audited = 0;
      for (const [path, item] of Object.entries<any>(doc.paths)) {
        if (!path.startsWith('/api/') || !path.includes('{') || path.startsWith('/api/admin/')) continue;
        const collection = path.split('/')[2]!;
        for (const [method, op] of Object.entries<any>(item)) {
          const url = path.replace(/\{([^}]+)\}/g, (_m, name: string) => (name === 'id' || name === 'job_id' ? ids[collection] ?? 'unknown' : name === 'reply_id' ? sent.reply_id : 'src_1'));
          const body = op.requestBody ? (BODIES[`${method} ${path}`] ?? {}) : undefined;
          const res = await inject(method.toUpperCase(), url, bob, body);
          assert.ok(res.statusCode >= 400, `bob got ${res.statusCode} on ${method.toUpperCase()} ${url}`);
          if (!op.requestBody || BODIES[`${method} ${path}`]) assert.equal(res.statusCode, 404, `${method.toUpperCase()} ${path}: ${res.body}`);
          audited++;
        }
      }
      assert.ok(audited >= 15, `only ${audited} operations audited`);
      assert.equal(t.sessions.sent.length, sentBefore, 'nothing was sent as bob');
      assert.equal(t.rag.ingested.length, ingestedBefore, 'nothing was ingested as bob');
      assert.equal(JSON.parse((await inject('GET', `/api/personas/${persona.id}`, alice)).body).name, 'Ada');
      assert.equal(JSON.parse((await inject('GET', `/api/api_profiles/${profile.id}`, alice)).body).name, 'p');
      assert.equal((await inject('GET', `/api/sessions/${session.id}`, alice)).statusCode, 200);
      assert.equal(JSON.parse((await inject('GET', '/api/api_keys', alice)).body).api_keys[0].revoked_at, null);
    } finally {
      await t.gateway.app.close();
    }
  });
});
