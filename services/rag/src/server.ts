import { join } from 'node:path';
import { ragV1 } from '@chat/contracts';
import { migrate, type Database } from '@chat/db';
import type { LlmEndpoint } from '@chat/devmodel';
import { Topics, type EventBus, type Subscription } from '@chat/events';
import { startGrpcServer, wrapImplementation, type GrpcServer } from '@chat/grpc';
import type { Logger } from '@chat/logger';
import type { Keyring } from '@chat/secrets';
import { LanceVectorStore } from './adapters/lancedb/store.js';
import { MilvusVectorStore } from './adapters/milvus/store.js';
import { OpenAiChatModel } from './adapters/openai/chat-model.js';
import { OpenAiEmbedder } from './adapters/openai/embeddings.js';
import { HttpReranker } from './adapters/http/reranker.js';
import { PgReembedJobRepository, PgSpaceRepository } from './adapters/postgres/knowledge-repositories.js';
import { GrpcPersonaProfileSource, keyOpener, type ResolvePersonaCall } from './adapters/persona/profile-source.js';
import { ragMigrations } from './adapters/postgres/migrations.js';
import { PgJobRepository, PgSourceRepository } from './adapters/postgres/repositories.js';
import { PgPersonaLocks } from './adapters/postgres/persona-locks.js';
import { PgKnowledgeListener } from './adapters/postgres/knowledge-listener.js';
import { findLegacyLance, findLegacyMilvus, warnAboutLegacyVectors } from './adapters/legacy-vectors.js';
import type { ConfigOf } from '@chat/config';
import type { ragConfig } from './config.js';
import { Generator } from './domain/generate.js';
import { LocalHashEmbedder } from './domain/hash-embedder.js';
import { KnowledgeService } from './domain/knowledge.js';
import type { ChatModel, ChatModels, VectorStore } from './domain/ports.js';
import { LocalOverlapReranker } from './domain/rerank.js';
import { QueryRewriter } from './domain/rewrite.js';
import { KnowledgeIndex, type EmbedderFactory } from './domain/spaces.js';
import { ProfileResolver } from './domain/profiles.js';
import { IngestService } from './domain/ingest.js';
import { SafeUrlLoader } from './fetch/loader.js';
import { Retriever } from './domain/retrieval.js';
import { personaEventHandler } from './handlers/persona-events.js';
import { cacheEventHandler, cacheGroupId } from './handlers/cache-events.js';
import { KnowledgeStateCache } from './domain/knowledge-state.js';
import { ragHandlers } from './handlers/rag-handlers.js';

/**
 * The consumer group of the RAG service on the persona topic, shared by every replica: each
 * persona event is handled once (its background ingested, its knowledge deleted). Cache
 * invalidation, which every replica needs, comes from a per-process group (cacheGroupId).
 */
export const PERSONA_EVENTS_GROUP = 'rag';
/**
 * The shared group the profile topic was read with before decision 0022; no longer subscribed
 * (profile events only invalidate caches, so every replica reads them in its own group). A
 * cluster's old group of this name expires with the broker's offsets retention.
 */
export const PROFILE_EVENTS_GROUP = 'rag.profile-events';

/** RagServerDeps are what the RAG service runs on. */
export interface RagServerDeps {
  config: ConfigOf<typeof ragConfig>;
  database: Database;
  bus: EventBus;
  /** The default endpoint, for personas without an API profile. */
  llm: LlmEndpoint;
  /** The persona service's ResolvePersona (PersonaClient.resolvePersona). */
  resolvePersona: ResolvePersonaCall;
  /** Master keys to open profile API keys with (the same as the persona service's). */
  keyring: Keyring;
  logger: Logger;
}

