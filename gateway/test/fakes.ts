import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { personaV1, ragV1, schedulerV1, sessionV1 } from '@chat/contracts';
import { AppError, Code } from '@chat/errors';
import type { KeyStore } from '../src/auth.js';
import type { RagApi, SchedulerApi, SessionApi } from '../src/deps.js';

/*
 * In-memory stand-ins for the four services. Like the real ones, they answer NOT_FOUND for an
 * unknown id and for an id that belongs to another owner.
 */

let counter = 0;
const nextId = (prefix: string) => `${prefix}_${++counter}`;

// The persona service's fake lives with the persona and API profile tests.
export { FakePersonas } from './persona-fakes.js';

export class FakeSessions implements SessionApi {
  readonly sessions = new Map<string, sessionV1.Session>();
  readonly messages = new Map<string, sessionV1.Message[]>();
  readonly idempotency = new Map<string, sessionV1.SendMessageResponse>();
  readonly sent: sessionV1.SendMessageRequest[] = [];

  /** Ids of sessions created ephemeral (OpenAI-compatible completions). */
  readonly ephemeral = new Set<string>();
  async createSession(req: sessionV1.DeepPartial<sessionV1.CreateSessionRequest>): Promise<sessionV1.CreateSessionResponse> {
    const session = sessionV1.Session.fromPartial({ id: nextId('ses'), ownerId: req.ownerId, personaId: req.personaId, title: req.title, createdAt: new Date() });
    this.sessions.set(session.id, session);
    this.messages.set(session.id, []);
    if (req.ephemeral) this.ephemeral.add(session.id);
    // With first_message the message is sent in the same call, as the session service does (decision 0021).
    if (req.firstMessage) {
      const sent = await this.sendMessage({ ownerId: req.ownerId, sessionId: session.id, content: req.firstMessage.content, priority: req.firstMessage.priority });
      return { session, ...sent };
    }
    return { session, messageId: '', replyId: '' };
  }

  private own(ownerId: string | undefined, id: string | undefined): sessionV1.Session {
    const s = this.sessions.get(id ?? '');
    if (!s || s.ownerId !== ownerId) throw AppError.notFound('session', id ?? '');
    return s;
  }

  async getSession(req: sessionV1.DeepPartial<sessionV1.GetSessionRequest>): Promise<sessionV1.GetSessionResponse> {
    const session = this.own(req.ownerId, req.id);
    const all = this.messages.get(session.id) ?? [];
    return { session, recentMessages: all.slice(-(req.recentLimit || 50)) };
  }

  async listMessages(req: sessionV1.DeepPartial<sessionV1.ListMessagesRequest>): Promise<sessionV1.ListMessagesResponse> {
    const session = this.own(req.ownerId, req.sessionId);
    let all = this.messages.get(session.id) ?? [];
    if (req.before) {
      const i = all.findIndex((m) => m.id === req.before);
      all = i >= 0 ? all.slice(0, i) : all;
    }
    const limit = req.limit || 50;
    return { messages: all.slice(-limit), hasMore: all.length > limit };
  }

  async sendMessage(req: sessionV1.DeepPartial<sessionV1.SendMessageRequest>): Promise<sessionV1.SendMessageResponse> {
    const session = this.own(req.ownerId, req.sessionId);
    const full = sessionV1.SendMessageRequest.fromPartial(req);
    if (full.idempotencyKey) {
      const seen = this.idempotency.get(`${session.id}/${full.idempotencyKey}`);
      if (seen) return seen;
    }
    this.sent.push(full);
    const res = { messageId: nextId('msg'), replyId: nextId('rep') };
    this.messages.get(session.id)!.push(
      sessionV1.Message.fromPartial({
        id: res.messageId,
        sessionId: session.id,
        role: sessionV1.Role.ROLE_USER,
        content: full.content,
        status: sessionV1.MessageStatus.MESSAGE_STATUS_COMPLETED,
        replyId: res.replyId,
        createdAt: new Date(),
      }),
    );
    if (full.idempotencyKey) this.idempotency.set(`${session.id}/${full.idempotencyKey}`, res);
    return res;
  }

  /** listSessions pages newest first; the page token is the index to continue at. */
  async listSessions(req: sessionV1.DeepPartial<sessionV1.ListSessionsRequest>): Promise<sessionV1.ListSessionsResponse> {
    const all = [...this.sessions.values()].filter((s) => s.ownerId === req.ownerId && (!req.personaId || s.personaId === req.personaId)).reverse();
    const start = req.pageToken ? Number(req.pageToken) : 0;
    if (!Number.isInteger(start) || start < 0) throw AppError.invalid('page_token is not valid', { page_token: 'must be a next_page_token this API returned' });
    const limit = req.limit || 20;
    const page = all.slice(start, start + limit);
    return { sessions: page, nextPageToken: start + limit < all.length ? String(start + limit) : '' };
  }

