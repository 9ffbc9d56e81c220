import type { ChatMessage, EmbeddingSpace, IngestJob, IngestStage, KnowledgeSource, NewJob, ReembedJob, ScoredChunk, SourceKind, SpaceRef, StoredChunk } from './types.js';

/**
 * JobRepository stores ingestion jobs. A worker claims a job with a lease it renews (heartbeat);
 * every write of a running job names the worker and is refused once the lease is someone else's.
 */
export interface JobRepository {
  create(job: NewJob): Promise<IngestJob>;
  get(id: string): Promise<IngestJob | undefined>;
  /** Unfinished jobs no live worker holds (queued, or running with an expired lease), oldest first. */
  listRunnable(limit: number): Promise<IngestJob[]>;
  /**
   * Marks the job running under this worker's lease and counts the attempt. Undefined when the job
   * is final, leased by another live worker, or not its persona's oldest unfinished job.
   */
  claim(id: string, workerId: string, leaseMs: number): Promise<IngestJob | undefined>;
  /** Extends the lease; false when the job is no longer this worker's. */
  heartbeat(id: string, workerId: string, leaseMs: number): Promise<boolean>;
  /** Records the stage and progress; false when the job is no longer this worker's. */
  progress(id: string, workerId: string, p: { stage: IngestStage; chunksDone: number; chunksTotal: number }): Promise<boolean>;
  /** Marks the job succeeded and records its source, in one transaction; false (nothing written) when the job is no longer this worker's. */
  complete(id: string, workerId: string, source: KnowledgeSource): Promise<boolean>;
  /** Marks the job failed (only while it is this worker's). */
  fail(id: string, workerId: string, error: string): Promise<void>;
  /** Puts a job this worker stops back in the queue, without counting the attempt. */
  requeue(id: string, workerId: string): Promise<void>;
  /** Fails every unfinished job of a persona (it was deleted); returns their ids. */
  cancelPersona(personaId: string, error: string): Promise<string[]>;
  /** The newest queued or running job of a persona and kind. */
  latestPending(personaId: string, kind: SourceKind): Promise<IngestJob | undefined>;
}

/** SourceRepository stores the knowledge sources of personas. */
export interface SourceRepository {
  listByPersona(personaId: string, kind?: SourceKind): Promise<KnowledgeSource[]>;
  /** Inserts a source, or replaces the row with the same id. */
  save(source: KnowledgeSource): Promise<void>;
  delete(ids: readonly string[]): Promise<void>;
  deleteByPersona(personaId: string): Promise<void>;
  /** The distinct owners of a persona's sources. */
  ownersOfPersona(personaId: string): Promise<string[]>;
}

/**
 * VectorStore keeps embedded chunks, each in one embedding space of one persona, and searches
 * them within one space (the persona and space filter is part of the query, never applied after
 * it). Spaces of different dimensions may live side by side.
 */
export interface VectorStore {
  /**
   * How long after a write every reader (other processes included) is sure to see it; 0 for
   * stores that are consistent at once. A re-embed waits this long before and after its switch.
   */
  readonly settleMs?: number;
  /** Inserts chunks into the space, replacing those with the same id there. Every chunk must belong to the space's persona. */
  upsert(space: SpaceRef, chunks: readonly StoredChunk[]): Promise<void>;
  /** The space's chunks closest to the vector (cosine similarity), best first. */
  search(space: SpaceRef, vector: readonly number[], topK: number): Promise<ScoredChunk[]>;
  /**
   * The space's chunks that best match the query's words (BM25), best first, each with its
   * vector. Chunks that share no word with the query are not returned.
   */
  lexicalSearch(space: SpaceRef, query: string, topK: number): Promise<ScoredChunk[]>;
  /** Every chunk of one source in the space (vectors left empty). */
  chunksOfSource(space: SpaceRef, sourceId: string): Promise<StoredChunk[]>;
  /** The number of chunks in the space. */
  count(space: SpaceRef): Promise<number>;
  /** Removes one source's chunks from every space. */
  deleteBySource(sourceId: string): Promise<void>;
  /** Removes every chunk of one space. */
  deleteSpace(space: SpaceRef): Promise<void>;
  /** Removes every chunk of a persona, in every space. */
  deleteByPersona(personaId: string): Promise<void>;
  close(): Promise<void>;
}

