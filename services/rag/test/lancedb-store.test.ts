import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { configureLogger } from '@chat/logger';
import { LanceVectorStore } from '../src/adapters/lancedb/store.js';
import { hashEmbed } from '../src/domain/hash-embedder.js';
import { vectorStoreContract, type StoreUnderTest } from './vector-store-contract.js';

const logger = configureLogger({ silent: true });

// Each test gets its own LanceDB directory. The ANN index threshold is low, so the contract also
// runs against tables that have an IVF-PQ vector index (built once a table reaches 1 000 rows).
vectorStoreContract('LanceDB', async (): Promise<StoreUnderTest> => {
  const dir = mkdtempSync(join(tmpdir(), 'rag-lance-'));
  let current = await LanceVectorStore.open(dir, logger, { annIndexThreshold: 1_000 });
  return {
    store: current,
    reopen: async () => (current = await LanceVectorStore.open(dir, logger, { annIndexThreshold: 1_000 })),
    dispose: async () => {
      await current.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
});

describe('the LanceDB store with its ANN index', function () {
  this.timeout(120_000);
  let dir: string;
  let store: LanceVectorStore;
  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'rag-lance-ann-'));
    store = await LanceVectorStore.open(dir, logger, { annIndexThreshold: 1_000 });
  });
  after(async () => {
    await store?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('builds the IVF-PQ index once the table is large, and still searches within one persona and space', async () => {
    const a = { id: 'spacea', personaId: 'persona-a', dimensions: 384 };
    const b = { id: 'spaceb', personaId: 'persona-b', dimensions: 384 };
    const text = (i: number) => `record ${i} of the archive: item ${i % 37} shelf ${i % 11} colour ${['red', 'blue', 'green'][i % 3]}`;
    for (let i = 0; i < 1_200; i += 200) {
      await store.upsert(a, Array.from({ length: 200 }, (_, k) => ({ id: `a${i + k}`, personaId: 'persona-a', sourceId: 'sa', title: '', url: '', text: text(i + k), vector: hashEmbed(text(i + k)) })));
    }
    await store.upsert(b, [{ id: 'b1', personaId: 'persona-b', sourceId: 'sb', title: '', url: '', text: text(5), vector: hashEmbed(text(5)) }]);
    assert.deepEqual(await store.ensureIndexes(384), { ann: true, fts: true });
    // Reopening finds the indexes again.
    await store.close();
    store = await LanceVectorStore.open(dir, logger, { annIndexThreshold: 1_000 });
    const hits = await store.search(a, hashEmbed(text(777)), 5);
    assert.equal(hits[0]!.id, 'a777', 'the exact chunk comes first (refined by exact distance)');
    assert.ok(Math.abs(hits[0]!.score - 1) < 1e-3);
    assert.ok(hits.every((h) => h.id.startsWith('a')));
    assert.deepEqual(
      (await store.search(b, hashEmbed(text(5)), 10)).map((h) => h.id),
      ['b1'],
      'the other persona sees only its own chunk, even though persona a has an identical one',
    );
    assert.deepEqual(
      (await store.lexicalSearch(b, 'record archive', 10)).map((h) => h.id),
      ['b1'],
    );
  });
});
