import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Code, isAppError } from '@chat/errors';
import { configureLogger } from '@chat/logger';
import { HttpReranker } from '../src/adapters/http/reranker.js';
import { LanceVectorStore } from '../src/adapters/lancedb/store.js';
import { hashEmbed, LocalHashEmbedder } from '../src/domain/hash-embedder.js';
import type { Reranker, SourceRepository, SpaceRepository } from '../src/domain/ports.js';
import { Retriever } from '../src/domain/retrieval.js';
import { KnowledgeIndex } from '../src/domain/spaces.js';
import type { EmbeddingSpace } from '../src/domain/types.js';

const logger = configureLogger({ silent: true });

/** A /rerank server (Cohere shape): scores a document by how often it contains the query's first word; scriptable status. */
function rerankServer(): Promise<{ server: Server; url: string; requests: Array<{ headers: IncomingMessage['headers']; body: any }>; status: { code: number } }> {
  const requests: Array<{ headers: IncomingMessage['headers']; body: any }> = [];
  const status = { code: 200 };
  const server = createServer((req, res) => {
    let raw = '';
    req.on('data', (d) => (raw += d)).on('end', () => {
      const body = JSON.parse(raw);
      requests.push({ headers: req.headers, body });
      if (status.code !== 200) {
        res.writeHead(status.code, { 'content-type': 'application/json' }).end('{"message":"scripted"}');
        return;
      }
      const word = String(body.query).split(' ')[0]!.toLowerCase();
      const results = (body.documents as string[])
        .map((d, index) => ({ index, relevance_score: d.toLowerCase().split(word).length - 1 }))
        .sort((a, b) => b.relevance_score - a.relevance_score);
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ id: 'r1', results }));
    });
  });
  return new Promise((resolve) =>
    server.listen(0, '127.0.0.1', () => resolve({ server, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1/rerank`, requests, status })),
  );
}

describe('the /rerank endpoint reranker', () => {
  let srv: Awaited<ReturnType<typeof rerankServer>>;
  before(async () => {
    srv = await rerankServer();
  });
  after(async () => {
    await new Promise((r) => srv.server.close(r));
  });

  it('sends the query and documents and maps the scores back by index', async () => {
    const r = new HttpReranker({ url: srv.url, model: 'bge-reranker', apiKey: 'rk-secret' });
    assert.equal(r.name, 'bge-reranker');
    assert.equal(r.local, false);
    const scores = await r.score('lemon cake', ['no match', 'lemon lemon', 'a lemon']);
    assert.deepEqual(scores, [0, 2, 1]);
    const req = srv.requests.at(-1)!;
    assert.deepEqual(req.body, { model: 'bge-reranker', query: 'lemon cake', documents: ['no match', 'lemon lemon', 'a lemon'], top_n: 3 });
    assert.equal(req.headers.authorization, 'Bearer rk-secret');
    assert.deepEqual(await r.score('x', []), [], 'nothing to rerank sends nothing');
  });

  it('fails with an AppError on an error status or an unreachable endpoint', async () => {
    srv.status.code = 503;
    try {
      await assert.rejects(new HttpReranker({ url: srv.url, model: 'm' }).score('q', ['a']), (err: unknown) => isAppError(err) && err.code === Code.Unavailable && err.reason === 'rerank_failed');
      srv.status.code = 400;
      await assert.rejects(new HttpReranker({ url: srv.url, model: 'm' }).score('q', ['a']), (err: unknown) => isAppError(err) && err.code === Code.FailedPrecondition);
    } finally {
      srv.status.code = 200;
    }
    await assert.rejects(new HttpReranker({ url: 'http://127.0.0.1:9/rerank', model: 'm' }).score('q', ['a']), (err: unknown) => isAppError(err) && err.reason === 'rerank_unavailable');
  });

  describe('in retrieval', () => {
    let dir: string;
    let store: LanceVectorStore;
    const space: EmbeddingSpace = { id: 'sp1', personaId: 'p1', ownerId: 'o1', provider: 'local', model: 'local-hash-384', baseUrl: '', dimensions: 384, state: 'active', createdAt: new Date() };
    const retriever = (reranker: Reranker, errors: string[] = []) => {
      const spaces = { active: async () => space } as unknown as SpaceRepository;
      const sources = { ownersOfPersona: async () => ['o1'] } as unknown as SourceRepository;
      const embedder = new LocalHashEmbedder();
      const index = new KnowledgeIndex({ store, spaces, profiles: { configured: async () => ({ spec: space, apiKey: '' }) }, makeEmbedder: () => embedder, logger });
      return new Retriever({ index, sources, reranker, onError: (what) => errors.push(what) });
    };

    before(async () => {
      dir = mkdtempSync(join(tmpdir(), 'rag-rerank-'));
      store = await LanceVectorStore.open(dir, logger);
      const texts = ['cake recipes and cake tips', 'lemon trees in the south', 'lemon cake with lemon icing and lemon zest'];
      await store.upsert(space, texts.map((text, i) => ({ id: `c${i}`, personaId: 'p1', sourceId: 's', title: '', url: '', text, vector: hashEmbed(text) })));
    });
    after(async () => {
      await store.close();
      rmSync(dir, { recursive: true, force: true });
    });

    it('orders the candidates by the endpoint’s scores and names it', async () => {
      const r = await retriever(new HttpReranker({ url: srv.url, model: 'bge-reranker' })).retrieveDetailed({ ownerId: 'o1', personaId: 'p1', query: 'lemon cake', topK: 3, mode: 'hybrid', rerank: true, queryRewrite: false });
      assert.equal(r.reranker, 'bge-reranker');
      assert.deepEqual(
        r.chunks.map((c) => c.id),
        ['c2', 'c1', 'c0'],
      );
      assert.deepEqual(
        r.chunks.map((c) => c.scores?.rerank),
        [3, 1, 0],
      );
    });

    it('keeps the fused order, unlabelled, when the reranker fails', async () => {
      const errors: string[] = [];
      const fused = await retriever(new HttpReranker({ url: srv.url, model: 'm' })).retrieveDetailed({ ownerId: 'o1', personaId: 'p1', query: 'lemon cake', topK: 3, mode: 'hybrid', rerank: false, queryRewrite: false });
      const r = await retriever(new HttpReranker({ url: 'http://127.0.0.1:9/rerank', model: 'm' }), errors).retrieveDetailed({ ownerId: 'o1', personaId: 'p1', query: 'lemon cake', topK: 3, mode: 'hybrid', rerank: true, queryRewrite: false });
      assert.equal(r.reranker, undefined);
      assert.deepEqual(
        r.chunks.map((c) => c.id),
        fused.chunks.map((c) => c.id),
      );
      assert.ok(r.chunks.every((c) => c.scores?.rerank === undefined));
      assert.deepEqual(errors, ['reranking']);
    });
  });
});
