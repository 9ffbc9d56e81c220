import { defineConfig, env, z } from '@chat/config';

/** The RAG service's configuration. */
export const ragConfig = defineConfig({
  /** Where the RagService gRPC server listens (port 0: any free port). */
  RAG_GRPC_LISTEN: env.address().default('127.0.0.1:0'),
  /** host:port of a Milvus gRPC endpoint; when set, chunks live in Milvus instead of LanceDB. */
  MILVUS_ADDRESS: env.address().optional(),
  /** The Milvus collection of the chunks (created when missing). */
  MILVUS_COLLECTION: z
    .string()
    .regex(/^[A-Za-z_][A-Za-z0-9_]{0,254}$/, 'must be letters, digits and underscores, not starting with a digit')
    .default('chat_chunks_v1'),
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
  /** Timeout of one language model request. */
  RAG_LLM_TIMEOUT_MS: env.millis().default(120_000),
  /** Temperature when a request sets none. */
  RAG_DEFAULT_TEMPERATURE: z.coerce.number({ message: 'must be a number' }).min(0, 'must be 0..2').max(2, 'must be 0..2').default(0.7),
  /** How long a persona's resolved API profile (and its opened key) is cached when no event invalidates it. */
  RAG_PROFILE_CACHE_TTL_MS: env.millis().default(60_000),
  /** Reply token limit when a request sets none. */
  RAG_DEFAULT_MAX_TOKENS: env.positiveInt().default(1024),
});
