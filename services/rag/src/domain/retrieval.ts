import { AppError } from '@chat/errors';
import type { Reranker, SourceRepository } from './ports.js';
import type { HistoryTurn } from './prompt.js';
import type { QueryRewriter } from './rewrite.js';
import { uncachedKnowledgeState, type KnowledgeState, type KnowledgeStateReader } from './knowledge-state.js';
import type { KnowledgeIndex } from './spaces.js';
import type { EmbeddingSpace, RetrievalMode, ScoredChunk } from './types.js';
import { requireId } from './validate.js';

/** Default and largest number of chunks one retrieval returns. */
export const DEFAULT_TOP_K = 5;
export const MAX_TOP_K = 50;
/** Longest query, in characters; longer queries are cut. */
const MAX_QUERY_CHARS = 8_000;
/** The k of reciprocal rank fusion: 1/(k + rank). 60 is the value of the original paper (Cormack et al., 2009). */
export const RRF_K = 60;
/** Candidates each search of a hybrid retrieval (or the reranker) looks at, at least. */
const MIN_CANDIDATES = 20;

/** RetrievalPrefs are a persona's retrieval settings (unset: the defaults). */
export interface RetrievalPrefs {
  topK?: number;
  scoreThreshold?: number;
  mode?: RetrievalMode;
  rerank?: boolean;
  queryRewrite?: boolean;
}

/** RetrievalSettingsSource reads a persona's retrieval settings (its effective settings at the persona service). */
export interface RetrievalSettingsSource {
  forPersona(ownerId: string, personaId: string): Promise<RetrievalPrefs>;
}

/** RetrieveInput is a knowledge search within one persona of one owner. */
export interface RetrieveInput {
  ownerId: string;
  personaId: string;
  query: string;
  /** 0 or undefined means the persona's setting, else the default. */
  topK?: number;
  /** Only chunks whose cosine similarity to the query is at least this (-1..1) are returned. */
  scoreThreshold?: number;
  /** Unset: the persona's setting (dense by default). */
  mode?: RetrievalMode;
  /** Unset: the persona's setting (off by default). */
  rerank?: boolean;
  /** Unset: the persona's setting (off by default). Needs history to do anything. */
  queryRewrite?: boolean;
  /** The conversation before the query, for query rewriting. */
  history?: readonly HistoryTurn[];
  signal?: AbortSignal;
}

/** Retrieval is the ranked chunks and how they were found. */
export interface Retrieval {
  chunks: ScoredChunk[];
  /** The query the search ran with (the rewritten one when rewriting applied). */
  query: string;
  mode: RetrievalMode;
  /** The reranker's name when reranking applied. */
  reranker?: string;
  embeddingModel?: string;
}

/** cosine is the cosine similarity of two vectors (0 when either is zero). */
export function cosine(a: readonly number[], b: readonly number[]): number {
  let dot = 0;
  let na = 0;
  let nb = 0;
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    dot += a[i]! * b[i]!;
    na += a[i]! * a[i]!;
    nb += b[i]! * b[i]!;
  }
  return na > 0 && nb > 0 ? dot / Math.sqrt(na * nb) : 0;
}

/**
 * rrf fuses ranked lists by reciprocal rank fusion: a chunk scores the sum over lists of
 * 1/(k + rank) (rank from 1). Ties keep the order of first appearance. Scores of the inputs are
 * ignored, so lists on different scales (cosine, BM25) fuse without calibration.
 */
export function rrf(lists: ReadonlyArray<readonly ScoredChunk[]>, k = RRF_K): Array<ScoredChunk & { fused: number }> {
  const fused = new Map<string, { chunk: ScoredChunk; score: number; first: number }>();
  let order = 0;
  for (const list of lists) {
    list.forEach((c, i) => {
      const hit = fused.get(c.id);
      if (hit) hit.score += 1 / (k + i + 1);
      else fused.set(c.id, { chunk: c, score: 1 / (k + i + 1), first: order++ });
    });
  }
  return [...fused.values()].sort((a, b) => b.score - a.score || a.first - b.first).map((f) => ({ ...f.chunk, fused: f.score }));
}