  async deleteSession(req: sessionV1.DeepPartial<sessionV1.DeleteSessionRequest>): Promise<sessionV1.DeleteSessionResponse> {
    const session = this.own(req.ownerId, req.id);
    this.sessions.delete(session.id);
    this.messages.delete(session.id);
    return {};
  }
}

export class FakeRag implements RagApi {
  readonly jobs = new Map<string, { owner: string; job: ragV1.IngestJob }>();
  readonly ingested: ragV1.IngestTextRequest[] = [];
  readonly retrieved: ragV1.RetrieveDocumentsRequest[] = [];

  async ingestText(req: ragV1.DeepPartial<ragV1.IngestTextRequest>): Promise<ragV1.IngestTextResponse> {
    const full = ragV1.IngestTextRequest.fromPartial(req);
    this.ingested.push(full);
    const job = ragV1.IngestJob.fromPartial({ id: nextId('job'), personaId: full.personaId, status: ragV1.JobStatus.JOB_STATUS_QUEUED, stage: 'queued', chunksTotal: 3 });
    this.jobs.set(job.id, { owner: full.ownerId, job });
    return { jobId: job.id };
  }

  readonly urls: ragV1.IngestUrlRequest[] = [];

  async ingestUrl(req: ragV1.DeepPartial<ragV1.IngestUrlRequest>): Promise<ragV1.IngestUrlResponse> {
    const full = ragV1.IngestUrlRequest.fromPartial(req);
    this.urls.push(full);
    const job = ragV1.IngestJob.fromPartial({ id: nextId('job'), personaId: full.personaId, status: ragV1.JobStatus.JOB_STATUS_QUEUED });
    this.jobs.set(job.id, { owner: full.ownerId, job });
    return { jobId: job.id };
  }

  async getIngestJob(req: ragV1.DeepPartial<ragV1.GetIngestJobRequest>): Promise<ragV1.GetIngestJobResponse> {
    const j = this.jobs.get(req.jobId ?? '');
    if (!j || j.owner !== req.ownerId) throw AppError.notFound('ingest job', req.jobId ?? '');
    return { job: j.job };
  }

  async retrieveDocuments(req: ragV1.DeepPartial<ragV1.RetrieveDocumentsRequest>): Promise<ragV1.RetrieveDocumentsResponse> {
    const full = ragV1.RetrieveDocumentsRequest.fromPartial(req);
    this.retrieved.push(full);
    return ragV1.RetrieveDocumentsResponse.fromPartial({
      documents: [ragV1.Document.fromPartial({ chunkId: 'chunk_1', sourceId: 'src_1', title: 'Notes', url: '', text: `about ${full.query}`, score: 0.9 })],
    });
  }
  // Knowledge management: one in-memory source list per persona (key owner/persona).
  readonly knowledge = new Map<string, ragV1.KnowledgeSource[]>();
  readonly purged: string[] = [];

  async getKnowledge(req: ragV1.DeepPartial<ragV1.GetKnowledgeRequest>): Promise<ragV1.GetKnowledgeResponse> {
    const sources = this.knowledge.get(`${req.ownerId}/${req.personaId}`) ?? [];
    return {
      stats: ragV1.KnowledgeStats.fromPartial({
        sources: sources.length,
        chunks: sources.reduce((n, s) => n + s.chunks, 0),
        bytes: sources.reduce((n, s) => n + s.bytes, 0),
        embeddingModel: sources.length ? 'local-hash-384' : '',
        embeddingDimensions: sources.length ? 384 : 0,
        configuredEmbeddingModel: 'local-hash-384',
      }),
      sources,
    };
  }

  async deleteKnowledgeSource(req: ragV1.DeepPartial<ragV1.DeleteKnowledgeSourceRequest>): Promise<ragV1.DeleteKnowledgeSourceResponse> {
    const key = `${req.ownerId}/${req.personaId}`;
    const sources = this.knowledge.get(key) ?? [];
    if (!sources.some((s) => s.id === req.sourceId)) throw AppError.notFound('source', req.sourceId ?? '');
    this.knowledge.set(key, sources.filter((s) => s.id !== req.sourceId));
    return {};
  }

  async purgeKnowledge(req: ragV1.DeepPartial<ragV1.PurgeKnowledgeRequest>): Promise<ragV1.PurgeKnowledgeResponse> {
    this.knowledge.delete(`${req.ownerId}/${req.personaId}`);
    this.purged.push(req.personaId ?? '');
    return {};
  }