/**
 * KnowledgeWriter is what ingestion writes through: chunks go to the persona's active embedding
 * space, embedded by that space's model.
 */
export interface KnowledgeWriter {
  /** The embedder of the persona's active space (created from the persona's profile on first use). */
  embedderFor(ownerId: string, personaId: string): Promise<Embedder>;
  /** Inserts chunks (of one persona) into its active space, embedded by embedderFor's embedder. */
  upsert(chunks: readonly StoredChunk[]): Promise<void>;
  deleteBySource(sourceId: string): Promise<void>;
  deleteByPersona(personaId: string): Promise<void>;
}

/** SpaceRepository records each persona's embedding spaces and which one is active. */
export interface SpaceRepository {
  active(personaId: string): Promise<EmbeddingSpace | undefined>;
  /** Every space of a persona (active, building and retired ones not yet cleaned up). */
  list(personaId: string): Promise<EmbeddingSpace[]>;
  /** Creates a space; with state active only when the persona has no active space (else undefined). */
  create(space: Omit<EmbeddingSpace, 'createdAt' | 'activatedAt'>): Promise<EmbeddingSpace | undefined>;
  /**
   * activate makes a building space the persona's active one and retires the previous active one,
   * in one transaction (the atomic switch of a re-embed). Returns the retired space, if any.
   */
  activate(spaceId: string): Promise<EmbeddingSpace | undefined>;
  delete(spaceId: string): Promise<void>;
  deleteByPersona(personaId: string): Promise<void>;
}

/** ReembedJobRepository stores re-embed jobs. */
export interface ReembedJobRepository {
  create(job: Pick<ReembedJob, 'id' | 'ownerId' | 'personaId' | 'model'>): Promise<ReembedJob>;
  get(id: string): Promise<ReembedJob | undefined>;
  /** The persona's queued or running job, if any. */
  pendingOf(personaId: string): Promise<ReembedJob | undefined>;
  listUnfinished(): Promise<ReembedJob[]>;
  /** Marks a queued or running job running; undefined when it is already final. */
  claim(id: string): Promise<ReembedJob | undefined>;
  progress(id: string, values: { chunksDone: number; chunksTotal: number; targetSpaceId?: string; model?: string }): Promise<void>;
  finish(id: string, status: 'succeeded' | 'failed', error?: string): Promise<void>;
}

/** Embedder turns texts into vectors. */
export interface Embedder {
  /** A stable name, e.g. local-hash-384 or the remote model's name. */
  readonly name: string;
  readonly dimensions: number;
  /** True when embeddings are computed in-process, without a model service. */
  readonly local: boolean;
  embed(texts: readonly string[]): Promise<number[][]>;
}

/** Reranker orders candidate chunks by relevance to a query. */
export interface Reranker {
  /** A stable name, e.g. local-overlap-v1. */
  readonly name: string;
  /** True when it runs in-process (a heuristic, not a trained cross-encoder). */
  readonly local: boolean;
  /** One relevance score (higher is better, 0..1) per text, in the order given. */
  score(query: string, texts: readonly string[]): Promise<number[]>;
}

/** ChatRequest is one streamed chat completion. */
export interface ChatRequest {
  messages: ChatMessage[];
  temperature?: number;
  maxTokens?: number;
  signal?: AbortSignal;
}

/** ChatModel streams a reply from a language model. */
export interface ChatModel {
  /** The model name replies are attributed to. */
  readonly model: string;
  /** Yields the reply's text deltas; failures are AppErrors with a fitting code. */
  stream(request: ChatRequest): AsyncIterable<string>;
}

/** ChatModels picks the model a persona's replies and summaries come from (its API profile, resolved at run time). */
export interface ChatModels {
  forPersona(ownerId: string, personaId: string): Promise<ChatModel>;
}

/**
 * PersonaLocks serialize the knowledge writes of one persona across rag processes (ingestion,
 * deletions and the re-embed copy and switch), so a re-embed on one replica never runs beside an
 * ingestion on another (docs/decisions/0013, 0019). Within one process IngestService.exclusive
 * already orders them; the lock adds the other processes.
 */
export interface PersonaLocks {
  /** withLock runs fn while holding the persona's lock (waiting for it first). */
  withLock<T>(personaId: string, fn: () => Promise<T>): Promise<T>;
  /** close gives every lock back and refuses waiting and new callers. */
  close(): Promise<void>;
}
