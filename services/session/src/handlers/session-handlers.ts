import { AppError, Code, isAppError } from '@chat/errors';
import { eventsV1, sessionV1 } from '@chat/contracts';
import type { PersonaClient } from '@chat/clients';
import { decodeCursor, encodeCursor, isUuid, NO_NUL, validateCreate, validateSend, type Message, type Session, type Summary } from '../domain/session.js';
import { assertOwned, type SessionRepository } from '../adapters/postgres/session-repo.js';
import type { ReplyEventStore } from '../adapters/postgres/reply-events.js';
import { KnownPersonas } from '../domain/known-personas.js';

/** STATUS maps stored message statuses to the protocol's (exported for tests). */
export const STATUS = {
  pending: sessionV1.MessageStatus.MESSAGE_STATUS_PENDING,
  streaming: sessionV1.MessageStatus.MESSAGE_STATUS_STREAMING,
  completed: sessionV1.MessageStatus.MESSAGE_STATUS_COMPLETED,
  failed: sessionV1.MessageStatus.MESSAGE_STATUS_FAILED,
  cancelled: sessionV1.MessageStatus.MESSAGE_STATUS_CANCELLED,
} as const;

export function sessionToProto(s: Session): sessionV1.Session {
  return sessionV1.Session.fromPartial({ id: s.id, ownerId: s.ownerId, personaId: s.personaId, title: s.title, createdAt: s.createdAt, lastSeq: s.lastSeq });
}

export function messageToProto(m: Message): sessionV1.Message {
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
    position: m.position,
  });
}

export function summaryToProto(s: Summary): sessionV1.Summary {
  return sessionV1.Summary.fromPartial({ text: s.text, coveredUntil: s.coveredUntil, version: s.version, updatedAt: s.updatedAt });
}

/** Most messages a conversation window or a summary page returns. */
const MAX_WINDOW_MESSAGES = 1_000;

function requireOwner(ownerId: string): void {
  if (!ownerId) throw AppError.invalid('owner_id is required', { owner_id: 'is required' });
}

/** Most history turns a new session can be seeded with, and the longest one. */
const MAX_HISTORY_TURNS = 500;
const MAX_TURN_CHARS = 32_000;

/** validateHistory checks the turns a session is created with. */
function validateHistory(turns: sessionV1.HistoryTurn[]): Array<{ role: 'user' | 'assistant'; content: string }> {
  if (turns.length > MAX_HISTORY_TURNS) throw AppError.invalid('history has too many turns', { history: `must have at most ${MAX_HISTORY_TURNS} turns` });
  return turns.map((t, i) => {
    const role = t.role === sessionV1.Role.ROLE_USER ? 'user' : t.role === sessionV1.Role.ROLE_ASSISTANT ? 'assistant' : undefined;
    if (!role) throw AppError.invalid('a history turn has no role', { [`history.${i}.role`]: 'must be user or assistant' });
    if (t.content.length > MAX_TURN_CHARS) throw AppError.invalid('a history turn is too long', { [`history.${i}.content`]: `must be at most ${MAX_TURN_CHARS} characters` });
    if (t.content.includes('\u0000')) throw AppError.invalid('a history turn is not valid', { [`history.${i}.content`]: NO_NUL });
    return { role, content: t.content };
  });
}

/** validateFirstMessage checks a first message as SendMessage checks a message; its fields are named first_message.*. */
function validateFirstMessage(ownerId: string, first: sessionV1.FirstMessage): void {
  try {
    validateSend({ ownerId, content: first.content, priority: first.priority, idempotencyKey: '' });
  } catch (err) {
    const fields = isAppError(err) ? (err.details as { fields?: Record<string, string> }).fields : undefined;
    if (!fields) throw err;
    throw AppError.invalid('the first message is not valid', Object.fromEntries(Object.entries(fields).map(([k, v]) => [k === 'owner_id' ? k : `first_message.${k}`, v])));
  }
}

/** Most reply events one ListReplyEvents page returns. */
const MAX_REPLY_EVENTS = 1_000;

