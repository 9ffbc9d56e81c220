import type { FastifyInstance } from 'fastify';
import type { GatewayDeps } from '../deps.js';
import { messageToJson, sessionToJson } from '../json.js';
import { id, params, queryInt } from '../schemas.js';
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

  app.delete('/sessions/:id', { schema: { params: params('id') } }, async (req, reply) => {
    const { id: sessionId } = req.params as { id: string };
    await deps.session.deleteSession({ ownerId: ownerOf(req), id: sessionId });
    return reply.code(204).send();
  });

  app.get('/sessions/:id', { schema: { params: params('id') } }, async (req) => {
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
      },
    },
    async (req, reply) => {
      const { id: sessionId } = req.params as { id: string };
      const body = req.body as { content: string; priority?: number };
      const key = req.headers['idempotency-key'];
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

  app.post('/sessions/:id/messages/:reply_id/cancel', { schema: { params: params('id', 'reply_id') } }, async (req, reply) => {
    const { id: sessionId, reply_id } = req.params as { id: string; reply_id: string };
    await deps.session.getSession({ ownerId: ownerOf(req), id: sessionId, recentLimit: 1 });
    const res = await deps.scheduler.cancelReply({ ownerId: ownerOf(req), sessionId, replyId: reply_id });
    return reply.code(202).send({ cancelled: res.cancelled });
  });

  app.post('/sessions/:id/ws_token', { schema: { params: params('id') } }, async (req) => {
    const { id: sessionId } = req.params as { id: string };
    // Only the session's owner gets a token (a foreign session answers 404).
    await deps.session.getSession({ ownerId: ownerOf(req), id: sessionId, recentLimit: 1 });
    const { token, expiresAt } = deps.tokens.issue(ownerOf(req), sessionId);
    return { ws_token: token, expires_at: expiresAt.toISOString() };
  });
}
