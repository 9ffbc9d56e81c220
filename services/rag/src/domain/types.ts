/** Where a knowledge source came from. */
export type SourceKind = 'TEXT' | 'URL' | 'BACKGROUND';

/** The lifecycle of an ingestion job. */
export type JobStatus = 'queued' | 'running' | 'succeeded' | 'failed';

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

/** ScoredChunk is a search hit: a chunk and its cosine similarity to the query (higher is closer). */
export interface ScoredChunk {
  id: string;
  sourceId: string;
  title: string;
  url: string;
  text: string;
  score: number;
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