/** sessionHandlers translates gRPC calls to the repository; personas are checked over gRPC. */
export function sessionHandlers(repo: SessionRepository, personas: PersonaClient, replyEvents?: ReplyEventStore, known = new KnownPersonas(0)) {
  return {
    async createSession(req: sessionV1.CreateSessionRequest): Promise<sessionV1.CreateSessionResponse> {
      // Everything that can be checked here first (no call for bad input), then the persona.
      validateCreate({ ownerId: req.ownerId, personaId: req.personaId, title: req.title });
      const history = validateHistory(req.history);
      const first = req.firstMessage;
      if (first) validateFirstMessage(req.ownerId, first);
      // NOT_FOUND from the persona service covers unknown and foreign personas alike; nothing is
      // written then. A persona known to be the owner's is not asked again (KnownPersonas).
      const personaId = await known.lookup(req.ownerId, req.personaId, async () => (await personas.getPersona({ ownerId: req.ownerId, id: req.personaId })).persona?.id || req.personaId);
      // Session, history, first message, its pending reply and its event: one statement (docs/decisions/0021).
      const opened = await repo.openSession({
        ownerId: req.ownerId,
        // The persona service's spelling of the id (the event carries it as stored).
        personaId,
        title: req.title.trim(),
        ephemeral: req.ephemeral,
        history,
        first: first ? { content: first.content, priority: first.priority } : undefined,
      });
      return { session: sessionToProto(opened.session), messageId: opened.messageId ?? '', replyId: opened.replyId ?? '' };
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
      if (!req.idempotencyKey) {
        // One round trip: the ownership check is part of the statement that writes (docs/decisions/0021).
        const sent = isUuid(req.sessionId) ? await repo.sendOwned(req.ownerId, req.sessionId, req.content, req.priority) : undefined;
        if (!sent) throw AppError.notFound('session', req.sessionId);
        return sent;
      }
      // With a key: the session read, then the transaction that serialises senders of the key.
      const s = await assertOwned(repo, req.ownerId, req.sessionId, isUuid);
      const { messageId, replyId } = await repo.sendMessage(s, req.content, req.priority, req.idempotencyKey);
      return { messageId, replyId };
    },
    async listSessions(req: sessionV1.ListSessionsRequest): Promise<sessionV1.ListSessionsResponse> {
      requireOwner(req.ownerId);
      if (req.limit > 100) throw AppError.invalid('limit is too large', { limit: 'must be at most 100' });
      const after = req.pageToken ? decodeCursor(req.pageToken) : undefined;
      // No session can belong to a persona id of another shape.
      if (req.personaId && !isUuid(req.personaId)) return { sessions: [], nextPageToken: '' };
      const page = await repo.listSessions(req.ownerId, req.personaId || undefined, req.limit || 20, after);
      return { sessions: page.sessions.map(sessionToProto), nextPageToken: page.next ? encodeCursor(page.next) : '' };
    },
    async deleteSession(req: sessionV1.DeleteSessionRequest): Promise<sessionV1.DeleteSessionResponse> {
      requireOwner(req.ownerId);
      if (!isUuid(req.id) || !(await repo.deleteSession(req.ownerId, req.id))) throw AppError.notFound('session', req.id);
      return {};
    },
    async getConversationWindow(req: sessionV1.GetConversationWindowRequest): Promise<sessionV1.GetConversationWindowResponse> {
      requireOwner(req.ownerId);
      if (!isUuid(req.sessionId)) throw AppError.notFound('session', req.sessionId);
      if (req.maxMessages > MAX_WINDOW_MESSAGES) {
        // A client error, checked before the window is read; an unknown or foreign session still
        // answers NOT_FOUND first, as it always did (one ownership read on this error path only).
        await assertOwned(repo, req.ownerId, req.sessionId, isUuid);
        throw AppError.invalid('max_messages is too large', { max_messages: `must be at most ${MAX_WINDOW_MESSAGES}` });
      }
      // Ownership, the before position, the summary, the window, the older count and the reply's
      // status in one statement: one round trip on the way to the model.
      const w = await repo.ownedConversationWindow({
        ownerId: req.ownerId,
        sessionId: req.sessionId,
        max: req.maxMessages || 50,
        beforeMessageId: req.beforeMessageId || undefined,
        replyId: req.replyId || undefined,
      });
      if (!w) throw AppError.notFound('session', req.sessionId);
      if (!w.beforeFound) throw AppError.invalid('before_message_id is not a message of this session', { before_message_id: 'must be a message id of this session' });
      return {
        session: sessionToProto(w.session),
        summary: summaryToProto(w.summary),
        messages: w.messages.map(messageToProto),
        olderUncovered: w.olderUncovered,
        replyStatus: w.replyStatus ? STATUS[w.replyStatus] : sessionV1.MessageStatus.MESSAGE_STATUS_UNSPECIFIED,
      };
    },
    async listMessagesAfter(req: sessionV1.ListMessagesAfterRequest): Promise<sessionV1.ListMessagesAfterResponse> {
      requireOwner(req.ownerId);
      if (!isUuid(req.sessionId)) throw AppError.notFound('session', req.sessionId);
      if (req.limit > MAX_WINDOW_MESSAGES) {
        // NOT_FOUND first for an unknown or foreign session, as always (an ownership read on this error path only).
        await assertOwned(repo, req.ownerId, req.sessionId, isUuid);
        throw AppError.invalid('limit is too large', { limit: `must be at most ${MAX_WINDOW_MESSAGES}` });
      }
      // The ownership check and the page in one statement.
      const page = await repo.listOwnedMessagesAfter(req.ownerId, req.sessionId, Number(req.afterPosition), Number(req.beforePosition), req.limit || 100);
      if (!page) throw AppError.notFound('session', req.sessionId);
      return { messages: page.messages.map(messageToProto), hasMore: page.hasMore };
    },
    async updateSummary(req: sessionV1.UpdateSummaryRequest): Promise<sessionV1.UpdateSummaryResponse> {
      requireOwner(req.ownerId);
      if (!isUuid(req.sessionId)) throw AppError.notFound('session', req.sessionId);
      const fields: Record<string, string> = {};
      if (!req.text.trim()) fields.text = 'must not be empty';
      else if (req.text.length > 200_000) fields.text = 'must be at most 200000 characters';
      if (Number(req.coveredUntil) <= 0) fields.covered_until = 'must be a message position';
      if (Object.keys(fields).length) {
        // NOT_FOUND first for an unknown or foreign session, as always (an ownership read on this error path only).
        await assertOwned(repo, req.ownerId, req.sessionId, isUuid);
        throw AppError.invalid('the summary is not valid', fields);
      }
      // The ownership check and the write in one statement.
      const stored = await repo.updateOwnedSummary(req.ownerId, req.sessionId, req.text, Number(req.coveredUntil), Number(req.expectedVersion));
      if (!stored.owned) throw AppError.notFound('session', req.sessionId);
      if (!stored.summary) {
        throw new AppError(Code.Aborted, 'the summary changed meanwhile; read it again', { reason: 'version_conflict', details: { expected_version: Number(req.expectedVersion) } });
      }
      return { summary: summaryToProto(stored.summary) };
    },
    async listReplyEvents(req: sessionV1.ListReplyEventsRequest): Promise<sessionV1.ListReplyEventsResponse> {
      requireOwner(req.ownerId);
      if (!replyEvents) throw new AppError(Code.Unimplemented, 'this session service keeps no reply events', { reason: 'unimplemented' });
      const s = await assertOwned(repo, req.ownerId, req.sessionId, isUuid);
      if (req.limit > MAX_REPLY_EVENTS) throw AppError.invalid('limit is too large', { limit: `must be at most ${MAX_REPLY_EVENTS}` });
      const page = await replyEvents.list(s.id, Number(req.afterSeq), req.limit || 200);
      return { events: page.events.map((e) => eventsV1.ReplyEvent.decode(e.payload)), hasMore: page.hasMore, oldestSeq: page.oldestSeq };
    },
  };
}
