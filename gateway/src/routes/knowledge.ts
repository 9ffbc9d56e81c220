import type { FastifyInstance } from 'fastify';
import { personaV1, ragV1 } from '@chat/contracts';
import type { GatewayDeps } from '../deps.js';
import { JobAccepted, noContent, obj, params } from '../schemas.js';
import { ownerOf } from './util.js';

/* Knowledge management and the retrieval test (API.md "Knowledge (RAG)"). */

const str = { type: 'string' } as const;
const num = { type: 'number' } as const;
const int = { type: 'integer' } as const;
const timestamp = { type: ['string', 'null'], description: 'RFC 3339 time' } as const;

export const KnowledgeStats = obj(
  'KnowledgeStats',
  {
    sources: int,
    chunks: int,
    bytes: { type: 'integer', description: 'UTF-8 bytes of the ingested texts' },
    embedding_model: { type: 'string', description: 'the model of the vectors retrieval reads now (empty: no knowledge yet)' },
    embedding_dimensions: int,
    configured_embedding_model: { type: 'string', description: 'the model the persona’s API profile names now; POST …/knowledge/reembed moves the knowledge to it' },
    last_update: timestamp,
    reembed_job_id: { type: ['string', 'null'], description: 'a queued or running re-embed job' },
  },
  [],
);

export const KnowledgeSource = obj('KnowledgeSource', {
  id: str,
  kind: { type: 'string', enum: ['text', 'url', 'background'] },
  title: str,
  url: str,
  chunks: int,
  bytes: int,
  created_at: timestamp,
});

export const Knowledge = obj('Knowledge', { stats: KnowledgeStats, sources: { type: 'array', items: KnowledgeSource, description: 'oldest first' } });

export const RetrievalResult = obj(
  'RetrievalResult',
  {
    chunk_id: str,
    source_id: str,
    title: str,
    url: str,
    text: str,
    score: { type: 'number', description: 'the score of the last ranking stage: cosine similarity (dense), reciprocal rank fusion (hybrid) or the reranker’s' },
    scores: obj(
      undefined,
      {
        dense: { ...num, description: 'cosine similarity to the query (-1..1); the score threshold applies to it' },
        lexical: { ...num, description: 'BM25 score (hybrid mode, when the lexical search found the chunk)' },
        fused: { ...num, description: 'reciprocal rank fusion of the dense and lexical ranks' },
        rerank: { ...num, description: 'the reranker’s relevance (0..1)' },
      },
      ['dense', 'lexical', 'fused', 'rerank'],
    ),
  },
  [],
);

export const RetrievalResults = obj(
  'RetrievalResults',
  {
    results: { type: 'array', items: RetrievalResult, description: 'best first' },
    query: { type: 'string', description: 'the query searched with (rewritten when query_rewrite applied)' },
    mode: { type: 'string', enum: ['dense', 'hybrid'] },
    reranker: { type: ['string', 'null'], description: 'the reranker, when reranking applied (local-overlap-v1 is a built-in heuristic, not a trained model)' },
    embedding_model: { type: ['string', 'null'] },
  },
  [],
);

const KIND: Partial<Record<ragV1.SourceKind, 'text' | 'url' | 'background'>> = {
  [ragV1.SourceKind.SOURCE_KIND_TEXT]: 'text',
  [ragV1.SourceKind.SOURCE_KIND_URL]: 'url',
  [ragV1.SourceKind.SOURCE_KIND_BACKGROUND]: 'background',
};

const iso = (d: Date | undefined) => (d ? d.toISOString() : null);

function documentJson(d: ragV1.Document) {
  const scores: Record<string, number> = {};
  if (d.denseScore !== undefined) scores.dense = d.denseScore;
  if (d.lexicalScore !== undefined) scores.lexical = d.lexicalScore;
  if (d.fusedScore !== undefined) scores.fused = d.fusedScore;
  if (d.rerankScore !== undefined) scores.rerank = d.rerankScore;
  return { chunk_id: d.chunkId, source_id: d.sourceId, title: d.title, url: d.url, text: d.text, score: d.score, scores };
}

const MODE = { dense: ragV1.RetrievalMode.RETRIEVAL_MODE_DENSE, hybrid: ragV1.RetrievalMode.RETRIEVAL_MODE_HYBRID } as const;

interface SearchBody {
  query: string;
  top_k?: number;
  mode?: 'dense' | 'hybrid';
  rerank?: boolean;
  query_rewrite?: boolean;
  history?: Array<{ role: 'user' | 'assistant'; content: string }>;
}

