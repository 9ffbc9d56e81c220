import { PassThrough } from 'node:stream';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { AppError, Code, httpStatus, isAppError } from '@chat/errors';
import type { personaV1 } from '@chat/contracts';
import { sessionV1 } from '@chat/contracts';
import type { GatewayDeps } from '../deps.js';
import { toHttpAppError } from '../errors.js';
import type { ReplyFrame } from '../ws/frames.js';
import type { SocketHub } from '../ws/hub.js';
import { ownerOf } from '../routes/util.js';
import { installApiGuards } from '../server.js';
import { modelNotFound, openaiErrorBody } from './errors.js';

/** The longest a non-streaming completion waits for its reply before answering 504. */
export const COMPLETION_TIMEOUT_MS = 10 * 60_000;

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

const textPart = {
  type: 'object',
  required: ['type', 'text'],
  additionalProperties: false,
  properties: { type: { type: 'string', enum: ['text'] }, text: { type: 'string', maxLength: 32_000 } },
} as const;

/** The request body of POST /v1/chat/completions: OpenAI's fields this endpoint understands. */
const completionBody = {
  type: 'object',
  required: ['model', 'messages'],
  additionalProperties: false,
  properties: {
    model: { type: 'string', minLength: 1, maxLength: 200, description: 'a persona id, or the unique name of one of your personas' },
    messages: {
      type: 'array',
      minItems: 1,
      maxItems: 500,
      items: {
        type: 'object',
        required: ['role', 'content'],
        additionalProperties: false,
        properties: {
          role: { type: 'string', enum: ['system', 'developer', 'user', 'assistant'] },
          content: { anyOf: [{ type: 'string', maxLength: 32_000 }, { type: 'array', maxItems: 100, items: textPart }] },
          name: { type: 'string', maxLength: 100 },
        },
      },
    },
    stream: { type: 'boolean' },
    stream_options: { type: ['object', 'null'], additionalProperties: false, properties: { include_usage: { type: 'boolean' } } },
    n: { type: 'integer', minimum: 1, maximum: 1, description: 'only 1 is supported' },
    user: { type: 'string', maxLength: 256 },
    // Sampling settings come from the persona (PATCH /api/personas/{id} settings); these are accepted
    // for client compatibility and do not change the reply (docs/decisions/0017).
    temperature: { type: ['number', 'null'], minimum: 0, maximum: 2 },
    top_p: { type: ['number', 'null'], minimum: 0, maximum: 1 },
    max_tokens: { type: ['integer', 'null'], minimum: 1 },
    max_completion_tokens: { type: ['integer', 'null'], minimum: 1 },
    presence_penalty: { type: ['number', 'null'], minimum: -2, maximum: 2 },
    frequency_penalty: { type: ['number', 'null'], minimum: -2, maximum: 2 },
    seed: { type: ['integer', 'null'] },
    stop: { anyOf: [{ type: 'string', maxLength: 200 }, { type: 'array', maxItems: 4, items: { type: 'string', maxLength: 200 } }, { type: 'null' }] },
  },
} as const;

interface CompletionBody {
  model: string;
  messages: Array<{ role: 'system' | 'developer' | 'user' | 'assistant'; content: string | Array<{ type: 'text'; text: string }>; name?: string }>;
  stream?: boolean;
}

const citation = {
  type: 'object',
  properties: { source_id: { type: 'string' }, title: { type: 'string' }, url: { type: 'string' }, chunk_id: { type: 'string' }, score: { type: 'number' } },
} as const;

const errorSchema = {
  type: 'object',
  properties: {
    error: {
      type: 'object',
      properties: { message: { type: 'string' }, type: { type: 'string' }, param: { type: ['string', 'null'] }, code: { type: 'string' }, details: { type: 'object', additionalProperties: true } },
    },
  },
} as const;

const modelSchema = {
  type: 'object',
  properties: { id: { type: 'string' }, object: { type: 'string', enum: ['model'] }, created: { type: 'integer' }, owned_by: { type: 'string' }, name: { type: 'string' } },
} as const;

