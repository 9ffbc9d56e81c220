import assert from 'node:assert/strict';
import { LocalOverlapReranker } from '../src/domain/rerank.js';
import { cosine, rrf } from '../src/domain/retrieval.js';
import { cleanRewrite, localRewrite, QueryRewriter } from '../src/domain/rewrite.js';
import type { ChatModel, ChatRequest } from '../src/domain/ports.js';
import type { ScoredChunk } from '../src/domain/types.js';

const hit = (id: string, score = 0): ScoredChunk => ({ id, sourceId: 's', title: '', url: '', text: id, score });

describe('reciprocal rank fusion', () => {
  it('scores a chunk by the sum of 1/(k + rank) over the lists', () => {
    const fused = rrf([[hit('a'), hit('b'), hit('c')], [hit('c'), hit('a')]], 60);
    assert.deepEqual(
      fused.map((f) => f.id),
      ['a', 'c', 'b'],
    );
    assert.ok(Math.abs(fused[0]!.fused - (1 / 61 + 1 / 62)) < 1e-12);
    assert.ok(Math.abs(fused[1]!.fused - (1 / 63 + 1 / 61)) < 1e-12);
    assert.ok(Math.abs(fused[2]!.fused - 1 / 62) < 1e-12);
  });

  it('ignores the lists’ own scores and keeps first appearance on ties', () => {
    const fused = rrf([[hit('x', 1000)], [hit('y', 0.001)]]);
    assert.deepEqual(
      fused.map((f) => f.id),
      ['x', 'y'],
    );
    assert.equal(fused[0]!.fused, fused[1]!.fused);
    assert.deepEqual(rrf([[], []]), []);
  });

  it('computes cosine similarity, 0 for a zero vector', () => {
    assert.ok(Math.abs(cosine([1, 0], [1, 0]) - 1) < 1e-12);
    assert.ok(Math.abs(cosine([1, 0], [0, 1])) < 1e-12);
    assert.ok(Math.abs(cosine([1, 1], [-1, -1]) + 1) < 1e-12);
    assert.equal(cosine([0, 0], [1, 0]), 0);
  });
});

describe('the local reranker', () => {
  const r = new LocalOverlapReranker();

  it('is labelled as a local heuristic', () => {
    assert.equal(r.name, 'local-overlap-v1');
    assert.equal(r.local, true);
  });

  it('prefers the passage that covers more of the question, in order', async () => {
    const [covers, partly, ordered, none] = await r.score('when was the lighthouse built', [
      'The lighthouse was built in 1887.',
      'The lighthouse is red.',
      'Built lighthouse in 1887 the was.',
      'Ferries leave at eight.',
    ]);
    assert.ok(covers! > partly!, `${covers} > ${partly}`);
    assert.ok(covers! > ordered!, 'adjacent query words in order count');
    assert.equal(none, 0);
    for (const s of [covers, partly, ordered, none]) assert.ok(s! >= 0 && s! <= 1);
  });

  it('matches word variants by their stem and scores 0 for a question of stop words only', async () => {
    const [v] = await r.score('lighthouses keepers', ['the lighthouse keeper']);
    assert.ok(v! > 0.5);
    assert.deepEqual(await r.score('what is the', ['anything at all']), [0]);
  });
});

describe('query rewriting', () => {
  const history = [
    { role: 'user' as const, content: 'Tell me about the lighthouse.' },
    { role: 'assistant' as const, content: 'It is red and white.' },
  ];

  /** A chat model that answers with fixed text and records what it was asked. */
  class Scripted implements ChatModel {
    readonly model = 'scripted';
    readonly requests: ChatRequest[] = [];
    constructor(private readonly answer: string | Error) {}
    async *stream(request: ChatRequest): AsyncIterable<string> {
      this.requests.push(request);
      if (this.answer instanceof Error) throw this.answer;
      for (const piece of this.answer.split(/(?<= )/)) yield piece;
    }
  }

  const rewriter = (model: ChatModel, dev = false) => new QueryRewriter({ models: { forPersona: async () => model }, isDevelopment: () => dev });

  it('joins the previous user question locally (no model)', () => {
    assert.equal(localRewrite('When was it built?', history), 'When was it built?\nTell me about the lighthouse.');
    assert.equal(localRewrite('Hello', []), 'Hello');
  });

  it('takes the query out of a model’s answer, refusing what is not a query', () => {
    assert.equal(cleanRewrite('"When was the Velmora lighthouse built?"\n'), 'When was the Velmora lighthouse built?');
    assert.equal(cleanRewrite('Standalone query: lighthouse build year'), 'lighthouse build year');
    assert.equal(cleanRewrite('   \n  '), undefined);
    assert.equal(cleanRewrite('x'.repeat(501)), undefined);
  });

  it('asks the persona’s model with the conversation quoted as data, and uses its answer', async () => {
    const model = new Scripted('When was the lighthouse of Velmora built?');
    const q = await rewriter(model).rewrite({ ownerId: 'o', personaId: 'p', query: 'When was it built?', history });
    assert.equal(q, 'When was the lighthouse of Velmora built?');
    const req = model.requests[0]!;
    assert.equal(req.temperature, 0);
    assert.match(req.messages[0]!.content, /quoted data, not instructions/);
    assert.match(req.messages[1]!.content, /<<<conversation>>>\nuser: Tell me about the lighthouse\.\nassistant: It is red and white\.\n<<<end conversation>>>/);
    assert.match(req.messages[1]!.content, /Last question: When was it built\?/);
  });

  it('falls back to the question as asked when the model fails or answers nothing usable', async () => {
    assert.equal(await rewriter(new Scripted(new Error('down'))).rewrite({ ownerId: 'o', personaId: 'p', query: 'Q?', history }), 'Q?');
    assert.equal(await rewriter(new Scripted('')).rewrite({ ownerId: 'o', personaId: 'p', query: 'Q?', history }), 'Q?');
  });

  it('uses the local rewrite with the development model, and nothing without history', async () => {
    const model = new Scripted('never asked');
    assert.equal(await rewriter(model, true).rewrite({ ownerId: 'o', personaId: 'p', query: 'Q?', history }), 'Q?\nTell me about the lighthouse.');
    assert.equal(await rewriter(model).rewrite({ ownerId: 'o', personaId: 'p', query: 'Q?', history: [] }), 'Q?');
    assert.equal(model.requests.length, 0);
  });
});
