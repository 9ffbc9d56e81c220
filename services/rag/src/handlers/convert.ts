import { ragV1 } from '@chat/contracts';
import type { HistoryTurn } from '../domain/prompt.js';
import type { IngestJob, JobStatus, ScoredChunk, SourceKind } from '../domain/types.js';

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

export function jobToWire(job: IngestJob): ragV1.IngestJob {
  return {
    id: job.id,
    personaId: job.personaId,
    status: STATUS[job.status],
    chunksDone: job.chunksDone,
    chunksTotal: job.chunksTotal,
    error: job.error,
    sourceId: job.status === 'succeeded' ? job.sourceId : '',
    createdAt: job.createdAt,
    updatedAt: job.updatedAt,
  };
}

export function documentToWire(c: ScoredChunk): ragV1.Document {
  return { chunkId: c.id, sourceId: c.sourceId, title: c.title, url: c.url, text: c.text, score: c.score };
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
