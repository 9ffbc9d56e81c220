import assert from 'node:assert/strict';
import { chunkText, embeddingInput, splitText } from '../src/domain/chunker.js';

function sentence(i: number): string {
  return `Sentence number ${i} talks about topic ${i % 7} in some detail.`;
}

describe('the chunker (LangChain RecursiveCharacterTextSplitter)', () => {
  it('returns no chunks for empty or blank text', async () => {
    assert.deepEqual(await splitText(''), []);
    assert.deepEqual(await splitText('  \n\n \t'), []);
  });

  it('keeps a short text as one chunk', async () => {
    assert.deepEqual(await splitText('Hello world. How are you?'), ['Hello world. How are you?']);
  });

  it('never makes a chunk longer than the chunk size', async () => {
    const text = Array.from({ length: 300 }, (_, i) => sentence(i)).join(' ');
    const chunks = await splitText(text, { chunkSize: 200, chunkOverlap: 40 });
    assert.ok(chunks.length > 10);
    for (const c of chunks) assert.ok(c.length <= 200, `chunk of ${c.length} chars`);
  });

  it('splits at paragraphs before sentences and words', async () => {
    const p1 = 'First paragraph. It is short.';
    const p2 = 'Second paragraph. It is also short.';
    assert.deepEqual(await splitText(`${p1}\n\n${p2}`, { chunkSize: 40, chunkOverlap: 0 }), [p1, p2]);
  });

  it('cuts a long paragraph between sentences, not inside them', async () => {
    const sentences = [sentence(1), sentence(2), sentence(3), sentence(4)];
    const chunks = await splitText(sentences.join(' '), { chunkSize: 60, chunkOverlap: 0 });
    assert.ok(chunks.length >= 4);
    for (const c of chunks) assert.match(c, /^Sentence number \d/, `chunk should start a sentence: ${c}`);
  });

  it('splits a sentence longer than the chunk size at words, and a huge word at characters', async () => {
    const words = Array.from({ length: 100 }, (_, i) => `word${i}`).join(' ');
    for (const c of await splitText(words, { chunkSize: 50, chunkOverlap: 10 })) {
      assert.ok(c.length <= 50);
      for (const w of c.split(' ')) assert.match(w, /^word\d+$/, `chunk cut inside a word: ${c}`);
    }
    const parts = await splitText('x'.repeat(130), { chunkSize: 50, chunkOverlap: 0 });
    assert.equal(parts.join(''), 'x'.repeat(130));
    for (const p of parts) assert.ok(p.length <= 50);
  });

  it('overlaps neighbouring chunks', async () => {
    const text = Array.from({ length: 40 }, (_, i) => sentence(i)).join(' ');
    const chunks = await splitText(text, { chunkSize: 200, chunkOverlap: 80 });
    assert.ok(chunks.length > 3);
    for (let i = 1; i < chunks.length; i++) {
      const prevWords = chunks[i - 1]!.split(' ');
      const tail = prevWords.slice(-3).join(' ');
      assert.ok(chunks[i]!.includes(tail), `chunk ${i} should repeat the end of chunk ${i - 1} (${tail})`);
    }
    const none = await splitText(text, { chunkSize: 200, chunkOverlap: 0 });
    assert.ok(none.length < chunks.length, 'no overlap needs fewer chunks');
  });

  it('loses no words of the text', async () => {
    const text = Array.from({ length: 120 }, (_, i) => sentence(i)).join('\n');
    const chunks = await splitText(text, { chunkSize: 300, chunkOverlap: 50 });
    const seen = new Set(chunks.join(' ').split(/\s+/).map((w) => w.replace(/\.$/, '')));
    for (const w of text.split(/\s+/)) assert.ok(seen.has(w.replace(/\.$/, '')), `missing word ${w}`);
  });

  it('uses 800 characters with 100 overlap by default', async () => {
    const text = Array.from({ length: 200 }, (_, i) => sentence(i)).join(' ');
    const chunks = await splitText(text);
    for (const c of chunks) assert.ok(c.length <= 800);
    assert.ok(chunks[0]!.length > 700, 'the first chunk should be nearly full');
  });

  it('gives every chunk the source title and an index, and embeds the title with each chunk', async () => {
    const text = Array.from({ length: 50 }, (_, i) => sentence(i)).join(' ');
    const chunks = await chunkText(text, 'My notes', { chunkSize: 200, chunkOverlap: 20 });
    assert.ok(chunks.length > 1);
    chunks.forEach((c, i) => {
      assert.equal(c.title, 'My notes');
      assert.equal(c.index, i);
      assert.equal(embeddingInput(c), `My notes\n${c.text}`);
    });
    assert.equal(embeddingInput({ title: '', text: 'plain' }), 'plain');
  });

  it('rejects an overlap that is not smaller than the chunk size, and a size below 1', async () => {
    await assert.rejects(splitText('abc', { chunkSize: 10, chunkOverlap: 10 }), /chunkOverlap/);
    await assert.rejects(splitText('abc', { chunkSize: 0, chunkOverlap: 0 }), /chunkSize/);
  });
});