const completionSchema = {
  type: 'object',
  description: 'chat.completion (non-streaming); with "stream": true the answer is text/event-stream of chat.completion.chunk objects ending with data: [DONE]',
  properties: {
    id: { type: 'string' },
    object: { type: 'string' },
    created: { type: 'integer' },
    model: { type: 'string' },
    choices: {
      type: 'array',
      items: {
        type: 'object',
        properties: {
          index: { type: 'integer' },
          message: { type: 'object', properties: { role: { type: 'string' }, content: { type: 'string' }, refusal: { type: 'null' } } },
          finish_reason: { type: 'string' },
          logprobs: { type: 'null' },
        },
      },
    },
    citations: { type: 'array', items: citation },
    session_id: { type: 'string' },
  },
} as const;

/** textOf flattens OpenAI message content (a string or text parts). */
function textOf(content: CompletionBody['messages'][number]['content']): string {
  return typeof content === 'string' ? content : content.map((p) => p.text).join('');
}

/** listAllPersonas reads every persona of an owner (bounded). */
async function listAllPersonas(deps: GatewayDeps, ownerId: string): Promise<personaV1.Persona[]> {
  const out: personaV1.Persona[] = [];
  let pageToken = '';
  for (let i = 0; i < 50; i++) {
    const page = await deps.persona.listPersonas({ ownerId, pageSize: 200, pageToken });
    out.push(...page.personas);
    pageToken = page.nextPageToken;
    if (!pageToken) break;
  }
  return out;
}

/**
 * resolveModel maps `model` to a persona id: a persona id as is (the session service checks that it
 * exists and is the caller's), else the name of exactly one of the caller's personas.
 */
async function resolveModel(deps: GatewayDeps, ownerId: string, model: string): Promise<string> {
  if (UUID.test(model)) return model;
  const personas = await listAllPersonas(deps, ownerId);
  const byId = personas.find((p) => p.id === model);
  if (byId) return byId.id;
  const matches = personas.filter((p) => p.name === model);
  if (matches.length === 0) throw modelNotFound(model);
  if (matches.length > 1) {
    throw new AppError(Code.InvalidArgument, `several of your personas are named '${model}': use the persona id as the model`, {
      reason: 'model_ambiguous',
      details: { fields: { model: 'names several personas; use an id' }, ids: matches.map((p) => p.id) },
    });
  }
  return matches[0]!.id;
}

/**
 * splitMessages turns OpenAI messages into the seed history and the new user message;
 * `historyAt[i]` is the index in `messages` of history turn i (empty messages are left out).
 */
function splitMessages(messages: CompletionBody['messages']): { history: Array<{ role: sessionV1.Role; content: string }>; content: string; historyAt: number[] } {
  const last = messages[messages.length - 1]!;
  const content = textOf(last.content);
  if (last.role !== 'user' || !content.trim()) {
    throw AppError.invalid('the last message must be a non-empty user message', { [`messages.${messages.length - 1}`]: 'must be a user message with content' });
  }
  const historyAt: number[] = [];
  const history = messages.slice(0, -1).flatMap((m, i) => {
    const text = textOf(m.content);
    if (!text.trim()) return [];
    historyAt.push(i);
    // The persona's own system prompt stays the system prompt; a client's system/developer message
    // is kept in the conversation as a labelled user turn (docs/decisions/0017).
    if (m.role === 'system' || m.role === 'developer') return [{ role: sessionV1.Role.ROLE_USER, content: `[${m.role} message from the client] ${text}` }];
    return [{ role: m.role === 'user' ? sessionV1.Role.ROLE_USER : sessionV1.Role.ROLE_ASSISTANT, content: text }];
  });
  return { history, content, historyAt };
}

/**
 * inRequestTerms names the fields of the session service's refusal as the client sent them: its
 * `history.<i>.*` and `first_message.*` are `messages.<n>.*` of the completion request.
 */