/**
 * Retriever finds a persona's most relevant chunks: the query (rewritten with the conversation
 * when asked) is embedded by the persona's active space's model; dense mode ranks by cosine
 * similarity, hybrid mode fuses the dense ranking with a BM25 one (reciprocal rank fusion); an
 * optional reranker orders the candidates last. The score threshold always applies to the
 * cosine similarity, whatever ranked the chunk.
 */
export class Retriever {
  private readonly state: KnowledgeStateReader;

  constructor(
    private readonly deps: {
      index: KnowledgeIndex;
      sources: SourceRepository;
      reranker?: Reranker;
      rewriter?: QueryRewriter;
      settings?: RetrievalSettingsSource;
      /** The persona's owners and active space (the KnowledgeStateCache); unset: read from the repositories every time. */
      state?: KnowledgeStateReader;
      /** Told when an optional stage (the reranker) fails and is skipped. */
      onError?: (what: string, err: unknown) => void;
    },
  ) {
    this.state = deps.state ?? uncachedKnowledgeState({ sources: deps.sources, spaces: { active: (id) => deps.index.activeSpace(id) } });
  }

  /** retrieve returns the ranked chunks (see retrieveDetailed). */
  async retrieve(input: RetrieveInput): Promise<ScoredChunk[]> {
    return (await this.retrieveDetailed(input)).chunks;
  }

