/** Where a knowledge source came from. */
export type SourceKind = 'TEXT' | 'URL' | 'BACKGROUND';

/** The lifecycle of an ingestion job. */
export type JobStatus = 'queued' | 'running' | 'succeeded' | 'failed';

/** The stage an ingestion job is at (or failed at): fetch and extract only for URL jobs; done once it succeeded. */
export type IngestStage = 'queued' | 'fetch' | 'extract' | 'chunk' | 'embed' | 'upsert' | 'done';

/** IngestJob is the stored state of one ingestion. */
export interface IngestJob {
  id: string;
  ownerId: string;
  personaId: string;
  kind: SourceKind;
  title: string;
  /** Where the text came from (a URL or a free-form label). */
  source: string;
  text: string;
  contentHash: string;
  status: JobStatus;
  chunksDone: number;
  chunksTotal: number;
  error: string;
  /** The source the job produced (equal to the job id once it succeeded), or ''. */
  sourceId: string;
  attempts: number;
  /** The stage reached (the stage it failed at, for a failed job). */
  stage: IngestStage;
  createdAt: Date;
  updatedAt: Date;
}

/** NewJob is what creating a job needs. */
export type NewJob = Pick<IngestJob, 'id' | 'ownerId' | 'personaId' | 'kind' | 'title' | 'source' | 'text' | 'contentHash'>;

/** KnowledgeSource is one ingested document of a persona. */
export interface KnowledgeSource {
  id: string;
  personaId: string;
  ownerId: string;
  kind: SourceKind;
  title: string;
  url: string;
  contentHash: string;
  chunkCount: number;
  bytes: number;
  createdAt?: Date;
}

/** StoredChunk is one embedded piece of a source, as the vector store keeps it. */
export interface StoredChunk {
  id: string;
  personaId: string;
  sourceId: string;
  title: string;
  url: string;
  text: string;
  vector: number[];
}

/**
 * ScoredChunk is a search hit: a chunk and its score (higher is better). From a dense search the
 * score is the cosine similarity to the query; from a lexical search it is the BM25 score; after
 * retrieval it is the score of the stage that ranked it last (see `scores`).
 */
export interface ScoredChunk {
  id: string;
  sourceId: string;
  title: string;
  url: string;
  text: string;
  score: number;
  /** The chunk's vector, when the search was asked for it (lexical hits carry it so retrieval can apply the cosine threshold). */
  vector?: number[];
  /** The scores of each retrieval stage the chunk went through. */
  scores?: StageScores;
}

/** StageScores are a retrieved chunk's scores per stage. */
export interface StageScores {
  /** Cosine similarity of the chunk's vector to the query's (-1..1). */
  dense?: number;
  /** BM25 score of the lexical search (only for chunks the lexical search found). */
  lexical?: number;
  /** Reciprocal rank fusion of the dense and lexical ranks (hybrid mode). */
  fused?: number;
  /** The reranker's relevance score (0..1). */
  rerank?: number;
}

/** RetrievalMode is dense (vectors only) or hybrid (vectors and BM25, fused). */
export type RetrievalMode = 'dense' | 'hybrid';

/** EmbedderSpec says which embedding model makes a space's vectors, and where it runs. */
export interface EmbedderSpec {
  /** local: the built-in embedder; openai: an OpenAI-compatible /v1/embeddings endpoint. */
  provider: 'local' | 'openai';
  model: string;
  /** The endpoint's base URL (openai provider), '' for local. */
  baseUrl: string;
}

/**
 * EmbeddingSpace is one set of vectors of a persona's knowledge, made by one model. A persona has
 * one active space (what retrieval reads) and, during a re-embed, one building space beside it.
 */
export interface EmbeddingSpace extends EmbedderSpec {
  /** A short id (32 hex digits), stored on every vector of the space. */
  id: string;
  personaId: string;
  ownerId: string;
  dimensions: number;
  state: 'building' | 'active' | 'retired';
  createdAt: Date;
  activatedAt?: Date;
}

/** SpaceRef is what a vector store needs to know about a space. */
export type SpaceRef = Pick<EmbeddingSpace, 'id' | 'personaId' | 'dimensions'>;

/** ReembedJob is the stored state of one re-embedding of a persona's knowledge. */
export interface ReembedJob {
  id: string;
  ownerId: string;
  personaId: string;
  status: JobStatus;
  /** The space being built (empty until the job starts). */
  targetSpaceId: string;
  model: string;
  chunksDone: number;
  chunksTotal: number;
  error: string;
  createdAt: Date;
  updatedAt: Date;
}

/** KnowledgeStats summarise a persona's knowledge. */
export interface KnowledgeStats {
  sources: number;
  chunks: number;
  bytes: number;
  /** The model of the active space ('' when the persona has no knowledge yet). */
  embeddingModel: string;
  embeddingDimensions: number;
  /** The model new knowledge would be embedded with now (the persona's profile); differs from embeddingModel until a re-embed. */
  configuredEmbeddingModel: string;
  lastUpdate?: Date;
  /** A re-embed job that is queued or running, if any. */
  reembedJobId: string;
}

/** ChatMessage is one message of a prompt. */
export interface ChatMessage {
  role: 'system' | 'user' | 'assistant';
  content: string;
}

/** Citation points from a reply to a chunk it drew on. */
export interface Citation {
  sourceId: string;
  title: string;
  url: string;
  chunkId: string;
  score: number;
}