function inRequestTerms(err: AppError, last: number, historyAt: number[]): AppError {
  const fields = (err.details as { fields?: Record<string, string> } | undefined)?.fields;
  if (!fields) return err;
  const renamed = Object.entries(fields).map(([k, v]): [string, string] => {
    const h = /^history\.(\d+)\.(.+)$/.exec(k);
    if (h && historyAt[Number(h[1])] !== undefined) return [`messages.${historyAt[Number(h[1])]}.${h[2]}`, v];
    if (k.startsWith('first_message.')) return [`messages.${last}.${k.slice('first_message.'.length)}`, v];
    return [k, v];
  });
  return AppError.invalid('a message is not valid', Object.fromEntries(renamed));
}

/** A reply's frames as they arrive: the delta texts and the final frame. */
class ReplyWaiter {
  private queue: ReplyFrame[] = [];
  private wake: (() => void) | undefined;
  private problem: AppError | undefined;
  replyId = '';
  push(frame: ReplyFrame): void {
    this.queue.push(frame);
    this.wake?.();
  }
  fail(err: AppError): void {
    this.problem ??= err;
    this.wake?.();
  }
  /** next returns the next frame of the reply (frames of other replies are skipped), or throws. */
  async next(deadline: number): Promise<ReplyFrame> {
    for (;;) {
      const i = this.queue.findIndex((f) => f.reply_id === this.replyId);
      if (i >= 0) return this.queue.splice(0, i + 1).pop()!;
      if (this.replyId) this.queue = [];
      if (this.problem) throw this.problem;
      const left = deadline - Date.now();
      if (left <= 0) throw new AppError(Code.DeadlineExceeded, 'the reply did not finish in time', { reason: 'timeout' });
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, Math.min(left, 2 ** 31 - 1));
        this.wake = () => {
          clearTimeout(t);
          this.wake = undefined;
          resolve();
        };
      });
    }
  }
}

/**
 * subscribeReplies subscribes a completion's waiter to its new session's reply frames, in order
 * from seq 1, without gap or duplicate. Call it in the tick the session id became known: frames
 * published later reach it live. Frames published before (the reply started, or even finished,
 * before the create call's answer arrived) are in the hub's ring buffer: then the subscription
 * starts as a resume from seq 0, served from the buffer (or, if the buffer no longer reaches back to
 * seq 1, from the session service's durable store). Otherwise it starts at cursor 0 and the store is
 * not asked at all — a later gap (events this gateway missed) is still filled from it
 * (docs/decisions/0016, 0021).
 */
function subscribeReplies(hub: SocketHub, deps: GatewayDeps, sessionId: string, ownerId: string, waiter: ReplyWaiter): { close(): void } {
  // A seq gap the store could not fill (resume_gap) is not fatal: the reply goes on.
  const subscriber = { session: sessionId, owner: ownerId, write: (f: ReplyFrame) => waiter.push(f), problem: (e: AppError) => (e.reason === 'resume_gap' ? undefined : waiter.fail(e)) };
  const early = hub.replay(sessionId, 0);
  const caughtUp = early.frames.length > 0 || !early.complete;
  return hub.subscribe(subscriber, caughtUp ? { afterSeq: 0, source: deps.session } : { cursor: 0, source: deps.session });
}

/** replyError turns a reply.failed frame into the error a client sees. */
function replyError(frame: Extract<ReplyFrame, { type: 'reply.failed' }>): AppError {
  const byCode: Record<string, Code> = { cancelled: Code.Cancelled, unavailable: Code.Unavailable, deadline_exceeded: Code.DeadlineExceeded, resource_exhausted: Code.ResourceExhausted, timeout: Code.DeadlineExceeded };
  return new AppError(byCode[frame.error.code] ?? Code.Unavailable, frame.error.message, { reason: frame.error.code || 'reply_failed', details: { reply_id: frame.reply_id } });
}

const sse = (obj: unknown) => `data: ${JSON.stringify(obj)}\n\n`;

/**
 * openaiRoutes serves the OpenAI-compatible API under /v1 (register with prefix '/v1'): POST
 * /chat/completions (stream and non-stream; `model` names a persona) and GET /models (the caller's
 * personas). Each completion opens a new session of that persona seeded with the earlier messages
 * and sends the last user message through the same pipeline as POST /api/sessions/{id}/messages
 * (retrieval, citations, scheduling); the reply streams from the same reply events as the
 * WebSocket. Errors use OpenAI's shape (see openaiErrorBody). docs/decisions/0017.
 */
