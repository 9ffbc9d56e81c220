import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { configureLogger } from '@chat/logger';
import { LanceVectorStore } from '../src/adapters/lancedb/store.js';
import { hashEmbed } from '../src/domain/hash-embedder.js';
import type { StoredChunk } from '../src/domain/types.js';

function chunk(id: string, personaId: string, sourceId: string, text: string): StoredChunk {
  return { id, personaId, sourceId, title: `title ${sourceId}`, url: '', text, vector: hashEmbed(text) };
}

describe('the LanceDB vector store', function () {
  this.timeout(30_000);
  const logger = configureLogger({ silent: true });
  let dir: string;
  let store: LanceVectorStore;

  beforeEach(async () => {
    dir = mkdtempSync(join(tmpdir(), 'rag-lance-'));
    store = await LanceVectorStore.open(dir, logger);
  });
  afterEach(async () => {
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('finds nothing before the first upsert', async () => {
    assert.deepEqual(await store.search('p1', hashEmbed('anything'), 5), []);
    await store.deleteBySource('s1');
  });

  it('returns the closest chunks first with a cosine score', async () => {
    await store.upsert([
      chunk('c1', 'p1', 's1', 'Ada loves lemon cake with icing.'),
      chunk('c2', 'p1', 's1', 'The train leaves at nine.'),
      chunk('c3', 'p1', 's2', 'Lemon trees grow in the south.'),
    ]);
    const hits = await store.search('p1', hashEmbed('lemon cake'), 3);
    assert.equal(hits.length, 3);
    assert.equal(hits[0]!.id, 'c1');
    assert.equal(hits[0]!.sourceId, 's1');
    assert.equal(hits[0]!.title, 'title s1');
    assert.ok(hits[0]!.score > hits[1]!.score && hits[1]!.score >= hits[2]!.score);
    assert.ok(hits[0]!.score <= 1 && hits[0]!.score > 0.3);
    const exact = await store.search('p1', hashEmbed('The train leaves at nine.'), 1);
    assert.ok(Math.abs(exact[0]!.score - 1) < 1e-4);
  });

  it('keeps personas apart, even with quotes in the persona id', async () => {
    await store.upsert([chunk('a', 'p1', 's1', 'secret of persona one'), chunk('b', "p2' OR '1'='1", 's2', 'secret of persona two')]);
    const one = await store.search('p1', hashEmbed('secret persona'), 10);
    assert.deepEqual(
      one.map((h) => h.id),
      ['a'],
    );
    const two = await store.search("p2' OR '1'='1", hashEmbed('secret persona'), 10);
    assert.deepEqual(
      two.map((h) => h.id),
      ['b'],
    );
    assert.deepEqual(await store.search('p3', hashEmbed('secret persona'), 10), []);
  });

  it('replaces a chunk upserted again with the same id', async () => {
    await store.upsert([chunk('c1', 'p1', 's1', 'old text')]);
    await store.upsert([chunk('c1', 'p1', 's1', 'new text')]);
    assert.equal(await store.count(), 1);
    const [hit] = await store.search('p1', hashEmbed('new text'), 5);
    assert.equal(hit!.text, 'new text');
  });

  it('deletes by source and by persona', async () => {
    await store.upsert([chunk('c1', 'p1', 's1', 'one'), chunk('c2', 'p1', 's2', 'two'), chunk('c3', 'p2', 's3', 'three')]);
    await store.deleteBySource('s1');
    assert.deepEqual(
      (await store.search('p1', hashEmbed('one two'), 10)).map((h) => h.id),
      ['c2'],
    );
    await store.deleteByPersona('p1');
    assert.equal(await store.count('p1'), 0);
    assert.equal(await store.count('p2'), 1);
  });

  it('serialises concurrent writes and keeps the data after reopening', async () => {
    await Promise.all(Array.from({ length: 10 }, (_, i) => store.upsert([chunk(`c${i}`, 'p1', `s${i % 3}`, `text number ${i}`)])));
    await Promise.all([store.deleteBySource('s0'), store.upsert([chunk('late', 'p1', 's9', 'late text')])]);
    await store.close();
    store = await LanceVectorStore.open(dir, logger);
    assert.equal(await store.count('p1'), 10 - 4 + 1);
  });
});
