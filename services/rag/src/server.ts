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
import { GrpcPersonaProfileSource, keyOpener, type ResolvePersonaCall } from './adapters/persona/profile-source.js';
import { ragMigrations } from './adapters/postgres/migrations.js';
import { PgJobRepository, PgSourceRepository } from './adapters/postgres/repositories.js';
import type { ConfigOf } from '@chat/config';
import type { ragConfig } from './config.js';
import { Generator } from './domain/generate.js';
import { LocalHashEmbedder } from './domain/hash-embedder.js';
import type { ChatModel, ChatModels, Embedder, VectorStore } from './domain/ports.js';
import { ProfileResolver } from './domain/profiles.js';
import { IngestService } from './domain/ingest.js';
import { Retriever } from './domain/retrieval.js';
import { personaEventHandler } from './handlers/persona-events.js';
import { profileEventHandler } from './handlers/profile-events.js';
import { ragHandlers } from './handlers/rag-handlers.js';

/** The consumer group of the RAG service on the persona topic. */
export const PERSONA_EVENTS_GROUP = 'rag';
/** The consumer group of the RAG service on the profile topic (one group per subscription). */
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
  /** Rejects when the persona or profile event consumer dies. */
  crashed: Promise<never>;
  /** Stops the gRPC server, the consumer and the worker (bounded), then closes the store. */
  stop(): Promise<void>;
}

/** openVectorStore opens Milvus when MILVUS_ADDRESS is set, else the embedded LanceDB store. */
export async function openVectorStore(config: ConfigOf<typeof ragConfig>, embedder: Embedder, logger: Logger): Promise<VectorStore> {
  if (config.MILVUS_ADDRESS) {
    logger.info('vector store: milvus', { address: config.MILVUS_ADDRESS, collection: config.MILVUS_COLLECTION });
    return MilvusVectorStore.open({ address: config.MILVUS_ADDRESS, collection: config.MILVUS_COLLECTION, dimensions: embedder.dimensions, logger });
  }
  const dir = config.LANCEDB_DIR ?? join(config.DATA_DIR, 'lancedb');
  logger.info('vector store: lancedb', { dir });
  return LanceVectorStore.open(dir, logger);
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

  const embedder = new LocalHashEmbedder();
  logger.info('embedder', { name: embedder.name, dimensions: embedder.dimensions, local: embedder.local });
  const store = await openVectorStore(config, embedder, logger);
  const jobs = new PgJobRepository(database.sequelize);
  const sources = new PgSourceRepository(database.sequelize);
  if (llm.development) logger.warn('replies come from the built-in development model, not a real language model', { model: llm.model });

  const ingest = new IngestService({
    jobs,
    sources,
    store,
    embedder,
    logger,
    settings: {
      chunkSize: config.RAG_CHUNK_SIZE,
      chunkOverlap: Math.min(config.RAG_CHUNK_OVERLAP, config.RAG_CHUNK_SIZE - 1),
      embedBatchSize: config.RAG_EMBED_BATCH_SIZE,
      concurrency: config.RAG_INGEST_CONCURRENCY,
      maxAttempts: config.RAG_INGEST_MAX_ATTEMPTS,
    },
  });
  const retriever = new Retriever({ embedder, store, sources });
  const generator = new Generator({
    retriever,
    models,
    defaults: { temperature: config.RAG_DEFAULT_TEMPERATURE, maxTokens: config.RAG_DEFAULT_MAX_TOKENS },
  });

  let server: GrpcServer | undefined;
  let subscription: Subscription | undefined;
  let profileSubscription: Subscription | undefined;
  try {
    await ingest.resume();
    const handlers = ragHandlers({ ingest, retriever, generator, logger });
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
    profileSubscription = await bus.subscribe({
      topics: [Topics.profileEvents],
      groupId: PROFILE_EVENTS_GROUP,
      handler: profileEventHandler((id) => profiles.invalidateProfile(id), logger),
    });
    subscription = await bus.subscribe({
      topics: [Topics.personaEvents],
      groupId: PERSONA_EVENTS_GROUP,
      handler: personaEventHandler(ingest, logger, (id) => profiles.invalidatePersona(id)),
    });
  } catch (err) {
    await profileSubscription?.stop().catch(() => undefined);
    await server?.stop(1_000);
    await ingest.stop(1_000);
    await store.close();
    throw err;
  }

  const grpc = server;
  const sub = subscription;
  const profileSub = profileSubscription!;
  let stopping: Promise<void> | undefined;
  return {
    address: grpc.address,
    ingest,
    profiles,
    crashed: Promise.race([sub.crashed, profileSub.crashed]),
    stop: () =>
      (stopping ??= (async () => {
        await grpc.stop(Math.min(config.RAG_STOP_GRACE_MS, 10_000));
        await sub.stop().catch((err: unknown) => logger.warn('persona event consumer did not stop cleanly', { err }));
        await profileSub.stop().catch((err: unknown) => logger.warn('profile event consumer did not stop cleanly', { err }));
        await ingest.stop(config.RAG_STOP_GRACE_MS);
        await store.close();
      })()),
  };
}
