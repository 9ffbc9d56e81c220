import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { DataType, MilvusClient } from '@zilliz/milvus2-sdk-node';
import { configureLogger } from '@chat/logger';
import { milvusString, MilvusVectorStore, truncateUtf8 } from '../src/adapters/milvus/store.js';
import { hashEmbed } from '../src/domain/hash-embedder.js';
import { dropSpaceCollections } from './milvus-cleanup.js';
import { vectorStoreContract, type StoreUnderTest } from './vector-store-contract.js';

const logger = configureLogger({ silent: true });
const address = process.env.MILVUS_ADDRESS;

describe('the Milvus adapter helpers', () => {
  it('quotes filter values so they cannot change the expression', () => {
    assert.equal(milvusString('p1'), '"p1"');
    assert.equal(milvusString('a"b'), '"a\\"b"');
    assert.equal(milvusString('a\\"b'), '"a\\\\\\"b"');
    assert.throws(() => milvusString('a\nb'), /control characters/);
  });

  it('cuts UTF-8 text at a character boundary', () => {
    assert.equal(truncateUtf8('abc', 10), 'abc');
    assert.equal(truncateUtf8('aé', 2), 'a');
    assert.equal(truncateUtf8('a🍋b', 4), 'a');
    assert.equal(truncateUtf8('a🍋b', 5), 'a🍋');
  });
});

// Runs against the Milvus at MILVUS_ADDRESS (scripts/infra up milvus; eval "$(scripts/infra env)").
// Each run uses its own collection and drops it afterwards. In CI a missing Milvus is a failure.
describe('the Milvus vector store', function () {
  this.timeout(60_000);
  const collection = `test_chunks_${randomUUID().replace(/-/g, '').slice(0, 12)}`;
  const open = () => MilvusVectorStore.open({ address: address!, collection, dimensions: 384, logger });
  let admin: MilvusClient | undefined;

  before(function () {
    if (!address) {
      // npm test starts Milvus itself (scripts/test.mjs); by hand, run scripts/infra up milvus.
      throw new Error('MILVUS_ADDRESS is not set (npm test starts Milvus; or run scripts/infra up milvus)');
    }
    admin = new MilvusClient({ address: address!, logLevel: 'error' });
    admin.connectPromise.catch(() => undefined);
  });
  after(async () => {
    if (!admin) return;
    // One collection per vector dimension: drop every one this run made.
    await dropSpaceCollections(address!, collection);
    await admin.closeConnection().catch(() => undefined);
  });

  vectorStoreContract('Milvus', async (): Promise<StoreUnderTest> => {
    let current = await open();
    return {
      store: current,
      reopen: async () => (current = await open()),
      dispose: () => current.close(),
    };
  });

  describe('Milvus specifics', () => {
    const space = (personaId: string) => ({ id: randomUUID().replace(/-/g, ''), personaId, dimensions: 384 });

    it('creates the collection with explicit HNSW/COSINE and BM25 indexes and uses it again on the next open', async () => {
      const store = await open();
      await store.close();
      const name = `${collection}_d384`;
      const vector = await admin!.describeIndex({ collection_name: name, field_name: 'vector' });
      const params = Object.fromEntries((vector.index_descriptions[0]?.params ?? []).map((p) => [p.key, String(p.value)]));
      assert.equal(params.metric_type, 'COSINE');
      assert.equal(params.index_type, 'HNSW');
      const sparse = await admin!.describeIndex({ collection_name: name, field_name: 'sparse' });
      const sparams = Object.fromEntries((sparse.index_descriptions[0]?.params ?? []).map((p) => [p.key, String(p.value)]));
      assert.equal(sparams.metric_type, 'BM25');
      assert.equal(sparams.index_type, 'SPARSE_INVERTED_INDEX');
      const again = await open();
      await again.close();
    });

    it('loads the collection again when a search finds it released (as after a server restart)', async () => {
      const store = await open();
      try {
        const sp = space(`p-${randomUUID()}`);
        await store.upsert(sp, [{ id: randomUUID(), personaId: sp.personaId, sourceId: 's', title: 't', url: '', text: 'lemon cake', vector: hashEmbed('lemon cake') }]);
        const released = await admin!.releaseCollection({ collection_name: `${collection}_d384` });
        assert.equal(released.error_code, 'Success');
        const hits = await store.search(sp, hashEmbed('lemon cake'), 3);
        assert.equal(hits.length, 1);
        assert.ok(Math.abs(hits[0]!.score - 1) < 1e-4);
        await admin!.releaseCollection({ collection_name: `${collection}_d384` });
        assert.equal((await store.lexicalSearch(sp, 'lemon', 3)).length, 1);
        await admin!.releaseCollection({ collection_name: `${collection}_d384` });
        assert.equal((await store.chunksOfSource(sp, 's')).length, 1);
      } finally {
        await store.close();
      }
    });

    it('refuses a collection of another kind under its name', async () => {
      const name = `${collection}_d16`;
      const created = await admin!.createCollection({
        collection_name: name,
        fields: [
          { name: 'id', data_type: DataType.VarChar, is_primary_key: true, max_length: 64 },
          { name: 'vector', data_type: DataType.FloatVector, dim: 16 },
        ],
      });
      assert.equal(created.error_code, 'Success');
      await assert.rejects(MilvusVectorStore.open({ address: address!, collection, dimensions: 16, logger }), /not a chunk collection of this service/);
    });

    it('refuses vectors of the wrong size', async () => {
      const store = await open();
      try {
        const sp = space('p');
        await assert.rejects(store.upsert(sp, [{ id: 'x', personaId: 'p', sourceId: 's', title: '', url: '', text: 't', vector: [1, 0] }]), /2-dimensional/);
        await assert.rejects(store.search(sp, [1, 0], 3), /2 dimensions/);
      } finally {
        await store.close();
      }
    });
  });
});