  async retrieveDetailed(input: RetrieveInput): Promise<Retrieval> {
    const ownerId = requireId('owner_id', input.ownerId);
    const personaId = requireId('persona_id', input.personaId);
    if (input.scoreThreshold !== undefined && !Number.isFinite(input.scoreThreshold)) throw AppError.invalid('score_threshold must be a number', { score_threshold: 'must be a number' });
    let query = input.query.trim().slice(0, MAX_QUERY_CHARS);
    const empty = (mode: RetrievalMode): Retrieval => ({ chunks: [], query, mode });
    if (!query) return empty(input.mode ?? 'dense');

    // Two independent reads, side by side: the persona's knowledge state (owners, active space;
    // usually from the cache, docs/decisions/0022) and its retrieval settings (read only when an
    // option is missing; cached by the ProfileResolver). Errors are taken in the order the checks need them.
    const needsPrefs = input.mode === undefined || input.rerank === undefined || input.queryRewrite === undefined;
    const stateRead = this.state.get(personaId);
    const prefsRead: Promise<RetrievalPrefs> = needsPrefs && this.deps.settings ? this.deps.settings.forPersona(ownerId, personaId) : Promise.resolve({});
    prefsRead.catch(() => undefined);

    // Knowledge belongs to the persona's owner: another owner's persona looks like an unknown one.
    const state: KnowledgeState = await stateRead;
    const checkOwner = (owners: readonly string[]) => {
      if (owners.length > 0 && !owners.includes(ownerId)) throw AppError.notFound('persona', personaId);
    };
    checkOwner(state.owners);

    // Unset options take the persona's settings (read only when one is missing).
    const prefs: RetrievalPrefs = await prefsRead;
    const mode = input.mode ?? prefs.mode ?? 'dense';
    const rerank = input.rerank ?? prefs.rerank ?? false;
    const rewrite = input.queryRewrite ?? prefs.queryRewrite ?? false;
    const topKIn = input.topK && input.topK > 0 ? input.topK : prefs.topK;
    const topK = topKIn && topKIn > 0 ? Math.min(Math.floor(topKIn), MAX_TOP_K) : DEFAULT_TOP_K;
    const threshold = input.scoreThreshold ?? prefs.scoreThreshold;

    let space = state.space;
    if (!space) return empty(mode);

    if (rewrite && input.history?.length && this.deps.rewriter) {
      query = (await this.deps.rewriter.rewrite({ ownerId, personaId, query, history: input.history, signal: input.signal })).slice(0, MAX_QUERY_CHARS);
    }

    const candidates = rerank || mode === 'hybrid' ? Math.max(MIN_CANDIDATES, topK * 4) : topK;
    let found = await this.denseSearch(space, ownerId, query, candidates).catch((err: unknown) => ({ failed: err }));
    // The space may have been switched and dropped since it was read (a re-embed on this replica
    // while the reply was on its way, or on another whose notification has not arrived yet): a
    // search that found nothing (or failed) there reads the state again, and searches the space the
    // database names now if it is another one. Never an empty answer from a dropped space. An empty
    // space so checked is not checked again until the persona's next change.
    if (('failed' in found || (found.vector && found.dense.length === 0)) && !this.state.confirmed?.(personaId, space.id)) {
      const fresh = await this.state.revalidate(personaId, space.id);
      checkOwner(fresh.owners);
      if (!fresh.space) return { ...empty(mode), query };
      if (fresh.space.id !== space.id) {
        space = fresh.space;
        found = await this.denseSearch(space, ownerId, query, candidates);
      }
    }
    if ('failed' in found) throw found.failed;
    const { vector, dense } = found;
    if (!vector) return { ...empty(mode), query };
    const store = this.deps.index.store;

    let ranked: ScoredChunk[];
    if (mode === 'hybrid') {
      const lexical = await store.lexicalSearch(space, query, candidates);
      const denseById = new Map(dense.map((d) => [d.id, d.score]));
      const lexicalById = new Map(lexical.map((l) => [l.id, l.score]));
      ranked = rrf([dense, lexical]).map(({ fused, vector: v, ...c }) => {
        // Chunks only the lexical search found get their cosine from their vector.
        const cos = denseById.get(c.id) ?? (v ? cosine(vector, v) : undefined);
        const lex = lexicalById.get(c.id);
        return { ...c, score: fused, scores: { ...(cos === undefined ? {} : { dense: cos }), ...(lex === undefined ? {} : { lexical: lex }), fused } };
      });
    } else {
      ranked = dense.sort((a, b) => b.score - a.score);
    }
    if (threshold !== undefined) ranked = ranked.filter((c) => c.scores?.dense !== undefined && c.scores.dense >= threshold);

    let reranker: string | undefined;
    if (rerank && this.deps.reranker && ranked.length > 0) {
      let scores: number[] | undefined;
      try {
        scores = await this.deps.reranker.score(query, ranked.map((c) => (c.title ? `${c.title}\n${c.text}` : c.text)));
      } catch (err) {
        // Reranking is an optional refinement: without it the fused order stands.
        this.deps.onError?.('reranking', err);
      }
      if (scores) {
        const s = scores;
        ranked = ranked
          .map((c, i) => ({ c, s: s[i] ?? 0, i }))
          .sort((a, b) => b.s - a.s || a.i - b.i)
          .map(({ c, s: score }) => ({ ...c, score, scores: { ...c.scores, rerank: score } }));
        reranker = this.deps.reranker.name;
      }
    }
    return { chunks: ranked.slice(0, topK), query, mode, ...(reranker ? { reranker } : {}), embeddingModel: space.model };
  }

  /** denseSearch embeds the query with the space's model and ranks the space's chunks by cosine similarity (vector undefined: the query embeds to nothing). */
  private async denseSearch(space: EmbeddingSpace, ownerId: string, query: string, candidates: number): Promise<{ vector: number[] | undefined; dense: ScoredChunk[] }> {
    const embedder = await this.deps.index.embedderOf(space, ownerId);
    const [vector] = await embedder.embed([query]);
    if (!vector || !vector.some((x) => x !== 0)) return { vector: undefined, dense: [] };
    const hits = await this.deps.index.store.search(space, vector, candidates);
    return { vector, dense: hits.filter((h) => Number.isFinite(h.score)).map((h) => ({ ...h, scores: { dense: h.score } })) };
  }
}
