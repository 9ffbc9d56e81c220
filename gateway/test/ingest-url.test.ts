import assert from 'node:assert/strict';
import type { LightMyRequestResponse } from 'fastify';
import { AppError } from '@chat/errors';
import type { ragV1 } from '@chat/contracts';
import { FakeRag } from './fakes.js';
import { alice, bob, testApp } from './harness.js';

type App = ReturnType<typeof testApp>;

function json(res: LightMyRequestResponse): any {
  return JSON.parse(res.body);
}

function assertError(res: LightMyRequestResponse, status: number, code: string): any {
  assert.equal(res.statusCode, status, res.body);
  const body = json(res);
  assert.deepEqual(Object.keys(body), ['error']);
  assert.equal(body.error.code, code);
  assert.equal(typeof body.error.message, 'string');
  return body.error;
}

async function createPersona(t: App, headers = alice) {
  const res = await t.gateway.app.inject({ method: 'POST', url: '/api/personas', headers, payload: { name: 'Ada', system_prompt: 'You are Ada.' } });
  assert.equal(res.statusCode, 201, res.body);
  return json(res);
}

/** A rag that refuses URLs the way the rag service's check does (INVALID_ARGUMENT naming the field url). */
class RefusingRag extends FakeRag {
  override async ingestUrl(req: ragV1.DeepPartial<ragV1.IngestUrlRequest>): Promise<ragV1.IngestUrlResponse> {
    if (!/^https?:/.test(req.url ?? '')) throw AppError.invalid('url is not fetchable: only http and https URLs are fetched, not ftp', { url: 'only http and https URLs are fetched, not ftp' });
    return super.ingestUrl(req);
  }
}

describe('POST /api/personas/{id}/ingest', () => {
  let t: App;
  let rag: RefusingRag;
  beforeEach(() => {
    rag = new RefusingRag();
    t = testApp({ rag });
  });

  it('queues a URL ingestion after checking the persona and answers 202 with a job id', async () => {
    const p = await createPersona(t);
    const res = await t.gateway.app.inject({ method: 'POST', url: `/api/personas/${p.id}/ingest`, headers: alice, payload: { url: 'https://example.com/guide', title: 'Guide' } });
    assert.equal(res.statusCode, 202, res.body);
    const { job_id } = json(res);
    assert.equal(typeof job_id, 'string');
    assert.deepEqual(
      rag.urls.map((u) => ({ ownerId: u.ownerId, personaId: u.personaId, url: u.url, title: u.title })),
      [{ ownerId: 'alice', personaId: p.id, url: 'https://example.com/guide', title: 'Guide' }],
    );
    const job = await t.gateway.app.inject({ method: 'GET', url: `/api/ingest_jobs/${job_id}`, headers: alice });
    assert.equal(job.statusCode, 200, job.body);
    assert.equal(json(job).status, 'queued');
  });

  it('answers 404 for another owner’s persona and queues nothing', async () => {
    const p = await createPersona(t, bob);
    assertError(await t.gateway.app.inject({ method: 'POST', url: `/api/personas/${p.id}/ingest`, headers: alice, payload: { url: 'https://example.com/' } }), 404, 'not_found');
    assert.equal(rag.urls.length, 0);
  });

  it('answers 400 naming the field for a missing, mistyped or refused url and for unknown fields', async () => {
    const p = await createPersona(t);
    const url = `/api/personas/${p.id}/ingest`;
    assertError(await t.gateway.app.inject({ method: 'POST', url, headers: alice, payload: {} }), 400, 'invalid_argument');
    assertError(await t.gateway.app.inject({ method: 'POST', url, headers: alice, payload: { url: 42 } }), 400, 'invalid_argument');
    assertError(await t.gateway.app.inject({ method: 'POST', url, headers: alice, payload: { url: '' } }), 400, 'invalid_argument');
    assertError(await t.gateway.app.inject({ method: 'POST', url, headers: alice, payload: { url: 'https://example.com/', depth: 3 } }), 400, 'invalid_argument');
    assertError(await t.gateway.app.inject({ method: 'POST', url, headers: alice, payload: { url: 'https://example.com/', title: 't'.repeat(501) } }), 400, 'invalid_argument');
    const refused = assertError(await t.gateway.app.inject({ method: 'POST', url, headers: alice, payload: { url: 'ftp://example.com/file' } }), 400, 'invalid_argument');
    assert.match(refused.details.fields.url, /only http and https/);
    assert.equal(rag.urls.length, 0);
  });

  it('refuses requests without an API key with 401', async () => {
    assertError(await t.gateway.app.inject({ method: 'POST', url: '/api/personas/p1/ingest', payload: { url: 'https://example.com/' } }), 401, 'unauthenticated');
  });
});
