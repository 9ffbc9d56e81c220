import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { devEmbed, startDevModel, type DevModel, type EmbeddingScript } from '@chat/devmodel';
import { Code, isAppError } from '@chat/errors';
import { configureLogger } from '@chat/logger';
import { OpenAiEmbedder } from '../src/adapters/openai/embeddings.js';

const logger = configureLogger({ silent: true });

// The development model serves the real OpenAI embeddings protocol on loopback; the adapter goes
// through the real `openai` client.
describe('the OpenAI-compatible embedder', function () {
  this.timeout(30_000);
  let model: DevModel;
  const script: EmbeddingScript = { faults: [] };

  before(async () => {
    model = await startDevModel({ logger, script: { embeddings: script } });
  });
  after(async () => {
    await model?.stop();
  });
  beforeEach(() => {
    script.faults = [];
  });

  const embedder = (over: Partial<ConstructorParameters<typeof OpenAiEmbedder>[0]> = {}) =>
    new OpenAiEmbedder({ baseUrl: model.endpoint.baseUrl, apiKey: 'test-key', model: 'dev-embed-32', batchSize: 3, maxAttempts: 3, backoffMs: 5, ...over });

  it('embeds in batches, in order, and learns the vector size', async () => {
    const e = embedder();
    assert.equal(e.dimensions, 0);
    assert.equal(e.local, false);
    assert.equal(e.name, 'dev-embed-32');
    const texts = Array.from({ length: 7 }, (_, i) => `text number ${i} about lemons`);
    const before = model.stats.embeddings ?? 0;
    const vectors = await e.embed(texts);
    assert.equal((model.stats.embeddings ?? 0) - before, 3, '7 texts in batches of 3 are 3 requests');
    assert.equal(e.requests, 3);
    assert.equal(vectors.length, 7);
    assert.equal(e.dimensions, 32);
    vectors.forEach((v, i) => assert.deepEqual(v, devEmbed(texts[i]!, 32), `vector ${i} belongs to text ${i}`));
  });

  it('probes the vector size of a fresh endpoint with one request', async () => {
    assert.equal(await embedder({ model: 'dev-embed-48' }).probe(), 48);
    assert.equal(await embedder({ dimensions: 32 }).probe(), 32, 'a known size needs no request');
  });

  it('retries rate limits and server errors with backoff, then succeeds', async () => {
    script.faults = [{ status: 429 }, { status: 503 }];
    const e = embedder();
    const [v] = await e.embed(['lemon cake']);
    assert.deepEqual(v, devEmbed('lemon cake', 32));
    assert.equal(e.requests, 3, 'two failures and one success');
  });

  it('gives up after maxAttempts with a retryable code, and never retries a client error', async () => {
    script.faults = [{ status: 500 }, { status: 500 }, { status: 500 }];
    const e = embedder();
    await assert.rejects(e.embed(['x']), (err: unknown) => isAppError(err) && err.code === Code.Unavailable && err.reason === 'embedding_unavailable');
    assert.equal(e.requests, 3);

    script.faults = [{ status: 400 }];
    const f = embedder();
    await assert.rejects(f.embed(['x']), (err: unknown) => isAppError(err) && err.code === Code.FailedPrecondition && err.reason === 'embedding_rejected');
    assert.equal(f.requests, 1, 'a 400 is not retried');

    script.faults = [{ status: 401 }];
    const g = embedder();
    await assert.rejects(g.embed(['x']), (err: unknown) => isAppError(err) && err.reason === 'embedding_auth_failed' && !err.message.includes('test-key'));
  });

  it('refuses vectors of another size than the recorded one', async () => {
    const e = embedder({ dimensions: 16 });
    await assert.rejects(e.embed(['x']), (err: unknown) => isAppError(err) && err.reason === 'embedding_dimension_changed');
  });

  it('reports an unreachable endpoint as UNAVAILABLE after its retries', async () => {
    const e = embedder({ baseUrl: 'http://127.0.0.1:9/v1', maxAttempts: 2 });
    await assert.rejects(e.embed(['x']), (err: unknown) => isAppError(err) && err.code === Code.Unavailable && /could not be reached/.test(err.message));
    assert.equal(e.requests, 2);
  });

  it('rejects an answer with the wrong number of vectors', async () => {
    // A broken server speaking the protocol: one vector for any number of texts.
    const server: Server = createServer((req, res) => {
      req.resume().on('end', () => {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ object: 'list', model: 'm', data: [{ object: 'embedding', index: 0, embedding: [1, 0] }], usage: { prompt_tokens: 1, total_tokens: 1 } }));
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    try {
      const port = (server.address() as AddressInfo).port;
      const e = new OpenAiEmbedder({ baseUrl: `http://127.0.0.1:${port}/v1`, apiKey: 'k', model: 'm', maxAttempts: 1 });
      await assert.rejects(e.embed(['a', 'b']), (err: unknown) => isAppError(err) && err.reason === 'embedding_invalid');
    } finally {
      await new Promise((r) => server.close(r));
    }
  });
});
