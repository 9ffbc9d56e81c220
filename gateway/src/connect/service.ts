import { timestampFromDate } from '@bufbuild/protobuf/wkt';
import { Code as ConnectCode, ConnectError, type HandlerContext, type ServiceImpl } from '@connectrpc/connect';
import { AppError, Code, toAppError } from '@chat/errors';
import { apiV1 } from '@chat/contracts/es';
import { sessionV1, type personaV1, type ragV1 } from '@chat/contracts';
import type { GatewayDeps } from '../deps.js';
import type { ReplyFrame } from '../ws/frames.js';
import type { SocketHub } from '../ws/hub.js';

/** Frames a StreamReplies call may have waiting for a slow client before it is ended. */
export const MAX_QUEUED_FRAMES = 1_000;

/** toConnectError maps an AppError (gRPC-numbered, like Connect's codes) to a ConnectError; internals stay hidden. */
export function toConnectError(err: unknown, logger: GatewayDeps['logger'], method: string): ConnectError {
  if (err instanceof ConnectError) return err;
  const appErr = toAppError(err);
  if (appErr.code === Code.Internal || appErr.code === Code.Unknown || appErr.code === Code.DataLoss) {
    logger.error('connect call failed', { method, err: appErr.cause ?? appErr });
    return new ConnectError('internal error', ConnectCode.Internal);
  }
  const meta = new Headers({ 'error-reason': appErr.reason });
  // Rate limits and the stream cap say when to try again, as Retry-After does on REST.
  const retryAfter = (appErr.details as { retry_after_seconds?: unknown } | undefined)?.retry_after_seconds;
  if (typeof retryAfter === 'number') meta.set('retry-after', String(retryAfter));
  return new ConnectError(appErr.message, appErr.code as number as ConnectCode, meta);
}

const ts = (d: Date | undefined) => (d ? timestampFromDate(d) : undefined);

function personaOut(p: personaV1.Persona | undefined) {
  if (!p) throw AppError.internal(new Error('persona service answered without a persona'));
  return { id: p.id, name: p.name, systemPrompt: p.systemPrompt, background: p.background, createdAt: ts(p.createdAt), updatedAt: ts(p.updatedAt) };
}

function sessionOut(s: sessionV1.Session | undefined) {
  if (!s) throw AppError.internal(new Error('session service answered without a session'));
  return { id: s.id, personaId: s.personaId, title: s.title, createdAt: ts(s.createdAt), lastSeq: BigInt(s.lastSeq) };
}

const citationOut = (c: ragV1.Citation) => ({ sourceId: c.sourceId, title: c.title, url: c.url, chunkId: c.chunkId, score: c.score });

const ROLE: Record<number, string> = { [sessionV1.Role.ROLE_USER]: 'user', [sessionV1.Role.ROLE_ASSISTANT]: 'assistant' };
const STATUS: Record<number, string> = {
  [sessionV1.MessageStatus.MESSAGE_STATUS_PENDING]: 'pending',
  [sessionV1.MessageStatus.MESSAGE_STATUS_STREAMING]: 'streaming',
  [sessionV1.MessageStatus.MESSAGE_STATUS_COMPLETED]: 'completed',
  [sessionV1.MessageStatus.MESSAGE_STATUS_FAILED]: 'failed',
  [sessionV1.MessageStatus.MESSAGE_STATUS_CANCELLED]: 'cancelled',
};

function messageOut(m: sessionV1.Message) {
  return {
    id: m.id,
    role: ROLE[m.role] ?? 'user',
    content: m.content,
    status: STATUS[m.status] ?? 'pending',
    replyId: m.replyId,
    replyTo: m.replyTo,
    citations: m.citations.map(citationOut),
    model: m.model,
    error: m.error,
    createdAt: ts(m.createdAt),
  };
}

/** frameOut renders a reply frame as a StreamRepliesResponse. */
function frameOut(f: ReplyFrame) {
  const base = { replyId: f.reply_id, seq: BigInt(f.seq) };
  switch (f.type) {
    case 'reply.delta':
      return { ...base, kind: { case: 'delta' as const, value: { text: f.text } } };
    case 'reply.completed':
      return {
        ...base,
        kind: {
          case: 'completed' as const,
          value: { content: f.content, model: f.model ?? '', citations: f.citations.map((c) => ({ sourceId: c.source_id, title: c.title, url: c.url ?? '', chunkId: c.chunk_id, score: c.score })) },
        },
      };
    case 'reply.failed':
      return { ...base, kind: { case: 'failed' as const, value: { code: f.error.code, message: f.error.message } } };
  }
}

/** A bounded queue between the hub and one server stream. */
class FrameQueue {
  private frames: ReplyFrame[] = [];
  private wake: (() => void) | undefined;
  private error: unknown;
  push(f: ReplyFrame): void {
    if (this.error) return;
    if (this.frames.length >= MAX_QUEUED_FRAMES) {
      this.fail(new AppError(Code.ResourceExhausted, 'client too slow: the reply stream was ended; call StreamReplies again with resume and after_seq', { reason: 'slow_client' }));
      return;
    }
    this.frames.push(f);
    this.wake?.();
  }
  fail(err: unknown): void {
    this.error ??= err;
    this.wake?.();
  }
  async next(signal: AbortSignal): Promise<ReplyFrame | undefined> {
    for (;;) {
      if (this.error) throw this.error;
      const f = this.frames.shift();
      if (f) return f;
      if (signal.aborted) return undefined;
      await new Promise<void>((resolve) => {
        const done = () => {
          signal.removeEventListener('abort', done);
          this.wake = undefined;
          resolve();
        };
        this.wake = done;
        signal.addEventListener('abort', done);
      });
    }
  }
}

