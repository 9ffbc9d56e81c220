import { AppError } from '@chat/errors';
import type { Embedder, SourceRepository, VectorStore } from './ports.js';
import type { ScoredChunk } from './types.js';
import { requireId } from './validate.js';

/** Default and largest number of chunks one retrieval returns. */
export const DEFAULT_TOP_K = 5;
export const MAX_TOP_K = 50;
/** Longest query, in characters; longer queries are cut. */
const MAX_QUERY_CHARS = 8_000;

/** RetrieveInput is a knowledge search within one persona of one owner. */
export interface RetrieveInput {
  ownerId: string;
  personaId: string;
  query: string;
  /** 0 or undefined means the default. */
  topK?: number;
  /** Only chunks scoring at least this (cosine similarity, -1..1) are returned. */
  scoreThreshold?: number;
}

/** Retriever embeds a query and searches the persona's chunks, best first. */
export class Retriever {
  constructor(
    private readonly deps: { embedder: Embedder; store: VectorStore; sources: SourceRepository },
  ) {}

  async retrieve(input: RetrieveInput): Promise<ScoredChunk[]> {
    const ownerId = requireId('owner_id', input.ownerId);
    const personaId = requireId('persona_id', input.personaId);
    const topK = input.topK && input.topK > 0 ? Math.min(Math.floor(input.topK), MAX_TOP_K) : DEFAULT_TOP_K;
    const threshold = input.scoreThreshold;
    if (threshold !== undefined && !Number.isFinite(threshold)) throw AppError.invalid('score_threshold must be a number', { score_threshold: 'must be a number' });
    const query = input.query.trim().slice(0, MAX_QUERY_CHARS);
    if (!query) return [];

    // Knowledge belongs to the persona's owner: another owner's persona looks like an unknown one.
    const owners = await this.deps.sources.ownersOfPersona(personaId);
    if (owners.length > 0 && !owners.includes(ownerId)) throw AppError.notFound('persona', personaId);

    const [vector] = await this.deps.embedder.embed([query]);
    if (!vector || !vector.some((x) => x !== 0)) return [];
    const hits = await this.deps.store.search(personaId, vector, topK);
    return hits
      .filter((h) => Number.isFinite(h.score) && (threshold === undefined || h.score >= threshold))
      .sort((a, b) => b.score - a.score)
      .slice(0, topK);
  }
}
