import { personaV1, ragV1, sessionV1 } from '@chat/contracts';

/* Mapping between the services' protobuf messages and the public snake_case JSON. */

const iso = (d: Date | undefined) => (d ? d.toISOString() : null);

/** The public `settings` object of a persona. */
export interface SettingsJson {
  temperature?: number;
  max_tokens?: number;
  retrieval?: { top_k?: number; score_threshold?: number; mode?: 'dense' | 'hybrid'; rerank?: boolean; query_rewrite?: boolean };
  history_budget_tokens?: number;
}

const MODE_TO_JSON: Partial<Record<personaV1.RetrievalMode, 'dense' | 'hybrid'>> = {
  [personaV1.RetrievalMode.RETRIEVAL_MODE_DENSE]: 'dense',
  [personaV1.RetrievalMode.RETRIEVAL_MODE_HYBRID]: 'hybrid',
};

export function settingsToJson(s: personaV1.PersonaSettings | undefined): SettingsJson {
  const out: SettingsJson = {};
  if (!s) return out;
  if (s.temperature !== undefined) out.temperature = s.temperature;
  if (s.maxTokens !== undefined) out.max_tokens = s.maxTokens;
  if (s.historyBudgetTokens !== undefined) out.history_budget_tokens = s.historyBudgetTokens;
  const r = s.retrieval;
  if (r) {
    const retrieval: NonNullable<SettingsJson['retrieval']> = {};
    if (r.topK !== undefined) retrieval.top_k = r.topK;
    if (r.scoreThreshold !== undefined) retrieval.score_threshold = r.scoreThreshold;
    const mode = MODE_TO_JSON[r.mode];
    if (mode) retrieval.mode = mode;
    if (r.rerank !== undefined) retrieval.rerank = r.rerank;
    if (r.queryRewrite !== undefined) retrieval.query_rewrite = r.queryRewrite;
    out.retrieval = retrieval;
  }
  return out;
}

export function settingsFromJson(s: SettingsJson | undefined): personaV1.DeepPartial<personaV1.PersonaSettings> | undefined {
  if (!s) return undefined;
  const r = s.retrieval;
  return {
    temperature: s.temperature,
    maxTokens: s.max_tokens,
    historyBudgetTokens: s.history_budget_tokens,
    retrieval: r
      ? {
          topK: r.top_k,
          scoreThreshold: r.score_threshold,
          mode: r.mode === 'dense' ? personaV1.RetrievalMode.RETRIEVAL_MODE_DENSE : r.mode === 'hybrid' ? personaV1.RetrievalMode.RETRIEVAL_MODE_HYBRID : personaV1.RetrievalMode.RETRIEVAL_MODE_UNSPECIFIED,
          rerank: r.rerank,
          queryRewrite: r.query_rewrite,
        }
      : undefined,
  };
}

/** personaToJson renders a persona; the owner id stays internal. */
export function personaToJson(p: personaV1.Persona | undefined) {
  if (!p) throw new Error('service answered without a persona');
  return {
    id: p.id,
    name: p.name,
    system_prompt: p.systemPrompt,
    background: p.background,
    api_profile_id: p.apiProfileId ?? null,
    settings: settingsToJson(p.settings),
    created_at: iso(p.createdAt),
    updated_at: iso(p.updatedAt),
  };
}

/** The public citation shape (url only when there is one). */
export function citationToJson(c: ragV1.Citation) {
  return { source_id: c.sourceId, title: c.title, ...(c.url ? { url: c.url } : {}), chunk_id: c.chunkId, score: c.score };
}

const ROLE: Partial<Record<sessionV1.Role, 'user' | 'assistant'>> = {
  [sessionV1.Role.ROLE_USER]: 'user',
  [sessionV1.Role.ROLE_ASSISTANT]: 'assistant',
};

const STATUS: Partial<Record<sessionV1.MessageStatus, string>> = {
  [sessionV1.MessageStatus.MESSAGE_STATUS_PENDING]: 'pending',
  [sessionV1.MessageStatus.MESSAGE_STATUS_STREAMING]: 'streaming',
  [sessionV1.MessageStatus.MESSAGE_STATUS_COMPLETED]: 'completed',
  [sessionV1.MessageStatus.MESSAGE_STATUS_FAILED]: 'failed',
  [sessionV1.MessageStatus.MESSAGE_STATUS_CANCELLED]: 'cancelled',
};

export function messageToJson(m: sessionV1.Message) {
  return {
    id: m.id,
    role: ROLE[m.role] ?? 'user',
    content: m.content,
    status: STATUS[m.status] ?? 'pending',
    ...(m.replyId ? { reply_id: m.replyId } : {}),
    ...(m.replyTo ? { reply_to: m.replyTo } : {}),
    citations: m.citations.map(citationToJson),
    ...(m.model ? { model: m.model } : {}),
    ...(m.error ? { error: m.error } : {}),
    created_at: iso(m.createdAt),
  };
}

export function sessionToJson(s: sessionV1.Session | undefined) {
  if (!s) throw new Error('service answered without a session');
  return { id: s.id, persona_id: s.personaId, title: s.title, created_at: iso(s.createdAt) };
}

const JOB_STATUS: Partial<Record<ragV1.JobStatus, string>> = {
  [ragV1.JobStatus.JOB_STATUS_QUEUED]: 'queued',
  [ragV1.JobStatus.JOB_STATUS_RUNNING]: 'running',
  [ragV1.JobStatus.JOB_STATUS_SUCCEEDED]: 'succeeded',
  [ragV1.JobStatus.JOB_STATUS_FAILED]: 'failed',
};

export function jobToJson(j: ragV1.IngestJob | undefined) {
  if (!j) throw new Error('service answered without a job');
  return {
    job_id: j.id,
    persona_id: j.personaId,
    status: JOB_STATUS[j.status] ?? 'queued',
    progress: { chunks_done: j.chunksDone, chunks_total: j.chunksTotal },
    ...(j.stage ? { stage: j.stage } : {}),
    ...(j.error ? { error: j.error } : {}),
    ...(j.sourceId ? { source_id: j.sourceId } : {}),
  };
}
