import { MilvusClient } from '@zilliz/milvus2-sdk-node';

/**
 * dropSpaceCollections drops, on the Milvus at `address`, every collection a test made under the
 * collection prefix (one per vector dimension: `<prefix>_d<dimension>`). Best effort: for after().
 */
export async function dropSpaceCollections(address: string, prefix: string): Promise<void> {
  const milvus = new MilvusClient({ address, logLevel: 'error' });
  milvus.connectPromise.catch(() => undefined);
  const all = await milvus.showCollections().catch(() => undefined);
  for (const c of all?.data ?? []) if (c.name.startsWith(`${prefix}_d`)) await milvus.dropCollection({ collection_name: c.name }).catch(() => undefined);
  await milvus.closeConnection().catch(() => undefined);
}
