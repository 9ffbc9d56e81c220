import { defineConfig, env, z } from '@chat/config';
import { parseAllowList } from './fetch/address.js';
import { DEFAULT_CONTENT_TYPES } from './fetch/safe-fetch.js';

/** The RAG service's configuration. */
export const ragConfig = defineConfig({
  /** Where the RagService gRPC server listens (port 0: any free port). */
  RAG_GRPC_LISTEN: env.address().default('127.0.0.1:0'),
  /** host:port of a Milvus gRPC endpoint; when set, chunks live in Milvus instead of LanceDB. */
  MILVUS_ADDRESS: env.address().optional(),
  /** Name prefix of the Milvus chunk collections, one per vector dimension: <prefix>_d<dimension> (created when missing). */
  MILVUS_COLLECTION: z
    .string()
    .regex(/^[A-Za-z_][A-Za-z0-9_]{0,254}$/, 'must be letters, digits and underscores, not starting with a digit')
    .default('chat_chunks_v2'),
  /** How long until a Milvus write is visible to Bounded searches of every process (common.gracefulTime); a re-embed waits this long around its switch. */
  RAG_MILVUS_SETTLE_MS: env.millis().default(5_000),
  /** Directory of the LanceDB vector store (used when MILVUS_ADDRESS is unset); default DATA_DIR/lancedb. */
  LANCEDB_DIR: z.string().optional(),
  /** The project data directory (shared with the embedded database and the dev API key). */
  DATA_DIR: z.string().default('.data'),
  /** Largest chunk, in characters. */
  RAG_CHUNK_SIZE: env.positiveInt().default(800),
  /** Characters neighbouring chunks share. */
  RAG_CHUNK_OVERLAP: z.coerce.number({ message: 'must be a number' }).int('must be a whole number').min(0, 'must be at least 0').default(100),
  /** Chunks embedded (and written) per batch. */
  RAG_EMBED_BATCH_SIZE: env.positiveInt().default(64),
  /** Ingest jobs (of different personas) that run at once. */
  RAG_INGEST_CONCURRENCY: env.positiveInt().default(2),
  /** Attempts, including resumes after a crash, before a job is failed. */
  RAG_INGEST_MAX_ATTEMPTS: env.positiveInt().default(3),
  /** How long stop waits for running ingest jobs before leaving them to the next start. */
  RAG_STOP_GRACE_MS: env.millis().default(10_000),
  /** How long a claimed ingest job stays a worker's without a heartbeat; then another replica takes it over. */
  RAG_INGEST_LEASE_MS: env.millis().default(30_000),
  /** How often a worker looks for queued ingest jobs no one took and for running ones whose lease ran out. */
  RAG_INGEST_SWEEP_MS: env.millis().default(5_000),
  /** Longest one attempt of an ingest job may run before it is failed. */
  RAG_INGEST_ATTEMPT_TIMEOUT_MS: env.millis().default(600_000),
  /** Extra tries of a URL fetch that failed transiently (connection refused or reset, 5xx, 429, timeouts), per attempt. */
  RAG_FETCH_RETRIES: z.coerce.number({ message: 'must be a number' }).int('must be a whole number').min(0, 'must be 0..10').max(10, 'must be 0..10').default(2),
  /** Wait before the first fetch retry; doubles for each next one. */
  RAG_FETCH_RETRY_DELAY_MS: env.millis().default(1_000),
  /** Largest response body a URL ingestion reads (after decompression), in bytes. */
  RAG_FETCH_MAX_BYTES: env.positiveInt().default(10 * 1024 * 1024),
  /** Longest a whole URL fetch (all redirects) may take. */
  RAG_FETCH_TIMEOUT_MS: env.millis().default(30_000),
  /** Longest the fetched server may stay silent (connect, headers, between body bytes). */
  RAG_FETCH_IDLE_TIMEOUT_MS: env.millis().default(10_000),
  /** Most redirects a URL fetch follows (each hop is checked like the first). */
  RAG_FETCH_MAX_REDIRECTS: z.coerce.number({ message: 'must be a number' }).int('must be a whole number').min(0, 'must be 0..20').max(20, 'must be 0..20').default(5),
  /** Media types URL ingestion accepts, comma-separated. */
  RAG_FETCH_CONTENT_TYPES: z
    .string()
    .regex(/^\s*[a-z0-9.+-]+\/[a-z0-9.+-]+\s*(,\s*[a-z0-9.+-]+\/[a-z0-9.+-]+\s*)*$/i, 'must be media types like text/html, comma-separated')
    .default(DEFAULT_CONTENT_TYPES.join(','))
    .transform((v) => v.split(',').map((t) => t.trim().toLowerCase())),
  /**
   * Private deployments only: CIDRs, addresses and host names (`*.corp.example` for subdomains)
   * URL ingestion may reach although they are not public. Unset: public addresses only.
   */
  RAG_FETCH_ALLOW: z
    .string()
    .default('')
    .transform((v, ctx) => {
      try {
        return parseAllowList(v);
      } catch (err) {
        ctx.addIssue({ code: 'custom', message: err instanceof Error ? err.message : String(err) });
        return z.NEVER;
      }
    }),
  /** Timeout of one language model request. */
  RAG_LLM_TIMEOUT_MS: env.millis().default(120_000),
  /** Temperature when a request sets none. */
  RAG_DEFAULT_TEMPERATURE: z.coerce.number({ message: 'must be a number' }).min(0, 'must be 0..2').max(2, 'must be 0..2').default(0.7),
  /** How long a persona's resolved API profile (and its opened key) is cached when no event invalidates it. */
  RAG_PROFILE_CACHE_TTL_MS: env.millis().default(60_000),
  /**
   * How long a persona's knowledge state (owners of its sources, active embedding space) stays
   * cached for replies when no change notification drops it (a safety net: changes on any replica
   * drop it at once, docs/decisions/0022). 0: read it from PostgreSQL on every reply.
   */
  RAG_KNOWLEDGE_CACHE_TTL_MS: z.coerce.number({ message: 'must be a number' }).int('must be a whole number').min(0, 'must be 0 or more').default(30_000),
  /** Attempts per batch of an OpenAI-compatible embedding request (rate limits, 5xx, connection errors), with exponential backoff. */
  RAG_EMBED_MAX_ATTEMPTS: env.positiveInt().default(4),
  /** Timeout of one embedding request. */
  RAG_EMBED_TIMEOUT_MS: env.millis().default(60_000),
  /** Rows from which a LanceDB chunk table gets an ANN (IVF-PQ) vector index. */
  RAG_LANCEDB_ANN_INDEX_ROWS: env.positiveInt().default(50_000),
  /** A `/rerank` endpoint (Cohere/Jina/Infinity/vLLM shape) for reranking; unset: the built-in local reranker. */
  RAG_RERANK_URL: env.url().optional(),
  /** The model name sent to RAG_RERANK_URL. */
  RAG_RERANK_MODEL: z.string().min(1).default('rerank'),
  /** Bearer key for RAG_RERANK_URL (never logged). */
  RAG_RERANK_API_KEY: z.string().optional(),
  /** Timeout of one rerank request. */
  RAG_RERANK_TIMEOUT_MS: env.millis().default(10_000),
  /** Reply token limit when a request sets none. */
  RAG_DEFAULT_MAX_TOKENS: env.positiveInt().default(1024),
  /** After the first delta of a reply, tokens arriving within this many ms go on as one delta (0: one delta per model chunk). */
  RAG_DELTA_COALESCE_MS: z.coerce.number({ message: 'must be a number' }).int('must be a whole number').min(0, 'must be 0..1000').max(1000, 'must be 0..1000').default(20),
});
