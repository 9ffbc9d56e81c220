import { once } from 'node:events';
import type { ServerWritableStream } from '@grpc/grpc-js';
import { ragV1 } from '@chat/contracts';
import type { Logger } from '@chat/logger';
import { Code, isAppError } from '@chat/errors';
import type { Generator } from '../domain/generate.js';
import type { IngestService } from '../domain/ingest.js';
import type { KnowledgeService } from '../domain/knowledge.js';
import type { Retriever } from '../domain/retrieval.js';
import {
  documentToWire,
  historyFromWire,
  jobToWire,
  knowledgeSourceToWire,
  knowledgeStatsToWire,
  modeFromWire,
  modeToWire,
  reembedJobToWire,
  sourceKind,
} from './convert.js';

/** RagHandlers are the RagService methods as wrapImplementation expects them: (request, call). */
export interface RagHandlers {
  ingestText(request: ragV1.IngestTextRequest): Promise<ragV1.IngestTextResponse>;
  getIngestJob(request: ragV1.GetIngestJobRequest): Promise<ragV1.GetIngestJobResponse>;
  retrieveDocuments(request: ragV1.RetrieveDocumentsRequest): Promise<ragV1.RetrieveDocumentsResponse>;
  generate(request: ragV1.GenerateRequest, call: ServerWritableStream<ragV1.GenerateRequest, ragV1.GenerateResponse>): Promise<void>;
  summarize(request: ragV1.SummarizeRequest): Promise<ragV1.SummarizeResponse>;
  ingestUrl(request: ragV1.IngestUrlRequest): Promise<ragV1.IngestUrlResponse>;
  getKnowledge(request: ragV1.GetKnowledgeRequest): Promise<ragV1.GetKnowledgeResponse>;
  deleteKnowledgeSource(request: ragV1.DeleteKnowledgeSourceRequest): Promise<ragV1.DeleteKnowledgeSourceResponse>;
  purgeKnowledge(request: ragV1.PurgeKnowledgeRequest): Promise<ragV1.PurgeKnowledgeResponse>;
  reembedKnowledge(request: ragV1.ReembedKnowledgeRequest): Promise<ragV1.ReembedKnowledgeResponse>;
}

/** write sends one stream item, waiting for the buffer to drain (or the call to end) when it is full. */
async function write(call: ServerWritableStream<ragV1.GenerateRequest, ragV1.GenerateResponse>, item: ragV1.GenerateResponse): Promise<void> {
  if (call.write(item)) return;
  const ac = new AbortController();
  try {
    await Promise.race([once(call, 'drain', { signal: ac.signal }), once(call, 'cancelled', { signal: ac.signal }), once(call, 'close', { signal: ac.signal })]);
  } catch {
    // aborted below
  } finally {
    ac.abort();
  }
}

/** ragHandlers translates between the gRPC messages and the domain services. */
export function ragHandlers(deps: { ingest: IngestService; retriever: Retriever; generator: Generator; knowledge: KnowledgeService; logger: Logger }): RagHandlers {
  return {
    async ingestText(req) {
      const jobId = await deps.ingest.submit({
        ownerId: req.ownerId,
        personaId: req.personaId,
        text: req.text,
        title: req.title,
        source: req.source,
        kind: sourceKind(req.kind),
      });
      return { jobId };
    },

    async ingestUrl(req) {
      const jobId = await deps.ingest.submitUrl({ ownerId: req.ownerId, personaId: req.personaId, url: req.url, title: req.title });
      return { jobId };
    },

    async getIngestJob(req) {
      try {
        const job = await deps.ingest.getJob(req.ownerId, req.jobId);
        return { job: jobToWire(job) };
      } catch (err) {
        // Re-embed jobs share the job endpoint: an id that is no ingest job may be one of those.
        if (!isAppError(err) || err.code !== Code.NotFound) throw err;
        return { job: reembedJobToWire(await deps.knowledge.getJob(req.ownerId, req.jobId)) };
      }
    },

    async retrieveDocuments(req) {
      const r = await deps.retriever.retrieveDetailed({
        ownerId: req.ownerId,
        personaId: req.personaId,
        query: req.query,
        topK: req.topK,
        scoreThreshold: req.scoreThreshold,
        mode: modeFromWire(req.mode),
        rerank: req.rerank,
        queryRewrite: req.queryRewrite,
        history: historyFromWire(req.history),
      });
      return { documents: r.chunks.map(documentToWire), query: r.query, mode: modeToWire(r.mode), reranker: r.reranker ?? '', embeddingModel: r.embeddingModel ?? '' };
    },

    async getKnowledge(req) {
      const { stats, sources } = await deps.knowledge.stats(req.ownerId, req.personaId);
      return { stats: knowledgeStatsToWire(stats), sources: sources.map(knowledgeSourceToWire) };
    },

    async deleteKnowledgeSource(req) {
      await deps.knowledge.deleteSource(req.ownerId, req.personaId, req.sourceId);
      return {};
    },

    async purgeKnowledge(req) {
      await deps.knowledge.purge(req.ownerId, req.personaId);
      return {};
    },

    async reembedKnowledge(req) {
      return { jobId: await deps.knowledge.reembed(req.ownerId, req.personaId) };
    },

    async generate(req, call) {
      const ac = new AbortController();
      const onCancel = () => ac.abort();
      call.on('cancelled', onCancel);
      try {
        const events = deps.generator.generate(
          {
            ownerId: req.ownerId,
            personaId: req.personaId,
            systemPrompt: req.systemPrompt,
            history: historyFromWire(req.history),
            summary: req.summary,
            userMessage: req.userMessage,
            temperature: req.temperature,
            maxTokens: req.maxTokens,
            topK: req.topK,
            scoreThreshold: req.scoreThreshold,
          },
          ac.signal,
        );
        for await (const ev of events) {
          if (call.cancelled) {
            ac.abort();
            return;
          }
          if (ev.type === 'delta') await write(call, { item: { $case: 'delta', value: { text: ev.text } } });
          else await write(call, { item: { $case: 'completed', value: { content: ev.content, citations: ev.citations, model: ev.model } } });
        }
      } catch (err) {
        // A cancelled call has no one to tell; any other failure goes to the shared wrapper, which
        // logs internal errors and sends the status.
        if (call.cancelled || ac.signal.aborted) return;
        throw err;
      } finally {
        call.off('cancelled', onCancel);
      }
    },

    async summarize(req) {
      return deps.generator.summarize({
        ownerId: req.ownerId,
        personaId: req.personaId,
        previousSummary: req.previousSummary,
        turns: historyFromWire(req.turns),
        temperature: req.temperature,
        maxTokens: req.maxTokens,
      });
    },
  };
}
