import type { FastifyInstance } from 'fastify';
import type { GatewayDeps } from '../deps.js';
import { messageToJson, sessionToJson } from '../json.js';
import { CancelResult, id, MessageAccepted, MessagePage, noContent, params, queryInt, Session, SessionList, SessionWithMessages, WsToken } from '../schemas.js';
import { intParam, ownerOf } from './util.js';

/** How many recent messages GET /api/sessions/:id includes. */
const RECENT_MESSAGES = 50;

/** sessionRoutes: sessions, their history, sending messages and WebSocket tokens. */
export function sessionRoutes(app: FastifyInstance, deps: GatewayDeps): void {
  app.post(
    '/sessions',
    {
      schema: {
        body: {
          type: 'object',
          required: ['persona_id'],
          additionalProperties: false,
          properties: { persona_id: id, title: { type: 'string', maxLength: 500 } },
        },
        tags: ['sessions'],
        summary: 'Create a session with a persona',
        response: { 201: Session },
      },
    },
    async (req, reply) => {
      const body = req.body as { persona_id: string; title?: string };
      // A foreign or unknown persona answers 404 here, whatever the session service checks.
      await deps.persona.getPersona({ ownerId: ownerOf(req), id: body.persona_id });
      const res = await deps.session.createSession({ ownerId: ownerOf(req), personaId: body.persona_id, title: body.title ?? '' });
      return reply.code(201).send(sessionToJson(res.session));
    },
  );

  app.get(
    '/sessions',
    {
      schema: {
        querystring: {
          type: 'object',
          additionalProperties: false,
          properties: { persona_id: id, page_token: { type: 'string', minLength: 1, maxLength: 500 }, limit: queryInt(100) },
        },
        tags: ['sessions'],
        summary: 'List the owner’s sessions, newest first (optionally of one persona)',
        response: { 200: SessionList },
      },
    },
    async (req) => {
      const q = req.query as { persona_id?: string; page_token?: string; limit?: string };
      const limit = intParam('limit', q.limit, 1, 100) ?? 20;
      // A foreign or unknown persona answers 404, like every other persona route.
      if (q.persona_id) await deps.persona.getPersona({ ownerId: ownerOf(req), id: q.persona_id });
      const res = await deps.session.listSessions({ ownerId: ownerOf(req), personaId: q.persona_id ?? '', pageToken: q.page_token ?? '', limit });
      return { sessions: res.sessions.map(sessionToJson), next_page_token: res.nextPageToken || null };
    },
  );

  app.delete('/sessions/:id', { schema: { tags: ['sessions'], summary: 'Delete a session and its messages', params: params('id'), response: { 204: noContent } } }, async (req, reply) => {
    const { id: sessionId } = req.params as { id: string };
    await deps.session.deleteSession({ ownerId: ownerOf(req), id: sessionId });
    return reply.code(204).send();
  });

  app.get('/sessions/:id', { schema: { tags: ['sessions'], summary: 'A session with its most recent messages', params: params('id'), response: { 200: SessionWithMessages } } }, async (req) => {
    const { id: sessionId } = req.params as { id: string };
    const res = await deps.session.getSession({ ownerId: ownerOf(req), id: sessionId, recentLimit: RECENT_MESSAGES });
    return { ...sessionToJson(res.session), messages: res.recentMessages.map(messageToJson) };
  });

  app.get(
    '/sessions/:id/messages',
    {
      schema: {
        params: params('id'),
        querystring: { type: 'object', additionalProperties: false, properties: { before: id, limit: queryInt(200) } },
        tags: ['sessions'],
        summary: 'Message history, oldest first within the page',
        response: { 200: MessagePage },
      },
    },
    async (req) => {
      const { id: sessionId } = req.params as { id: string };
      const q = req.query as { before?: string; limit?: string };
      const res = await deps.session.listMessages({
        ownerId: ownerOf(req),
        sessionId,
        before: q.before ?? '',
        limit: intParam('limit', q.limit, 1, 200) ?? 50,
      });
      return { messages: res.messages.map(messageToJson), has_more: res.hasMore };
    },
  );

  app.post(
    '/sessions/:id/messages',
    {
      schema: {
        params: params('id'),
        headers: { type: 'object', properties: { 'idempotency-key': { type: 'string', minLength: 1, maxLength: 200 } } },
        body: {
          type: 'object',
          required: ['content'],
          additionalProperties: false,
          properties: {
            content: { type: 'string', minLength: 1, maxLength: 32_000 },
            priority: { type: 'integer', minimum: -10, maximum: 10 },
          },
        },
        tags: ['sessions'],
        summary: 'Send a message (durable when this answers; a repeated Idempotency-Key returns the same ids)',
        response: { 202: MessageAccepted },
      },
    },
    async (req, reply) => {
      const { id: sessionId } = req.params as { id: string };
      const body = req.body as { content: string; priority?: number };
      const key = req.headers['idempotency-key'];
      deps.limits?.session(ownerOf(req), sessionId);
      const res = await deps.session.sendMessage({
        ownerId: ownerOf(req),
        sessionId,
        content: body.content,
        priority: body.priority ?? 0,
        idempotencyKey: typeof key === 'string' ? key : '',
      });
      return reply.code(202).send({ message_id: res.messageId, reply_id: res.replyId });
    },
  );

  app.post(
    '/sessions/:id/messages/:reply_id/cancel',
    { schema: { tags: ['sessions'], summary: 'Stop a generation in progress', params: params('id', 'reply_id'), response: { 202: CancelResult } } },
    async (req, reply) => {
    const { id: sessionId, reply_id } = req.params as { id: string; reply_id: string };
    await deps.session.getSession({ ownerId: ownerOf(req), id: sessionId, recentLimit: 1 });
    const res = await deps.scheduler.cancelReply({ ownerId: ownerOf(req), sessionId, replyId: reply_id });
    return reply.code(202).send({ cancelled: res.cancelled });
  });

  app.post(
    '/sessions/:id/ws_token',
    { schema: { tags: ['sessions'], summary: 'A single-use WebSocket token for the session (≤ 60 s to connect)', params: params('id'), response: { 200: WsToken } } },
    async (req) => {
    const { id: sessionId } = req.params as { id: string };
    // Only the session's owner gets a token (a foreign session answers 404).
    await deps.session.getSession({ ownerId: ownerOf(req), id: sessionId, recentLimit: 1 });
    const { token, expiresAt } = deps.tokens.issue(ownerOf(req), sessionId);
    return { ws_token: token, expires_at: expiresAt.toISOString() };
  });
}
