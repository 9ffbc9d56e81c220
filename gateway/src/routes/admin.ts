import type { FastifyInstance } from 'fastify';
import type { schedulerV1 } from '@chat/contracts';
import { AppError, Code } from '@chat/errors';
import type { GatewayDeps } from '../deps.js';
import { obj, params, queryInt } from '../schemas.js';
import { intParam, ownerOf } from './util.js';

const iso = (d: Date | undefined) => (d ? d.toISOString() : null);

/** deadLetterToJson renders a dead letter for the admin API. */
export function deadLetterToJson(d: schedulerV1.DeadLetter | undefined) {
  if (!d) throw new Error('scheduler answered without a dead letter');
  return {
    id: d.id,
    topic: d.topic,
    key: d.key,
    event_type: d.eventType,
    code: d.code,
    cause: d.cause,
    attempts: d.attempts,
    group: d.group,
    failed_at: iso(d.failedAt),
    session_id: d.sessionId || null,
    message_id: d.messageId || null,
    reply_id: d.replyId || null,
    owner_id: d.ownerId || null,
    original_partition: d.originalPartition >= 0 ? d.originalPartition : null,
    original_offset: d.originalOffset >= 0 ? String(d.originalOffset) : null,
    replayed: d.replayed,
    replayed_at: iso(d.replayedAt),
    replayed_by: d.replayedBy || null,
  };
}

const s = { type: 'string' } as const;
const ns = { type: ['string', 'null'] } as const;
const DeadLetter = obj(
  'DeadLetter',
  {
    id: s,
    topic: { type: 'string', description: 'the original topic, e.g. chat.messages.v1 (the letter is on `<topic>.DLT`)' },
    key: s,
    event_type: s,
    code: { type: 'string', description: 'why it was given up on, e.g. llm_unavailable, llm_rate_limited, reply_interrupted, undecodable' },
    cause: { type: 'string', description: 'the failure message (redacted, at most 500 characters)' },
    attempts: { type: 'integer' },
    group: { type: 'string', description: 'the consumer group that gave up' },
    failed_at: ns,
    session_id: ns,
    message_id: ns,
    reply_id: ns,
    owner_id: ns,
    original_partition: { type: ['integer', 'null'] },
    original_offset: ns,
    replayed: { type: 'boolean' },
    replayed_at: ns,
    replayed_by: ns,
  },
  [],
  'An event a consumer gave up on (chat.messages.v1: a reply that failed after its attempts; the client got reply.failed).',
);
const DeadLetterList = obj('DeadLetterList', { dead_letters: { type: 'array', items: DeadLetter }, next_page_token: ns });
const Replayed = obj('ReplayedDeadLetter', { dead_letter: DeadLetter });

/**
 * adminRoutes: the dead letters of every owner, for the owners named in ADMIN_OWNERS (anyone else
 * gets 403 permission_denied). Listing reads the scheduler's index of the `<topic>.DLT` topics;
 * replaying republishes the original event to its topic once (a second replay answers 422
 * already_replayed). A replayed message whose reply already completed is skipped by the scheduler,
 * and a reply row exists once per message (unique reply_to), so a replay never duplicates a reply.
 */
export function adminRoutes(app: FastifyInstance, deps: GatewayDeps): void {
  const admins = new Set(deps.adminOwners ?? []);
  const requireAdmin = (req: object): string => {
    const owner = ownerOf(req);
    if (!admins.has(owner)) throw new AppError(Code.PermissionDenied, 'this route is for administrators (ADMIN_OWNERS)', { reason: 'permission_denied' });
    return owner;
  };
  app.get(
    '/admin/dead_letters',
    {
      schema: {
        tags: ['admin'],
        summary: 'List dead letters, newest first (admin only)',
        querystring: {
          type: 'object',
          additionalProperties: false,
          properties: {
            topic: { type: 'string', pattern: '^[A-Za-z0-9._-]{1,200}$', description: 'an original topic, e.g. chat.messages.v1; all topics when absent' },
            limit: queryInt(500),
            page_token: { type: 'string', minLength: 1, maxLength: 100 },
            include_replayed: { type: 'string', enum: ['true', 'false'] },
          },
        },
        response: { 200: DeadLetterList },
      },
    },
    async (req) => {
      requireAdmin(req);
      const q = req.query as { topic?: string; limit?: string; page_token?: string; include_replayed?: string };
      const res = await deps.scheduler.listDeadLetters({
        topic: q.topic ?? '',
        pageSize: intParam('limit', q.limit, 1, 500) ?? 50,
        pageToken: q.page_token ?? '',
        includeReplayed: q.include_replayed === 'true',
      });
      return { dead_letters: res.deadLetters.map(deadLetterToJson), next_page_token: res.nextPageToken || null };
    },
  );

  app.post(
    '/admin/dead_letters/:id/replay',
    { schema: { tags: ['admin'], summary: 'Replay a dead letter to its original topic, once (admin only)', params: params('id'), response: { 200: Replayed } } },
    async (req) => {
      const owner = requireAdmin(req);
      const { id } = req.params as { id: string };
      const res = await deps.scheduler.replayDeadLetter({ id, requestedBy: owner });
      return { dead_letter: deadLetterToJson(res.deadLetter) };
    },
  );
}
