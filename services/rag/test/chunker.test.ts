import assert from 'node:assert/strict';
import { chunkText, splitText } from '../src/domain/chunker.js';

function sentence(i: number): string {
  return `Sentence number ${i} talks about topic ${i % 7} in some detail.`;
}

describe('the chunker', () => {
  it('returns no chunks for empty or blank text', () => {
    assert.deepEqual(splitText(''), []);
    assert.deepEqual(splitText('  \n\n \t'), []);
  });

  it('keeps a short text as one chunk', () => {
    assert.deepEqual(splitText('Hello world. How are you?'), ['Hello world. How are you?']);
  });

  it('never makes a chunk longer than the chunk size', () => {
    const text = Array.from({ length: 300 }, (_, i) => sentence(i)).join(' ');
    const chunks = splitText(text, { chunkSize: 200, chunkOverlap: 40 });
    assert.ok(chunks.length > 10);
    for (const c of chunks) assert.ok(c.length <= 200, `chunk of ${c.length} chars`);
  });

  it('splits at paragraphs before sentences and words', () => {
    const p1 = 'First paragraph. It is short.';
    const p2 = 'Second paragraph. It is also short.';
    assert.deepEqual(splitText(`${p1}\n\n${p2}`, { chunkSize: 40, chunkOverlap: 0 }), [p1, p2]);
  });

  it('splits a long paragraph at sentence ends', () => {
    const text = [sentence(1), sentence(2), sentence(3), sentence(4)].join(' ');
    const chunks = splitText(text, { chunkSize: 60, chunkOverlap: 0 });
    for (const c of chunks) assert.match(c, /\.$/, `chunk should end at a sentence: ${c}`);
  });

  it('splits a sentence longer than the chunk size at words, and a huge word at characters', () => {
    const words = Array.from({ length: 100 }, (_, i) => `word${i}`).join(' ');
    for (const c of splitText(words, { chunkSize: 50, chunkOverlap: 10 })) {
      assert.ok(c.length <= 50);
      for (const w of c.split(' ')) assert.match(w, /^word\d+$/, `chunk cut inside a word: ${c}`);
    }
    const huge = 'x'.repeat(130);
    const parts = splitText(huge, { chunkSize: 50, chunkOverlap: 0 });
    assert.deepEqual(
      parts.map((p) => p.length),
      [50, 50, 30],
    );
  });

  it('overlaps neighbouring chunks', () => {
    const text = Array.from({ length: 40 }, (_, i) => sentence(i)).join(' ');
    const chunks = splitText(text, { chunkSize: 200, chunkOverlap: 80 });
    for (let i = 1; i < chunks.length; i++) {
      const prevSentences = chunks[i - 1]!.split(/(?<=\.)\s+/);
      const last = prevSentences[prevSentences.length - 1]!;
      assert.ok(chunks[i]!.startsWith(last) || chunks[i]!.includes(last), `chunk ${i} should repeat the end of chunk ${i - 1}`);
    }
  });

  it('loses no words of the text', () => {
    const text = Array.from({ length: 120 }, (_, i) => sentence(i)).join('\n');
    const chunks = splitText(text, { chunkSize: 300, chunkOverlap: 50 });
    const seen = new Set(chunks.join(' ').split(/\s+/));
    for (const w of text.split(/\s+/)) assert.ok(seen.has(w), `missing word ${w}`);
  });

  it('uses 800 characters with 100 overlap by default', () => {
    const text = Array.from({ length: 200 }, (_, i) => sentence(i)).join(' ');
    const chunks = splitText(text);
    for (const c of chunks) assert.ok(c.length <= 800);
    assert.ok(chunks[0]!.length > 700, 'the first chunk should be nearly full');
  });

  it('gives every chunk the source title and an index', () => {
    const text = Array.from({ length: 50 }, (_, i) => sentence(i)).join(' ');
    const chunks = chunkText(text, 'My notes', { chunkSize: 200, chunkOverlap: 20 });
    assert.ok(chunks.length > 1);
    chunks.forEach((c, i) => {
      assert.equal(c.title, 'My notes');
      assert.equal(c.index, i);
    });
  });

  it('rejects an overlap that is not smaller than the chunk size', () => {
    assert.throws(() => splitText('abc', { chunkSize: 10, chunkOverlap: 10 }));
  });
});