export function openaiRoutes(app: FastifyInstance, deps: GatewayDeps, hub: SocketHub): void {
  // The same guards as /api: API key (401), per-key rate limit (429), body size (413).
  installApiGuards(app, deps);
  app.setErrorHandler((err, req, reply) => {
    const appErr = toHttpAppError(err, deps.maxBodyBytes ?? 0);
    const status = httpStatus(appErr);
    if (status >= 500) deps.logger.error('request failed', { method: req.method, route: req.routeOptions.url ?? 'unmatched', request_id: req.id, status, err: appErr.cause ?? appErr });
    if (status === 401) reply.header('www-authenticate', 'Bearer');
    const retryAfter = (appErr.details as { retry_after_seconds?: unknown } | undefined)?.retry_after_seconds;
    if (status === 429 && typeof retryAfter === 'number') reply.header('retry-after', String(retryAfter));
    return reply.code(status).send(openaiErrorBody(appErr));
  });

  const modelOut = (p: personaV1.Persona) => ({ id: p.id, object: 'model' as const, created: Math.floor((p.createdAt?.getTime() ?? 0) / 1000), owned_by: 'persona', name: p.name });

  app.get('/models', { schema: { response: { 200: { type: 'object', properties: { object: { type: 'string' }, data: { type: 'array', items: modelSchema } } }, '4xx': errorSchema } } }, async (req) => {
    const personas = await listAllPersonas(deps, ownerOf(req));
    return { object: 'list', data: personas.map(modelOut) };
  });

  app.get(
    '/models/:model',
    { schema: { params: { type: 'object', required: ['model'], additionalProperties: false, properties: { model: { type: 'string', minLength: 1, maxLength: 200 } } }, response: { 200: modelSchema, '4xx': errorSchema } } },
    async (req) => {
      const { model } = req.params as { model: string };
      const id = await resolveModel(deps, ownerOf(req), model);
      try {
        const res = await deps.persona.getPersona({ ownerId: ownerOf(req), id });
        return modelOut(res.persona!);
      } catch (err) {
        throw isAppError(err) && err.code === Code.NotFound ? modelNotFound(model) : err;
      }
    },
  );

  app.post('/chat/completions', { schema: { body: completionBody, response: { 200: completionSchema, '4xx': errorSchema } } }, async (req, reply) => {
    const body = req.body as CompletionBody;
    const ownerId = ownerOf(req);
    const { history, content, historyAt } = splitMessages(body.messages);
    const personaId = await resolveModel(deps, ownerId, body.model);
    // A streamed completion holds one of the owner's stream slots (like a WebSocket) until it ends;
    // taken before anything is created, so a refused request (429 too_many_streams) leaves nothing.
    const release = body.stream ? (deps.limits?.streams.acquire(ownerId) ?? (() => undefined)) : () => undefined;
    let streaming = false;
    try {
      const waiter = new ReplyWaiter();
      let sessionId: string;
      let sub: { close(): void };
      let sent: { messageId: string; replyId: string };
      try {
        // One call: the ephemeral session (deleted after OPENAI_SESSION_RETENTION_HOURS, docs/decisions/0019),
        // its history and the last user message with its pending reply, stored atomically (decision 0021).
        // No idempotency key: the session is new and nothing retries this call.
        const res = await deps.session.createSession({
          ownerId,
          personaId,
          title: `OpenAI-compatible completion (${body.model})`.slice(0, 500),
          history,
          ephemeral: true,
          firstMessage: { content, priority: 0 },
        });
        sessionId = res.session!.id;
        // Subscribed in the same tick the session id is known, so nothing published from now on passes
        // by; what was published before (a reply faster than this answer) is caught up (subscribeReplies).
        sub = subscribeReplies(hub, deps, sessionId, ownerId, waiter);
        sent = { messageId: res.messageId, replyId: res.replyId };
      } catch (err) {
        if (isAppError(err) && err.code === Code.NotFound) throw modelNotFound(body.model);
        throw isAppError(err) && err.code === Code.InvalidArgument ? inRequestTerms(err, body.messages.length - 1, historyAt) : err;
      }
      if (!sent.replyId) {
        // A session service that does not know first_message yet (a rolling update) only created the
        // session: send the message as a second call; the subscription is already in place.
        try {
          sent = await deps.session.sendMessage({ ownerId, sessionId, content, priority: 0, idempotencyKey: '' });
        } catch (err) {
          sub.close();
          throw err;
        }
      }
      waiter.replyId = sent.replyId;
      const id = `chatcmpl-${sent.replyId}`;
      const created = Math.floor(Date.now() / 1000);
      const model = body.model;
      let finished = false;
      const cancel = () => {
        if (finished) return;
        finished = true;
        sub.close();
        // Wake a stream still waiting, so it ends (and frees its stream slot) now, not at its deadline.
        waiter.fail(new AppError(Code.Cancelled, 'the client went away', { reason: 'cancelled' }));
        // The client went away: stop generating (best effort).
        deps.scheduler.cancelReply({ ownerId, sessionId, replyId: sent.replyId }).catch(() => undefined);
      };

      if (!body.stream) {
        // The response's close before it finished means the client went away.
        reply.raw.once('close', () => {
          if (!reply.raw.writableFinished) cancel();
        });
        try {
          const deadline = Date.now() + COMPLETION_TIMEOUT_MS;
          for (;;) {
            const f = await waiter.next(deadline);
            if (f.type === 'reply.failed') throw replyError(f);
            if (f.type === 'reply.completed') {
              finished = true;
              return {
                id,
                object: 'chat.completion',
                created,
                model,
                choices: [{ index: 0, message: { role: 'assistant', content: f.content, refusal: null }, finish_reason: 'stop', logprobs: null }],
                citations: f.citations,
                session_id: sessionId,
              };
            }
          }
        } finally {
          finished = true;
          sub.close();
        }
      }

      streaming = true;
      return streamCompletion(req, reply, {
        id,
        created,
        model,
        sessionId,
        waiter,
        cancel,
        done: () => (finished = true),
        close: () => {
          sub.close();
          release();
        },
      });
    } finally {
      // Every way out before the stream started gives the slot back; the stream gives it back when it ends.
      if (!streaming) release();
    }
  });
}