/** knowledgeRoutes: a persona's knowledge (stats, sources, delete, purge, re-embed) and the retrieval test. */
export function knowledgeRoutes(app: FastifyInstance, deps: GatewayDeps): void {
  /** persona answers 404 for unknown and foreign personas before the rag service is asked. */
  const persona = async (owner: string, id: string) => (await deps.persona.getPersona({ ownerId: owner, id })).persona;

  app.get(
    '/personas/:id/knowledge',
    { schema: { tags: ['knowledge'], summary: 'The persona’s knowledge: stats and sources', params: params('id'), response: { 200: Knowledge } } },
    async (req) => {
      const { id } = req.params as { id: string };
      const owner = ownerOf(req);
      await persona(owner, id);
      const res = await deps.rag.getKnowledge({ ownerId: owner, personaId: id });
      const s = res.stats;
      return {
        stats: {
          sources: s?.sources ?? 0,
          chunks: s?.chunks ?? 0,
          bytes: s?.bytes ?? 0,
          embedding_model: s?.embeddingModel ?? '',
          embedding_dimensions: s?.embeddingDimensions ?? 0,
          configured_embedding_model: s?.configuredEmbeddingModel ?? '',
          last_update: iso(s?.lastUpdate),
          reembed_job_id: s?.reembedJobId || null,
        },
        sources: res.sources.map((src) => ({
          id: src.id,
          kind: KIND[src.kind] ?? 'text',
          title: src.title,
          url: src.url,
          chunks: src.chunks,
          bytes: src.bytes,
          created_at: iso(src.createdAt),
        })),
      };
    },
  );

  app.delete(
    '/personas/:id/knowledge/sources/:source_id',
    { schema: { tags: ['knowledge'], summary: 'Delete one knowledge source and its chunks', params: params('id', 'source_id'), response: { 204: noContent } } },
    async (req, reply) => {
      const { id, source_id } = req.params as { id: string; source_id: string };
      const owner = ownerOf(req);
      await persona(owner, id);
      await deps.rag.deleteKnowledgeSource({ ownerId: owner, personaId: id, sourceId: source_id });
      return reply.code(204).send();
    },
  );

  app.delete(
    '/personas/:id/knowledge',
    { schema: { tags: ['knowledge'], summary: 'Purge the persona’s knowledge (every source, chunk and embedding space)', params: params('id'), response: { 204: noContent } } },
    async (req, reply) => {
      const { id } = req.params as { id: string };
      const owner = ownerOf(req);
      await persona(owner, id);
      await deps.rag.purgeKnowledge({ ownerId: owner, personaId: id });
      return reply.code(204).send();
    },
  );

  app.post(
    '/personas/:id/knowledge/reembed',
    {
      schema: {
        tags: ['knowledge'],
        summary: 'Re-embed the knowledge with the embedding model the persona’s profile names now (a job; retrieval keeps working throughout)',
        description: 'New vectors are built beside the current ones and switched to atomically; GET /api/ingest_jobs/{job_id} reports progress. A pending re-embed is returned rather than a second one.',
        params: params('id'),
        response: { 202: JobAccepted },
      },
    },
    async (req, reply) => {
      const { id } = req.params as { id: string };
      const owner = ownerOf(req);
      await persona(owner, id);
      const res = await deps.rag.reembedKnowledge({ ownerId: owner, personaId: id });
      return reply.code(202).send({ job_id: res.jobId });
    },
  );

  app.post(
    '/personas/:id/search',
    {
      schema: {
        tags: ['knowledge'],
        summary: 'Retrieval test: the persona’s best-matching chunks with scores and sources',
        description: 'Unset options take the persona’s retrieval settings. `history` (the conversation before the query) is used by `query_rewrite`.',
        params: params('id'),
        body: {
          type: 'object',
          required: ['query'],
          additionalProperties: false,
          properties: {
            query: { type: 'string', minLength: 1, maxLength: 4_000 },
            top_k: { type: 'integer', minimum: 1, maximum: 50 },
            mode: { type: 'string', enum: ['dense', 'hybrid'] },
            rerank: { type: 'boolean' },
            query_rewrite: { type: 'boolean' },
            history: {
              type: 'array',
              maxItems: 20,
              items: {
                type: 'object',
                required: ['role', 'content'],
                additionalProperties: false,
                properties: { role: { type: 'string', enum: ['user', 'assistant'] }, content: { type: 'string', maxLength: 8_000 } },
              },
            },
          },
        },
        response: { 200: RetrievalResults },
      },
    },
    async (req) => {
      const { id } = req.params as { id: string };
      const body = req.body as SearchBody;
      const owner = ownerOf(req);
      const r = (await persona(owner, id))?.settings?.retrieval;
      const personaMode = r?.mode === personaV1.RetrievalMode.RETRIEVAL_MODE_HYBRID ? 'hybrid' : r?.mode === personaV1.RetrievalMode.RETRIEVAL_MODE_DENSE ? 'dense' : undefined;
      const mode = body.mode ?? personaMode;
      const res = await deps.rag.retrieveDocuments({
        ownerId: owner,
        personaId: id,
        query: body.query,
        topK: body.top_k ?? r?.topK ?? 5,
        scoreThreshold: r?.scoreThreshold,
        mode: mode ? MODE[mode] : ragV1.RetrievalMode.RETRIEVAL_MODE_UNSPECIFIED,
        rerank: body.rerank ?? r?.rerank ?? false,
        queryRewrite: body.query_rewrite ?? r?.queryRewrite ?? false,
        history: (body.history ?? []).map((t) => ({ role: t.role === 'user' ? ragV1.ChatRole.CHAT_ROLE_USER : ragV1.ChatRole.CHAT_ROLE_ASSISTANT, content: t.content })),
      });
      return {
        results: res.documents.map(documentJson),
        query: res.query || body.query,
        mode: res.mode === ragV1.RetrievalMode.RETRIEVAL_MODE_HYBRID ? 'hybrid' : 'dense',
        reranker: res.reranker || null,
        embedding_model: res.embeddingModel || null,
      };
    },
  );
}
