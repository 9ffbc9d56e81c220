import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as lancedb from '@lancedb/lancedb';
import { DataType, MilvusClient } from '@zilliz/milvus2-sdk-node';
import { loadConfig } from '@chat/config';
import { configureLogger, tapLogs } from '@chat/logger';
import { findLegacyLance, findLegacyMilvus, warnAboutLegacyVectors } from '../src/adapters/legacy-vectors.js';
import { ragConfig } from '../src/config.js';
import { openVectorStore } from '../src/server.js';

const logger = configureLogger({ silent: true });

/** warnings collects the warn lines logged while fn runs. */
async function warnings(fn: () => Promise<unknown>): Promise<Array<Record<string, unknown>>> {
  const lines: string[] = [];
  const stop = tapLogs((l) => lines.push(l));
  try {
    await fn();
  } finally {
    stop();
  }
  return lines.map((l) => JSON.parse(l) as Record<string, unknown>).filter((l) => l.level === 'warn');
}

/**
 * Vectors written before embedding spaces (LanceDB table `chunks`, Milvus `chat_chunks_v1` or a
 * collection named exactly MILVUS_COLLECTION) are not read any more: the start says so once, with
 * the remedy (docs/decisions/0019, docs/operations.md "Upgrading").
 */
describe('rag: vectors of the version before embedding spaces', function () {
  this.timeout(60_000);
  let tmp = '';
  before(() => {
    tmp = mkdtempSync(join(tmpdir(), 'rag-legacy-'));
  });
  after(() => rmSync(tmp, { recursive: true, force: true }));

  it('finds the old LanceDB table `chunks` and warns once at start with the remedy; a new directory is quiet', async () => {
    const dir = join(tmp, 'old');
    const db = await lancedb.connect(dir);
    const old = await db.createTable('chunks', [
      { id: 'a', persona_id: 'p', text: 'old one', vector: [0.1, 0.2] },
      { id: 'b', persona_id: 'p', text: 'old two', vector: [0.3, 0.4] },
    ]);
    old.close();
    db.close();
    assert.deepEqual(await findLegacyLance(dir), [{ store: 'lancedb', name: 'chunks', rows: 2 }]);
    assert.deepEqual(await findLegacyLance(join(tmp, 'missing')), []);

    const config = loadConfig([ragConfig], { LANCEDB_DIR: dir }).get(ragConfig)!;
    let store: Awaited<ReturnType<typeof openVectorStore>> | undefined;
    const warned = await warnings(async () => {
      store = await openVectorStore(config, 8, logger);
    });
    await store?.close();
    const legacy = warned.filter((w) => w.name === 'chunks');
    assert.equal(legacy.length, 1, JSON.stringify(warned));
    assert.match(String(legacy[0]!.message), /not searched any more: purge .* ingest its sources again .*docs\/operations\.md/);
    assert.equal(legacy[0]!.rows, 2);

    // The new tables (chunks_v2_d<dim>) alone are not reported.
    const fresh = join(tmp, 'fresh');
    const freshConfig = loadConfig([ragConfig], { LANCEDB_DIR: fresh }).get(ragConfig)!;
    const first = await openVectorStore(freshConfig, 8, logger);
    await first.close();
    assert.deepEqual(await findLegacyLance(fresh), []);
    const quiet = await warnings(async () => (await openVectorStore(freshConfig, 8, logger)).close());
    assert.deepEqual(quiet.filter((w) => String(w.message).includes('older version')), []);
  });

  it('never fails the start when the check itself fails', async () => {
    const found = await warnAboutLegacyVectors(async () => Promise.reject(new Error('store unreachable')), logger);
    assert.deepEqual(found, []);
  });

  const address = process.env.MILVUS_ADDRESS;
  it('finds a Milvus collection named exactly MILVUS_COLLECTION (the old meaning) and reports its rows', async () => {
    if (!address) throw new Error('MILVUS_ADDRESS is not set (npm test starts Milvus; or run scripts/infra up milvus)');
    const prefix = `legacy_${randomBytes(4).toString('hex')}`;
    const admin = new MilvusClient({ address: address!, logLevel: 'error' });
    admin.connectPromise.catch(() => undefined);
    try {
      const created = await admin.createCollection({
        collection_name: prefix,
        fields: [
          { name: 'id', data_type: DataType.VarChar, is_primary_key: true, max_length: 64 },
          { name: 'vector', data_type: DataType.FloatVector, dim: 4 },
        ],
      });
      assert.equal(created.error_code, 'Success');
      const found = await findLegacyMilvus({ address: address!, prefix });
      const mine = found.find((f) => f.name === prefix);
      assert.ok(mine, JSON.stringify(found));
      assert.equal(mine.store, 'milvus');
      assert.equal(mine.rows, 0);
      // Another prefix does not see it.
      assert.ok(!(await findLegacyMilvus({ address: address!, prefix: `${prefix}_other` })).some((f) => f.name === prefix));
    } finally {
      await admin.dropCollection({ collection_name: prefix }).catch(() => undefined);
      await admin.closeConnection().catch(() => undefined);
    }
  });
});