/** RagServer is a running RAG service. */
export interface RagServer {
  address: string;
  ingest: IngestService;
  /** The run-time persona → profile → endpoint resolver (and its caches). */
  profiles: ProfileResolver;
  /** Per persona: the owners of its sources and its active embedding space, as retrieval reads them (docs/decisions/0022). */
  knowledgeState: KnowledgeStateCache;
  /** The per-process consumer group that invalidates this replica's caches on persona and profile events. */
  cacheGroup: string;
  /** Knowledge management: stats, deletion, purge, re-embed jobs. */
  knowledge: KnowledgeService;
  /** The embedding spaces and the vector store behind them. */
  index: KnowledgeIndex;
  /** Rejects when the persona or profile event consumer dies. */
  crashed: Promise<never>;
  /** Stops the gRPC server, the consumer and the worker (bounded), then closes the store. */
  stop(): Promise<void>;
}

/** openVectorStore opens Milvus when MILVUS_ADDRESS is set, else the embedded LanceDB store. */
export async function openVectorStore(config: ConfigOf<typeof ragConfig>, dimensions: number, logger: Logger): Promise<VectorStore> {
  if (config.MILVUS_ADDRESS) {
    const address = config.MILVUS_ADDRESS;
    logger.info('vector store: milvus', { address, collection: config.MILVUS_COLLECTION });
    // Vectors of the version before embedding spaces are not read; say so once (docs/operations.md, "Upgrading").
    await warnAboutLegacyVectors(() => findLegacyMilvus({ address, prefix: config.MILVUS_COLLECTION }), logger);
    return MilvusVectorStore.open({ address, collection: config.MILVUS_COLLECTION, dimensions, logger, settleMs: config.RAG_MILVUS_SETTLE_MS });
  }
  const dir = config.LANCEDB_DIR ?? join(config.DATA_DIR, 'lancedb');
  logger.info('vector store: lancedb', { dir });
  await warnAboutLegacyVectors(() => findLegacyLance(dir), logger);
  return LanceVectorStore.open(dir, logger, { annIndexThreshold: config.RAG_LANCEDB_ANN_INDEX_ROWS });
}

