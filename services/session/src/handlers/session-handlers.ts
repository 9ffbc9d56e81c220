import { AppError } from '@chat/errors';
import { sessionV1 } from '@chat/contracts';
import type { PersonaClient } from '@chat/clients';
import { isUuid, validateCreate, validateSend, type Message, type Session } from '../domain/session.js';
import { assertOwned, type SessionRepository } from '../adapters/postgres/session-repo.js';

const STATUS = {
  pending: sessionV1.MessageStatus.MESSAGE_STATUS_PENDING,
  streaming: sessionV1.MessageStatus.MESSAGE_STATUS_STREAMING,
  completed: sessionV1.MessageStatus.MESSAGE_STATUS_COMPLETED,
  failed: sessionV1.MessageStatus.MESSAGE_STATUS_FAILED,
  cancelled: sessionV1.MessageStatus.MESSAGE_STATUS_CANCELLED,
} as const;

function sessionToProto(s: Session): sessionV1.Session {
  return sessionV1.Session.fromPartial({ id: s.id, ownerId: s.ownerId, personaId: s.personaId, title: s.title, createdAt: s.createdAt, lastSeq: s.lastSeq });
}

function messageToProto(m: Message): sessionV1.Message {
  return sessionV1.Message.fromPartial({
    id: m.id,
    sessionId: m.sessionId,
    role: m.role === 'user' ? sessionV1.Role.ROLE_USER : sessionV1.Role.ROLE_ASSISTANT,
    content: m.content,
    status: STATUS[m.status],
    replyId: m.replyId ?? '',
    replyTo: m.replyTo ?? '',
    citations: m.citations.map((c) => ({ sourceId: c.source_id, title: c.title, url: c.url, chunkId: c.chunk_id, score: c.score })),
    model: m.model,
    error: m.error,
    createdAt: m.createdAt,
  });
}

function requireOwner(ownerId: string): void {
  if (!ownerId) throw AppError.invalid('owner_id is required', { owner_id: 'is required' });
}

/** sessionHandlers translates gRPC calls to the repository; personas are checked over gRPC. */
export function sessionHandlers(repo: SessionRepository, personas: PersonaClient) {
  return {
    async createSession(req: sessionV1.CreateSessionRequest): Promise<sessionV1.CreateSessionResponse> {
      validateCreate({ ownerId: req.ownerId, personaId: req.personaId, title: req.title });
      // NOT_FOUND from the persona service covers unknown and foreign personas alike.
      await personas.getPersona({ ownerId: req.ownerId, id: req.personaId });
      return { session: sessionToProto(await repo.createSession(req.ownerId, req.personaId, req.title.trim())) };
    },
    async getSession(req: sessionV1.GetSessionRequest): Promise<sessionV1.GetSessionResponse> {
      requireOwner(req.ownerId);
      const s = await assertOwned(repo, req.ownerId, req.id, isUuid);
      const { messages } = await repo.listMessages(s.id, Math.min(req.recentLimit || 50, 200));
      return { session: sessionToProto(s), recentMessages: messages.map(messageToProto) };
    },
    async listMessages(req: sessionV1.ListMessagesRequest): Promise<sessionV1.ListMessagesResponse> {
      requireOwner(req.ownerId);
      const s = await assertOwned(repo, req.ownerId, req.sessionId, isUuid);
      if (req.limit > 200) throw AppError.invalid('limit is too large', { limit: 'must be at most 200' });
      if (req.before && !(isUuid(req.before) && (await repo.messageExists(s.id, req.before)))) {
        throw AppError.invalid('before is not a message of this session', { before: 'must be a message id of this session' });
      }
      const page = await repo.listMessages(s.id, req.limit || 50, req.before || undefined);
      return { messages: page.messages.map(messageToProto), hasMore: page.hasMore };
    },
    async sendMessage(req: sessionV1.SendMessageRequest): Promise<sessionV1.SendMessageResponse> {
      requireOwner(req.ownerId);
      validateSend({ ownerId: req.ownerId, content: req.content, priority: req.priority, idempotencyKey: req.idempotencyKey });
      const s = await assertOwned(repo, req.ownerId, req.sessionId, isUuid);
      const { messageId, replyId } = await repo.sendMessage(s, req.content, req.priority, req.idempotencyKey);
      return { messageId, replyId };
    },
  };
}
