import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { configureLogger } from '@chat/logger';
import { LanceVectorStore } from '../src/adapters/lancedb/store.js';
import { vectorStoreContract, type StoreUnderTest } from './vector-store-contract.js';

const logger = configureLogger({ silent: true });

// Each test gets its own LanceDB directory.
vectorStoreContract('LanceDB', async (): Promise<StoreUnderTest> => {
  const dir = mkdtempSync(join(tmpdir(), 'rag-lance-'));
  let current = await LanceVectorStore.open(dir, logger);
  return {
    store: current,
    reopen: async () => (current = await LanceVectorStore.open(dir, logger)),
    dispose: async () => {
      await current.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
});
