import type { ChatMessage, IngestJob, KnowledgeSource, NewJob, ScoredChunk, SourceKind, StoredChunk } from './types.js';

/** JobRepository stores ingestion jobs. */
export interface JobRepository {
  create(job: NewJob): Promise<IngestJob>;
  get(id: string): Promise<IngestJob | undefined>;
  /** Jobs left queued or running, oldest first (to resume after a restart). */
  listUnfinished(): Promise<IngestJob[]>;
  /** Marks a queued or running job running and counts the attempt; undefined when it is already final. */
  claim(id: string): Promise<IngestJob | undefined>;
  progress(id: string, chunksDone: number, chunksTotal: number): Promise<void>;
  succeed(id: string, sourceId: string, chunksTotal: number): Promise<void>;
  fail(id: string, error: string): Promise<void>;
  /** Puts an interrupted running job back in the queue. */
  requeue(id: string): Promise<void>;
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

/** VectorStore keeps embedded chunks and searches them within one persona. */
export interface VectorStore {
  /** Inserts chunks, replacing those with the same id. */
  upsert(chunks: readonly StoredChunk[]): Promise<void>;
  /** The persona's chunks closest to the vector, best first. */
  search(personaId: string, vector: readonly number[], topK: number): Promise<ScoredChunk[]>;
  deleteBySource(sourceId: string): Promise<void>;
  deleteByPersona(personaId: string): Promise<void>;
  close(): Promise<void>;
}

/** Embedder turns texts into vectors. */
export interface Embedder {
  /** A stable name, e.g. local-hash-384. */
  readonly name: string;
  readonly dimensions: number;
  /** True when embeddings are computed in-process, without a model service. */
  readonly local: boolean;
  embed(texts: readonly string[]): Promise<number[][]>;
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
