// Readiness probe of the local Milvus used by scripts/infra: a real gRPC call (ListCollections)
// through the same SDK the RAG service uses. Exit 0 when it answers, 1 otherwise.
//   node milvus-probe.mjs <host:port>
const [address] = process.argv.slice(2);
const TIMEOUT_MS = Number.parseInt(process.env.PROBE_TIMEOUT_MS || '5000', 10);

const withTimeout = (p) => Promise.race([
  p,
  new Promise((_, rej) => setTimeout(() => rej(new Error(`timeout after ${TIMEOUT_MS}ms`)), TIMEOUT_MS).unref()),
]);

try {
  if (!address) throw new Error('usage: milvus-probe.mjs <host:port>');
  const { MilvusClient } = await import('@zilliz/milvus2-sdk-node');
  const client = new MilvusClient({ address, timeout: TIMEOUT_MS, logLevel: 'error' });
  // The constructor starts a Connect call whose rejection nobody awaits: keep it from crashing us.
  client.connectPromise.catch(() => {});
  const res = await withTimeout(client.listCollections());
  const code = res?.status?.code ?? 0;
  if (code !== 0) throw new Error(`ListCollections failed: ${res.status.reason || code}`);
  client.closeConnection().catch(() => {});
  process.exit(0);
} catch (err) {
  if (process.env.PROBE_VERBOSE) console.error(`milvus: ${err?.message || err}`);
  process.exit(1);
}
