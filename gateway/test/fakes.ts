import { ragV1, schedulerV1, sessionV1 } from '@chat/contracts';
import { AppError } from '@chat/errors';
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

  async createSession(req: sessionV1.DeepPartial<sessionV1.CreateSessionRequest>): Promise<sessionV1.CreateSessionResponse> {
    const session = sessionV1.Session.fromPartial({ id: nextId('ses'), ownerId: req.ownerId, personaId: req.personaId, title: req.title, createdAt: new Date() });
    this.sessions.set(session.id, session);
    this.messages.set(session.id, []);
    return { session };
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
    const job = ragV1.IngestJob.fromPartial({ id: nextId('job'), personaId: full.personaId, status: ragV1.JobStatus.JOB_STATUS_QUEUED, chunksTotal: 3 });
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
    return {
      documents: [ragV1.Document.fromPartial({ chunkId: 'chunk_1', sourceId: 'src_1', title: 'Notes', url: '', text: `about ${full.query}`, score: 0.9 })],
    };
  }
}

export class FakeScheduler implements SchedulerApi {
  readonly cancelled: schedulerV1.CancelReplyRequest[] = [];
  async cancelReply(req: schedulerV1.DeepPartial<schedulerV1.CancelReplyRequest>): Promise<schedulerV1.CancelReplyResponse> {
    this.cancelled.push(schedulerV1.CancelReplyRequest.fromPartial(req));
    return { cancelled: true };
  }
}
