import { resolve } from 'node:path';
import { existsSync } from 'node:fs';
import * as lancedb from '@lancedb/lancedb';
import { MilvusClient } from '@zilliz/milvus2-sdk-node';
import type { Logger } from '@chat/logger';

/**
 * Vectors written before embedding spaces (docs/decisions/0013) live where this version no longer
 * reads: the LanceDB table `chunks`, and the Milvus collection `chat_chunks_v1` (or a collection
 * named exactly MILVUS_COLLECTION, the old meaning of that variable). They are not migrated: the
 * old rows carry no embedding-space id and may come from another embedding model, and the
 * knowledge's sources must be ingested again to be searched (docs/operations.md, "Upgrading").
 */
export interface LegacyVectors {
  store: 'lancedb' | 'milvus';
  /** The old table or collection name. */
  name: string;
  /** Its row count, when the store told it. */
  rows?: number;
}

/** The old LanceDB table name. */
export const LEGACY_LANCE_TABLE = 'chunks';
/** The old default Milvus collection. */
export const LEGACY_MILVUS_COLLECTION = 'chat_chunks_v1';

/** findLegacyLance looks for the old chunk table in a LanceDB directory (nothing when the directory is new). */
export async function findLegacyLance(dir: string): Promise<LegacyVectors[]> {
  const path = resolve(dir);
  if (!existsSync(path)) return [];
  const db = await lancedb.connect(path);
  try {
    if (!(await db.tableNames()).includes(LEGACY_LANCE_TABLE)) return [];
    const table = await db.openTable(LEGACY_LANCE_TABLE);
    try {
      return [{ store: 'lancedb', name: LEGACY_LANCE_TABLE, rows: await table.countRows() }];
    } finally {
      table.close();
    }
  } finally {
    db.close();
  }
}

/** findLegacyMilvus looks for `chat_chunks_v1` and a collection named exactly the configured prefix. */
export async function findLegacyMilvus(options: { address: string; token?: string; prefix: string }): Promise<LegacyVectors[]> {
  const client = new MilvusClient({ address: options.address, token: options.token, timeout: 10_000, logLevel: 'error' });
  client.connectPromise.catch(() => undefined);
  try {
    const res = await client.showCollections();
    const names = new Set((res.data ?? []).map((c) => c.name));
    const found: LegacyVectors[] = [];
    for (const name of new Set([LEGACY_MILVUS_COLLECTION, options.prefix])) {
      if (!names.has(name)) continue;
      const stats = await client.getCollectionStatistics({ collection_name: name }).catch(() => undefined);
      const rows = Number(stats?.data?.row_count);
      found.push({ store: 'milvus', name, ...(Number.isFinite(rows) ? { rows } : {}) });
    }
    return found;
  } finally {
    await client.closeConnection().catch(() => undefined);
  }
}

/**
 * warnAboutLegacyVectors logs one warning per old table or collection found, with the remedy. It
 * never fails the start: a failed check is logged at debug level.
 */
export async function warnAboutLegacyVectors(find: () => Promise<LegacyVectors[]>, logger: Logger): Promise<LegacyVectors[]> {
  let found: LegacyVectors[];
  try {
    found = await find();
  } catch (err) {
    logger.debug('could not look for vectors of an older version', { err });
    return [];
  }
  for (const f of found) {
    logger.warn(
      `vectors of an older version found in ${f.store} '${f.name}' are not searched any more: purge each affected persona's knowledge and ingest its sources again (a persona's background: save the persona), then drop '${f.name}' — see docs/operations.md, "Upgrading"`,
      { store: f.store, name: f.name, ...(f.rows !== undefined ? { rows: f.rows } : {}) },
    );
  }
  return found;
}