/** startRagServer migrates the rag schema, opens the vector store, resumes jobs and serves gRPC. */
export async function startRagServer(deps: RagServerDeps): Promise<RagServer> {
  const { config, database, bus, llm, logger } = deps;
  const profiles = new ProfileResolver(
    { source: new GrpcPersonaProfileSource(deps.resolvePersona), open: keyOpener(deps.keyring), defaultEndpoint: { baseUrl: llm.baseUrl, apiKey: llm.apiKey, model: llm.model } },
    { ttlMs: config.RAG_PROFILE_CACHE_TTL_MS },
  );
  const defaultModel = new OpenAiChatModel(llm, { timeoutMs: config.RAG_LLM_TIMEOUT_MS });
  const models: ChatModels = {
    async forPersona(ownerId, personaId): Promise<ChatModel> {
      const endpoint = await profiles.resolve(ownerId, personaId);
      if (!endpoint.profileId) return defaultModel;
      return new OpenAiChatModel({ baseUrl: endpoint.baseUrl, apiKey: endpoint.apiKey, model: endpoint.model, development: false }, { timeoutMs: config.RAG_LLM_TIMEOUT_MS });
    },
  };
  await migrate(database.sequelize, 'rag', ragMigrations, logger);

  const localEmbedder = new LocalHashEmbedder();
  profiles.localEmbeddingModel = localEmbedder.name;
  logger.info('default embedder (personas whose profile names no embedding_model)', { name: localEmbedder.name, dimensions: localEmbedder.dimensions, local: true });
  const makeEmbedder: EmbedderFactory = (spec, apiKey, dimensions) =>
    spec.provider === 'local'
      ? localEmbedder
      : new OpenAiEmbedder({
          baseUrl: spec.baseUrl,
          apiKey,
          model: spec.model,
          dimensions,
          batchSize: config.RAG_EMBED_BATCH_SIZE,
          maxAttempts: config.RAG_EMBED_MAX_ATTEMPTS,
          timeoutMs: config.RAG_EMBED_TIMEOUT_MS,
        });
  const store = await openVectorStore(config, localEmbedder.dimensions, logger);
  // What retrieval reads per reply is cached; this process's own writes drop the entry at once,
  // every replica's writes through PostgreSQL's notifications (docs/decisions/0022).
  const changed = (personaId: string) => knowledgeState.invalidate(personaId);
  const jobs = new PgJobRepository(database.sequelize, changed);
  const sources = new PgSourceRepository(database.sequelize, changed);
  const spaces = new PgSpaceRepository(database.sequelize, changed);
  const knowledgeState = new KnowledgeStateCache({ sources, spaces }, { ttlMs: config.RAG_KNOWLEDGE_CACHE_TTL_MS });
  const listener = new PgKnowledgeListener(database.sequelize, { changed, live: (live) => knowledgeState.setLive(live) }, logger);
  const index = new KnowledgeIndex({ store, spaces, profiles: { configured: (o, p) => profiles.embedding(o, p) }, makeEmbedder, logger });
  if (llm.development) logger.warn('replies come from the built-in development model, not a real language model', { model: llm.model });

  // One advisory lock per persona across rag replicas: ingestion vs. re-embed (docs/decisions/0019).
  const locks = new PgPersonaLocks(database.sequelize, logger);
  const ingest = new IngestService({
    jobs,
    sources,
    store: index,
    locks,
    logger,
    settings: {
      chunkSize: config.RAG_CHUNK_SIZE,
      chunkOverlap: Math.min(config.RAG_CHUNK_OVERLAP, config.RAG_CHUNK_SIZE - 1),
      embedBatchSize: config.RAG_EMBED_BATCH_SIZE,
      concurrency: config.RAG_INGEST_CONCURRENCY,
      maxAttempts: config.RAG_INGEST_MAX_ATTEMPTS,
      leaseMs: config.RAG_INGEST_LEASE_MS,
      sweepMs: config.RAG_INGEST_SWEEP_MS,
      attemptTimeoutMs: config.RAG_INGEST_ATTEMPT_TIMEOUT_MS,
      fetchRetries: config.RAG_FETCH_RETRIES,
      fetchRetryDelayMs: config.RAG_FETCH_RETRY_DELAY_MS,
    },
    // URL ingestion: the SSRF-safe fetcher (src/fetch) with the RAG_FETCH_* limits and allow-list.
    loader: new SafeUrlLoader({
      policy: config.RAG_FETCH_ALLOW,
      contentTypes: config.RAG_FETCH_CONTENT_TYPES,
      limits: {
        maxBytes: config.RAG_FETCH_MAX_BYTES,
        timeoutMs: config.RAG_FETCH_TIMEOUT_MS,
        idleTimeoutMs: config.RAG_FETCH_IDLE_TIMEOUT_MS,
        maxRedirects: config.RAG_FETCH_MAX_REDIRECTS,
      },
    }),
  });
  const rewriter = new QueryRewriter({
    models,
    isDevelopment: (m) => m === defaultModel && llm.development,
    onError: (err) => logger.warn('query rewrite failed; searching with the question as asked', { err }),
  });
  const retriever = new Retriever({
    index,
    sources,
    reranker: config.RAG_RERANK_URL
      ? new HttpReranker({ url: config.RAG_RERANK_URL, model: config.RAG_RERANK_MODEL, apiKey: config.RAG_RERANK_API_KEY, timeoutMs: config.RAG_RERANK_TIMEOUT_MS })
      : new LocalOverlapReranker(),
    onError: (what, err) => logger.warn(`${what} failed; retrieval goes on without it`, { err }),
    rewriter,
    state: knowledgeState,
    settings: {
      async forPersona(ownerId, personaId) {
        try {
          return await profiles.retrieval(ownerId, personaId);
        } catch (err) {
          // Without the persona service the defaults apply; retrieval itself does not need it.
          logger.warn('retrieval settings unavailable; using the defaults', { persona_id: personaId, err });
          return {};
        }
      },
    },
  });
  const knowledge = new KnowledgeService({
    index,
    sources,
    spaces,
    jobs: new PgReembedJobRepository(database.sequelize),
    serialize: (personaId, fn) => ingest.exclusive(personaId, fn),
    logger,
    batchSize: config.RAG_EMBED_BATCH_SIZE,
  });
  const generator = new Generator({
    retriever,
    models,
    defaults: { temperature: config.RAG_DEFAULT_TEMPERATURE, maxTokens: config.RAG_DEFAULT_MAX_TOKENS },
    coalesceMs: config.RAG_DELTA_COALESCE_MS,
  });

  const reconcile = (personaId: string) =>
    void knowledge.reconcile(personaId).catch((err: unknown) => logger.warn('could not check the embedding model of a persona', { persona_id: personaId, err }));

  let server: GrpcServer | undefined;
  let subscription: Subscription | undefined;
  let cacheSubscription: Subscription | undefined;
  const cacheGroup = cacheGroupId();
  try {
    // Listening before serving: the cache is on only while changes are being heard.
    await listener.start();
    await ingest.resume();
    await knowledge.resume();
    const handlers = ragHandlers({ ingest, retriever, generator, knowledge, logger });
    server = await startGrpcServer({
      address: config.RAG_GRPC_LISTEN,
      services: [
        {
          name: 'chat.rag.v1.RagService',
          definition: ragV1.RagServiceService,
          implementation: wrapImplementation(ragV1.RagServiceService, handlers as unknown as Record<string, (...args: never[]) => unknown>, logger),
        },
      ],
      logger,
    });
    // Every replica: its own group (a shared one gives each event to one replica), live events only,
    // deleted at stop (docs/decisions/0019, 0022).
    cacheSubscription = await bus.subscribe({
      topics: [Topics.personaEvents, Topics.profileEvents],
      groupId: cacheGroup,
      fromBeginning: false,
      ephemeral: true,
      handler: cacheEventHandler(
        {
          persona: (id) => {
            profiles.invalidatePersona(id);
            knowledgeState.invalidate(id);
          },
          profile: (id) => {
            // A changed embedding model re-embeds the knowledge of the personas this replica knows
            // to use the profile (every replica checks its own; one re-embed job per persona, by its unique index).
            const affected = profiles.personasOf(id);
            profiles.invalidateProfile(id);
            for (const personaId of affected) reconcile(personaId);
          },
        },
        logger,
      ),
    });
    // Once per event across replicas: the background becomes knowledge; a deleted persona's goes.
    subscription = await bus.subscribe({
      topics: [Topics.personaEvents],
      groupId: PERSONA_EVENTS_GROUP,
      handler: personaEventHandler(ingest, logger, (id) => {
        // This replica's cache too, before reconcile reads the profile (the per-process
        // subscription's invalidation may come later than this).
        profiles.invalidatePersona(id);
        // The persona may name another profile (another embedding model) now.
        reconcile(id);
      }),
    });
  } catch (err) {
    await cacheSubscription?.stop().catch(() => undefined);
    await server?.stop(1_000);
    await knowledge.stop(1_000);
    await ingest.stop(1_000);
    await listener.stop();
    await locks.close();
    await store.close();
    throw err;
  }

  const grpc = server;
  const sub = subscription;
  const cacheSub = cacheSubscription!;
  let stopping: Promise<void> | undefined;
  return {
    address: grpc.address,
    ingest,
    profiles,
    knowledgeState,
    cacheGroup,
    knowledge,
    index,
    crashed: Promise.race([sub.crashed, cacheSub.crashed]),
    stop: () =>
      (stopping ??= (async () => {
        await grpc.stop(Math.min(config.RAG_STOP_GRACE_MS, 10_000));
        await sub.stop().catch((err: unknown) => logger.warn('persona event consumer did not stop cleanly', { err }));
        await cacheSub.stop().catch((err: unknown) => logger.warn('cache invalidation consumer did not stop cleanly', { err }));
        await knowledge.stop(config.RAG_STOP_GRACE_MS);
        await ingest.stop(config.RAG_STOP_GRACE_MS);
        await listener.stop();
        await locks.close();
        await store.close();
      })()),
  };
}
