import assert from 'node:assert/strict';
import { LocalHashEmbedder, hashEmbed } from '../src/domain/hash-embedder.js';

function cosine(a: number[], b: number[]): number {
  return a.reduce((s, x, i) => s + x * b[i]!, 0);
}

describe('the local hash embedder', () => {
  const embedder = new LocalHashEmbedder();

  it('is named local-hash-384 and says it is local', () => {
    assert.equal(embedder.name, 'local-hash-384');
    assert.equal(embedder.dimensions, 384);
    assert.equal(embedder.local, true);
  });

  it('gives the same vector for the same text every time', async () => {
    const [a, b] = await embedder.embed(['The cat sat on the mat.', 'The cat sat on the mat.']);
    assert.deepEqual(a, b);
    assert.deepEqual(hashEmbed('The cat sat on the mat.'), a);
  });

  it('ignores letter case', () => {
    assert.deepEqual(hashEmbed('Hello World'), hashEmbed('hello world'));
  });

  it('makes vectors of 384 numbers with length one', async () => {
    const [v] = await embedder.embed(['Lemon cake is the best cake in the world']);
    assert.equal(v!.length, 384);
    assert.ok(Math.abs(Math.sqrt(cosine(v!, v!)) - 1) < 1e-9);
  });

  it('gives the zero vector for text without words', () => {
    assert.ok(hashEmbed('... !!! ???').every((x) => x === 0));
  });

  it('puts similar texts closer than unrelated ones', async () => {
    const [q, near, far] = await embedder.embed([
      'What is her favourite cake?',
      'Her favourite cake is lemon cake with icing.',
      'The train to Berlin leaves at nine in the morning.',
    ]);
    assert.ok(cosine(q!, near!) > cosine(q!, far!) + 0.1, `near ${cosine(q!, near!)} far ${cosine(q!, far!)}`);
  });

  it('counts word order through bigrams', () => {
    const a = hashEmbed('dog bites man');
    const b = hashEmbed('man bites dog');
    assert.ok(cosine(a, b) < 0.999);
    assert.ok(cosine(a, b) > 0.5);
  });
});
