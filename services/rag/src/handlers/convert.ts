import { ragV1 } from '@chat/contracts';
import type { HistoryTurn } from '../domain/prompt.js';
import type { IngestJob, JobStatus, KnowledgeSource, KnowledgeStats, ReembedJob, RetrievalMode, ScoredChunk, SourceKind } from '../domain/types.js';

/** sourceKind maps the wire enum to the domain kind; unspecified means plain text. */
export function sourceKind(kind: ragV1.SourceKind): SourceKind {
  switch (kind) {
    case ragV1.SourceKind.SOURCE_KIND_URL:
      return 'URL';
    case ragV1.SourceKind.SOURCE_KIND_BACKGROUND:
      return 'BACKGROUND';
    default:
      return 'TEXT';
  }
}

const STATUS: Record<JobStatus, ragV1.JobStatus> = {
  queued: ragV1.JobStatus.JOB_STATUS_QUEUED,
  running: ragV1.JobStatus.JOB_STATUS_RUNNING,
  succeeded: ragV1.JobStatus.JOB_STATUS_SUCCEEDED,
  failed: ragV1.JobStatus.JOB_STATUS_FAILED,
};

/** The fields ingest and re-embed jobs share on the wire (GetIngestJob serves both). */
function jobFields(job: IngestJob | ReembedJob) {
  return {
    id: job.id,
    personaId: job.personaId,
    status: STATUS[job.status],
    chunksDone: job.chunksDone,
    chunksTotal: job.chunksTotal,
    error: job.error,
    createdAt: job.createdAt,
    updatedAt: job.updatedAt,
  };
}

export function jobToWire(job: IngestJob): ragV1.IngestJob {
  return { ...jobFields(job), sourceId: job.status === 'succeeded' ? job.sourceId : '', stage: job.stage };
}

export function documentToWire(c: ScoredChunk): ragV1.Document {
  const s = c.scores ?? {};
  return {
    chunkId: c.id,
    sourceId: c.sourceId,
    title: c.title,
    url: c.url,
    text: c.text,
    score: c.score,
    denseScore: s.dense,
    lexicalScore: s.lexical,
    fusedScore: s.fused,
    rerankScore: s.rerank,
  };
}

/** modeFromWire maps the wire retrieval mode; unspecified means the persona's setting. */
export function modeFromWire(mode: ragV1.RetrievalMode): RetrievalMode | undefined {
  if (mode === ragV1.RetrievalMode.RETRIEVAL_MODE_DENSE) return 'dense';
  if (mode === ragV1.RetrievalMode.RETRIEVAL_MODE_HYBRID) return 'hybrid';
  return undefined;
}

export function modeToWire(mode: RetrievalMode): ragV1.RetrievalMode {
  return mode === 'hybrid' ? ragV1.RetrievalMode.RETRIEVAL_MODE_HYBRID : ragV1.RetrievalMode.RETRIEVAL_MODE_DENSE;
}

const KIND: Record<SourceKind, ragV1.SourceKind> = {
  TEXT: ragV1.SourceKind.SOURCE_KIND_TEXT,
  URL: ragV1.SourceKind.SOURCE_KIND_URL,
  BACKGROUND: ragV1.SourceKind.SOURCE_KIND_BACKGROUND,
};

export function knowledgeSourceToWire(s: KnowledgeSource): ragV1.KnowledgeSource {
  return { id: s.id, kind: KIND[s.kind] ?? ragV1.SourceKind.SOURCE_KIND_TEXT, title: s.title, url: s.url, chunks: s.chunkCount, bytes: s.bytes, createdAt: s.createdAt };
}

export function knowledgeStatsToWire(s: KnowledgeStats): ragV1.KnowledgeStats {
  return {
    sources: s.sources,
    chunks: s.chunks,
    bytes: s.bytes,
    embeddingModel: s.embeddingModel,
    embeddingDimensions: s.embeddingDimensions,
    configuredEmbeddingModel: s.configuredEmbeddingModel,
    lastUpdate: s.lastUpdate,
    reembedJobId: s.reembedJobId,
  };
}

/** reembedJobToWire shows a re-embed job as an ingest job (GetIngestJob serves both). */
export function reembedJobToWire(job: ReembedJob): ragV1.IngestJob {
  return { ...jobFields(job), sourceId: '' };
}

/** history keeps the user and assistant turns; turns without a role are dropped. */
export function historyFromWire(turns: readonly ragV1.ChatTurn[]): HistoryTurn[] {
  const out: HistoryTurn[] = [];
  for (const t of turns) {
    if (t.role === ragV1.ChatRole.CHAT_ROLE_USER) out.push({ role: 'user', content: t.content });
    else if (t.role === ragV1.ChatRole.CHAT_ROLE_ASSISTANT) out.push({ role: 'assistant', content: t.content });
  }
  return out;
}