  async reembedKnowledge(req: ragV1.DeepPartial<ragV1.ReembedKnowledgeRequest>): Promise<ragV1.ReembedKnowledgeResponse> {
    const job = ragV1.IngestJob.fromPartial({ id: nextId('job'), personaId: req.personaId ?? '', status: ragV1.JobStatus.JOB_STATUS_QUEUED });
    this.jobs.set(job.id, { owner: req.ownerId ?? '', job });
    return { jobId: job.id };
  }
}

export class FakeScheduler implements SchedulerApi {
  readonly cancelled: schedulerV1.CancelReplyRequest[] = [];
  /** The dead letters the admin calls see (tests fill it). */
  readonly letters: schedulerV1.DeadLetter[] = [];
  readonly listed: schedulerV1.ListDeadLettersRequest[] = [];
  async cancelReply(req: schedulerV1.DeepPartial<schedulerV1.CancelReplyRequest>): Promise<schedulerV1.CancelReplyResponse> {
    this.cancelled.push(schedulerV1.CancelReplyRequest.fromPartial(req));
    return { cancelled: true };
  }
  async listDeadLetters(req: schedulerV1.DeepPartial<schedulerV1.ListDeadLettersRequest>): Promise<schedulerV1.ListDeadLettersResponse> {
    this.listed.push(schedulerV1.ListDeadLettersRequest.fromPartial(req));
    return { deadLetters: this.letters.filter((d) => req.includeReplayed || !d.replayed), nextPageToken: '' };
  }
  async replayDeadLetter(req: schedulerV1.DeepPartial<schedulerV1.ReplayDeadLetterRequest>): Promise<schedulerV1.ReplayDeadLetterResponse> {
    const d = this.letters.find((x) => x.id === req.id);
    if (!d) throw AppError.notFound('dead letter', req.id ?? '');
    if (d.replayed) throw new AppError(Code.FailedPrecondition, 'already replayed', { reason: 'already_replayed' });
    Object.assign(d, { replayed: true, replayedAt: new Date('2026-01-02T00:00:00Z'), replayedBy: req.requestedBy });
    return { deadLetter: d };
  }
}

/**
 * An in-memory key store with the persona service's semantics (digests only, owner-checked,
 * NOT_FOUND for unknown digests and foreign ids, nonces recorded once). `down` makes every call
 * fail UNAVAILABLE; `lookups` counts digest lookups (to see the cache work).
 */
export class FakeKeyStore implements KeyStore {
  readonly keys = new Map<string, { key: personaV1.ApiKey; digest: string }>();
  readonly nonces = new Map<string, Date>();
  down = false;
  lookups = 0;

  private up(): void {
    if (this.down) throw AppError.unavailable('persona service unavailable');
  }

  async authenticateApiKey(req: { digest: Buffer }) {
    this.up();
    this.lookups++;
    const hex = Buffer.from(req.digest).toString('hex');
    const hit = [...this.keys.values()].find((k) => k.digest === hex && !k.key.revokedAt);
    if (!hit) throw AppError.notFound('api key', '(digest)');
    return { keyId: hit.key.id, ownerId: hit.key.ownerId };
  }

  async createApiKey(req: { ownerId: string; name: string }) {
    this.up();
    const secret = `pk_${randomBytes(32).toString('base64url')}`;
    const key = personaV1.ApiKey.fromPartial({ id: randomUUID(), ownerId: req.ownerId, name: req.name, prefix: secret.slice(0, 8), createdAt: new Date() });
    this.keys.set(key.id, { key, digest: createHash('sha256').update(secret).digest('hex') });
    return { apiKey: key, secret };
  }

  async listApiKeys(req: { ownerId: string }) {
    this.up();
    return { apiKeys: [...this.keys.values()].filter((k) => k.key.ownerId === req.ownerId).map((k) => k.key).reverse() };
  }

  async revokeApiKey(req: { ownerId: string; id: string }) {
    this.up();
    const k = this.keys.get(req.id);
    if (!k || k.key.ownerId !== req.ownerId) throw AppError.notFound('api key', req.id);
    k.key = { ...k.key, revokedAt: k.key.revokedAt ?? new Date() };
    return { apiKey: k.key };
  }

  async consumeNonce(req: { nonce: string; expiresAt: Date }) {
    this.up();
    if (this.nonces.has(req.nonce)) return { firstUse: false };
    this.nonces.set(req.nonce, req.expiresAt);
    return { firstUse: true };
  }
}