/** ChatConnect is the Connect implementation of chat.api.v1.ChatService, plus what shutdown needs. */
export interface ChatConnect {
  impl: ServiceImpl<typeof apiV1.ChatService>;
  /** Ends every open StreamReplies call (gateway shutdown). */
  closeStreams(): void;
}

/**
 * chatService implements chat.api.v1.ChatService over the same service clients, auth object and
 * reply hub as REST and WebSocket: every call authenticates `Authorization: Bearer <key>` and acts
 * for its owner (foreign ids answer NOT_FOUND).
 */
export function chatService(deps: GatewayDeps, hub: SocketHub): ChatConnect {
  const streams = new Set<FrameQueue>();
  // The same guards as REST: the API key (UNAUTHENTICATED), then its rate limit (RESOURCE_EXHAUSTED).
  const owner = async (ctx: HandlerContext) => {
    const principal = await deps.auth.authenticate(ctx.requestHeader.get('authorization') ?? undefined);
    deps.limits?.perKey.check(principal.keyId, 'API key');
    return principal.owner;
  };
  // Each unary method: authenticate, call, map errors.
  const unary =
    <Req, Res>(method: string, fn: (req: Req, ownerId: string) => Promise<Res>) =>
    async (req: Req, ctx: HandlerContext): Promise<Res> => {
      try {
        return await fn(req, await owner(ctx));
      } catch (err) {
        throw toConnectError(err, deps.logger, method);
      }
    };

  const impl: ServiceImpl<typeof apiV1.ChatService> = {
    listPersonas: unary('ListPersonas', async (req: apiV1.ListPersonasRequest, ownerId) => {
      if (req.pageSize > 200) throw AppError.invalid('page_size is too large', { page_size: 'must be at most 200' });
      const res = await deps.persona.listPersonas({ ownerId, pageSize: req.pageSize || 50, pageToken: req.pageToken });
      return { personas: res.personas.map(personaOut), nextPageToken: res.nextPageToken };
    }),
    getPersona: unary('GetPersona', async (req: apiV1.GetPersonaRequest, ownerId) => {
      const res = await deps.persona.getPersona({ ownerId, id: req.id });
      return { persona: personaOut(res.persona) };
    }),
    createPersona: unary('CreatePersona', async (req: apiV1.CreatePersonaRequest, ownerId) => {
      const res = await deps.persona.createPersona({ ownerId, name: req.name, systemPrompt: req.systemPrompt, background: req.background });
      return { persona: personaOut(res.persona) };
    }),
    createSession: unary('CreateSession', async (req: apiV1.CreateSessionRequest, ownerId) => {
      if (req.title.length > 500) throw AppError.invalid('title is too long', { title: 'must be at most 500 characters' });
      // A foreign or unknown persona answers NOT_FOUND, as on REST.
      await deps.persona.getPersona({ ownerId, id: req.personaId });
      const res = await deps.session.createSession({ ownerId, personaId: req.personaId, title: req.title });
      return { session: sessionOut(res.session) };
    }),
    getSession: unary('GetSession', async (req: apiV1.GetSessionRequest, ownerId) => {
      if (req.recentLimit > 200) throw AppError.invalid('recent_limit is too large', { recent_limit: 'must be at most 200' });
      const res = await deps.session.getSession({ ownerId, id: req.id, recentLimit: req.recentLimit || 50 });
      return { session: sessionOut(res.session), recentMessages: res.recentMessages.map(messageOut) };
    }),
    sendMessage: unary('SendMessage', async (req: apiV1.SendMessageRequest, ownerId) => {
      deps.limits?.session(ownerId, req.sessionId);
      const res = await deps.session.sendMessage({ ownerId, sessionId: req.sessionId, content: req.content, priority: req.priority, idempotencyKey: req.idempotencyKey });
      return { messageId: res.messageId, replyId: res.replyId };
    }),
    cancelReply: unary('CancelReply', async (req: apiV1.CancelReplyRequest, ownerId) => {
      const res = await deps.scheduler.cancelReply({ ownerId, sessionId: req.sessionId, replyId: req.replyId });
      return { cancelled: res.cancelled };
    }),
    async *streamReplies(req: apiV1.StreamRepliesRequest, ctx: HandlerContext) {
      let ownerId: string;
      try {
        ownerId = await owner(ctx);
        if (!req.sessionId) throw AppError.invalid('session_id is required', { session_id: 'is required' });
        // NOT_FOUND for a foreign or unknown session before anything is streamed.
        await deps.session.getSession({ ownerId, id: req.sessionId, recentLimit: 1 });
      } catch (err) {
        throw toConnectError(err, deps.logger, 'StreamReplies');
      }
      let release: () => void;
      try {
        // Streams count against the owner's cap like WebSockets do.
        release = deps.limits?.streams.acquire(ownerId) ?? (() => undefined);
      } catch (err) {
        throw toConnectError(err, deps.logger, 'StreamReplies');
      }
      const queue = new FrameQueue();
      streams.add(queue);
      const sub = hub.subscribe(
        { session: req.sessionId, owner: ownerId, write: (f) => queue.push(f), problem: (e) => (e.reason === 'resume_gap' ? undefined : queue.fail(e)) },
        req.resume ? { afterSeq: Number(req.afterSeq), source: deps.session } : { source: deps.session },
      );
      try {
        for (;;) {
          const f = await queue.next(ctx.signal);
          if (!f) return;
          yield frameOut(f);
        }
      } catch (err) {
        throw toConnectError(err, deps.logger, 'StreamReplies');
      } finally {
        sub.close();
        streams.delete(queue);
        release();
      }
    },
  };
  return {
    impl,
    closeStreams: () => {
      for (const q of streams) q.fail(AppError.unavailable('the gateway is shutting down; call StreamReplies again with resume and after_seq'));
    },
  };
}

