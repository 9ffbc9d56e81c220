import assert from 'node:assert/strict';
import { ragV1 } from '@chat/contracts';
import { alice, bob, testApp } from './harness.js';

type App = ReturnType<typeof testApp>;

const json = (res: { body: string }) => JSON.parse(res.body);

function assertError(res: { statusCode: number; body: string }, status: number, code: string): void {
  assert.equal(res.statusCode, status, res.body);
  assert.equal(json(res).error.code, code, res.body);
}

async function createPersona(t: App, headers = alice, settings?: object) {
  const res = await t.gateway.app.inject({ method: 'POST', url: '/api/personas', headers, payload: { name: 'Ada', system_prompt: 'You are Ada.', ...(settings ? { settings } : {}) } });
  assert.equal(res.statusCode, 201, res.body);
  return json(res) as { id: string };
}

describe('gateway: knowledge management and the retrieval test', () => {
  let t: App;
  beforeEach(() => {
    t = testApp();
  });
  afterEach(async () => {
    await t.gateway.app.close();
  });

  const seed = (personaId: string, owner = 'alice') =>
    t.rag.knowledge.set(`${owner}/${personaId}`, [
      ragV1.KnowledgeSource.fromPartial({ id: 'src_1', kind: ragV1.SourceKind.SOURCE_KIND_TEXT, title: 'Notes', url: '', chunks: 3, bytes: 120, createdAt: new Date('2026-01-02T03:04:05Z') }),
      ragV1.KnowledgeSource.fromPartial({ id: 'src_2', kind: ragV1.SourceKind.SOURCE_KIND_URL, title: 'Page', url: 'https://example.com/a', chunks: 2, bytes: 80 }),
    ]);

  it('answers the stats and sources of a persona’s knowledge', async () => {
    const p = await createPersona(t);
    seed(p.id);
    const res = await t.gateway.app.inject({ method: 'GET', url: `/api/personas/${p.id}/knowledge`, headers: alice });
    assert.equal(res.statusCode, 200, res.body);
    assert.deepEqual(json(res), {
      stats: {
        sources: 2,
        chunks: 5,
        bytes: 200,
        embedding_model: 'local-hash-384',
        embedding_dimensions: 384,
        configured_embedding_model: 'local-hash-384',
        last_update: null,
        reembed_job_id: null,
      },
      sources: [
        { id: 'src_1', kind: 'text', title: 'Notes', url: '', chunks: 3, bytes: 120, created_at: '2026-01-02T03:04:05.000Z' },
        { id: 'src_2', kind: 'url', title: 'Page', url: 'https://example.com/a', chunks: 2, bytes: 80, created_at: null },
      ],
    });
  });

  it('deletes one source (204), then answers 404 for it', async () => {
    const p = await createPersona(t);
    seed(p.id);
    const url = `/api/personas/${p.id}/knowledge/sources/src_1`;
    const res = await t.gateway.app.inject({ method: 'DELETE', url, headers: alice });
    assert.equal(res.statusCode, 204, res.body);
    assert.equal(res.body, '');
    assert.deepEqual(
      t.rag.knowledge.get(`alice/${p.id}`)!.map((s) => s.id),
      ['src_2'],
    );
    assertError(await t.gateway.app.inject({ method: 'DELETE', url, headers: alice }), 404, 'not_found');
  });

  it('purges the knowledge (204) and queues a re-embed (202 with a job the job endpoint reports)', async () => {
    const p = await createPersona(t);
    seed(p.id);
    const purge = await t.gateway.app.inject({ method: 'DELETE', url: `/api/personas/${p.id}/knowledge`, headers: alice });
    assert.equal(purge.statusCode, 204, purge.body);
    assert.deepEqual(t.rag.purged, [p.id]);
    const re = await t.gateway.app.inject({ method: 'POST', url: `/api/personas/${p.id}/knowledge/reembed`, headers: alice });
    assert.equal(re.statusCode, 202, re.body);
    const { job_id } = json(re);
    const job = await t.gateway.app.inject({ method: 'GET', url: `/api/ingest_jobs/${job_id}`, headers: alice });
    assert.equal(job.statusCode, 200, job.body);
    assert.equal(json(job).status, 'queued');
  });

  it('answers 404 for unknown and foreign personas on every knowledge route, and changes nothing', async () => {
    const p = await createPersona(t, bob);
    seed(p.id, 'bob');
    for (const id of [p.id, 'nope']) {
      assertError(await t.gateway.app.inject({ method: 'GET', url: `/api/personas/${id}/knowledge`, headers: alice }), 404, 'not_found');
      assertError(await t.gateway.app.inject({ method: 'DELETE', url: `/api/personas/${id}/knowledge/sources/src_1`, headers: alice }), 404, 'not_found');
      assertError(await t.gateway.app.inject({ method: 'DELETE', url: `/api/personas/${id}/knowledge`, headers: alice }), 404, 'not_found');
      assertError(await t.gateway.app.inject({ method: 'POST', url: `/api/personas/${id}/knowledge/reembed`, headers: alice }), 404, 'not_found');
    }
    assert.equal(t.rag.knowledge.get(`bob/${p.id}`)!.length, 2);
    assert.deepEqual(t.rag.purged, []);
  });

  it('passes search options to the rag service, persona settings filling the unset ones', async () => {
    const p = await createPersona(t, alice, { retrieval: { top_k: 7, score_threshold: 0.2, mode: 'hybrid', rerank: true } });
    const res = await t.gateway.app.inject({ method: 'POST', url: `/api/personas/${p.id}/search`, headers: alice, payload: { query: 'engines' } });
    assert.equal(res.statusCode, 200, res.body);
    const body = json(res);
    assert.equal(body.results[0].chunk_id, 'chunk_1');
    assert.deepEqual(body.results[0].scores, {});
    assert.equal(body.query, 'engines');
    const r = t.rag.retrieved[0]!;
    assert.equal(r.topK, 7);
    assert.ok(Math.abs(r.scoreThreshold! - 0.2) < 1e-6);
    assert.equal(r.mode, ragV1.RetrievalMode.RETRIEVAL_MODE_HYBRID);
    assert.equal(r.rerank, true);
    assert.equal(r.queryRewrite, false);

    const res2 = await t.gateway.app.inject({
      method: 'POST',
      url: `/api/personas/${p.id}/search`,
      headers: alice,
      payload: { query: 'when was it built', top_k: 2, mode: 'dense', rerank: false, query_rewrite: true, history: [{ role: 'user', content: 'the lighthouse' }, { role: 'assistant', content: 'red' }] },
    });
    assert.equal(res2.statusCode, 200, res2.body);
    const r2 = t.rag.retrieved[1]!;
    assert.equal(r2.topK, 2);
    assert.equal(r2.mode, ragV1.RetrievalMode.RETRIEVAL_MODE_DENSE);
    assert.equal(r2.rerank, false);
    assert.equal(r2.queryRewrite, true);
    assert.deepEqual(
      r2.history.map((h) => [h.role, h.content]),
      [
        [ragV1.ChatRole.CHAT_ROLE_USER, 'the lighthouse'],
        [ragV1.ChatRole.CHAT_ROLE_ASSISTANT, 'red'],
      ],
    );
  });

  it('rejects bad search options with 400', async () => {
    const p = await createPersona(t);
    const url = `/api/personas/${p.id}/search`;
    assertError(await t.gateway.app.inject({ method: 'POST', url, headers: alice, payload: { query: 'x', mode: 'sparse' } }), 400, 'invalid_argument');
    assertError(await t.gateway.app.inject({ method: 'POST', url, headers: alice, payload: { query: 'x', rerank: 'yes' } }), 400, 'invalid_argument');
    assertError(await t.gateway.app.inject({ method: 'POST', url, headers: alice, payload: { query: 'x', history: [{ role: 'system', content: 'x' }] } }), 400, 'invalid_argument');
    const long = Array.from({ length: 21 }, () => ({ role: 'user', content: 'x' }));
    assertError(await t.gateway.app.inject({ method: 'POST', url, headers: alice, payload: { query: 'x', history: long } }), 400, 'invalid_argument');
    assert.equal(t.rag.retrieved.length, 0);
  });
});