/** streamCompletion answers with text/event-stream chunks exactly like OpenAI's chat.completion.chunk. */
function streamCompletion(
  req: FastifyRequest,
  reply: FastifyReply,
  o: { id: string; created: number; model: string; sessionId: string; waiter: ReplyWaiter; cancel: () => void; done: () => void; close: () => void },
): FastifyReply {
  const out = new PassThrough();
  const chunk = (delta: Record<string, unknown>, finish: string | null, extra: Record<string, unknown> = {}) =>
    sse({ id: o.id, object: 'chat.completion.chunk', created: o.created, model: o.model, system_fingerprint: null, choices: [{ index: 0, delta, logprobs: null, finish_reason: finish }], ...extra });
  req.raw.socket?.setNoDelay(true);
  reply.raw.once('close', () => {
    if (!reply.raw.writableFinished) o.cancel();
  });
  out.write(chunk({ role: 'assistant', content: '' }, null));
  void (async () => {
    try {
      for (;;) {
        const f = await o.waiter.next(Date.now() + COMPLETION_TIMEOUT_MS);
        if (f.type === 'reply.delta') {
          if (f.text) out.write(chunk({ content: f.text }, null));
        } else if (f.type === 'reply.completed') {
          o.done();
          out.write(chunk({}, 'stop', { citations: f.citations, session_id: o.sessionId }));
          break;
        } else {
          o.done();
          out.write(sse(openaiErrorBody(replyError(f))));
          break;
        }
      }
    } catch (err) {
      o.done();
      out.write(sse(openaiErrorBody(isAppError(err) ? err : AppError.internal(err))));
    } finally {
      o.close();
      out.end('data: [DONE]\n\n');
    }
  })();
  return reply.header('content-type', 'text/event-stream; charset=utf-8').header('cache-control', 'no-cache').header('x-accel-buffering', 'no').send(out);
}
