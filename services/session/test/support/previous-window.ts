import { sessionV1 } from '@chat/contracts';
import { QueryTypes, type Sequelize } from '@chat/db';
import { AppError } from '@chat/errors';
import { isUuid, type Message, type MessageStatus, type Session, type Summary } from '../../src/domain/session.js';
import { messageToProto, sessionToProto, STATUS, summaryToProto } from '../../src/handlers/session-handlers.js';

/**
 * The code path GetConversationWindow had before it became one statement (an ownership read, the
 * before position, then the window beside the reply's status, and a count when the window is
 * full), copied verbatim from the handler and the repository. Kept here ONLY as the reference the
 * one-statement path is compared with (conversation-window.test.ts) and measured against
 * (bench/conversation-window.bench.ts).
 */
export function previousGetConversationWindow(sequelize: Sequelize) {
  type Row = Record<string, unknown> & { id: string | null; pos: number };
  const toSession = (r: Record<string, unknown>): Session => ({
    id: r.id as string,
    ownerId: r.owner_id as string,
    personaId: r.persona_id as string,
    title: r.title as string,
    lastSeq: Number(r.last_seq),
    createdAt: r.created_at as Date,
  });
  const toSummary = (r: { summary: string; covered_until: number; version: number; updated_at: Date } | undefined): Summary =>
    r ? { text: r.summary, coveredUntil: Number(r.covered_until), version: Number(r.version), updatedAt: r.updated_at } : { text: '', coveredUntil: 0, version: 0, updatedAt: undefined };
  const getSession = async (ownerId: string, id: string) => {
    const rows = await sequelize.query<Record<string, unknown>>('select * from session.sessions where id = :id and owner_id = :owner', { replacements: { id, owner: ownerId }, type: QueryTypes.SELECT });
    return rows[0] ? toSession(rows[0]) : undefined;
  };
  const positionOf = async (sessionId: string, id: string) => {
    const rows = await sequelize.query<{ pos: number }>('select pos from session.messages where id = :id and session_id = :session', { replacements: { id, session: sessionId }, type: QueryTypes.SELECT });
    return rows[0] ? Number(rows[0].pos) : undefined;
  };
  const messageStatus = async (sessionId: string, id: string) => {
    const rows = await sequelize.query<{ status: MessageStatus }>('select status from session.messages where id = :id and session_id = :session', { replacements: { id, session: sessionId }, type: QueryTypes.SELECT });
    return rows[0]?.status;
  };
  const conversationWindow = async (sessionId: string, max: number, before?: number) => {
    const joined = await sequelize.query<Row & { sm_summary: string | null; sm_covered: number | null; sm_version: number | null; sm_updated: Date | null }>(
      `with sm as (select summary, covered_until, version, updated_at from session.summaries where session_id = :session),
       msgs as (
         select * from session.messages
         where session_id = :session and pos > coalesce((select covered_until from sm), 0) ${before ? 'and pos < :before' : ''}
         order by pos desc limit :limit
       )
       select m.*, sm.summary as sm_summary, sm.covered_until as sm_covered, sm.version as sm_version, sm.updated_at as sm_updated
       from (select 1) as one left join sm on true left join msgs m on true
       order by m.pos desc nulls last`,
      { replacements: { session: sessionId, before: before ?? null, limit: max }, type: QueryTypes.SELECT },
    );
    const head = joined[0];
    const summary = toSummary(
      head && head.sm_covered !== null ? { summary: head.sm_summary ?? '', covered_until: head.sm_covered, version: head.sm_version ?? 0, updated_at: head.sm_updated! } : undefined,
    );
    const rows = joined.filter((r) => r.id !== null);
    let olderUncovered = 0;
    if (rows.length === max && rows.length > 0) {
      const count = await sequelize.query<{ n: number }>('select count(*)::int as n from session.messages where session_id = :session and pos > :covered and pos < :oldest', {
        replacements: { session: sessionId, covered: summary.coveredUntil, oldest: rows[rows.length - 1]!.pos },
        type: QueryTypes.SELECT,
      });
      olderUncovered = Number(count[0]?.n ?? 0);
    }
    return { summary, messages: rows.reverse().map(rowToMessage), olderUncovered };
  };
  return async (req: sessionV1.GetConversationWindowRequest): Promise<sessionV1.GetConversationWindowResponse> => {
    if (!req.ownerId) throw AppError.invalid('owner_id is required', { owner_id: 'is required' });
    const s = isUuid(req.sessionId) ? await getSession(req.ownerId, req.sessionId) : undefined;
    if (!s) throw AppError.notFound('session', req.sessionId);
    if (req.maxMessages > 1_000) throw AppError.invalid('max_messages is too large', { max_messages: `must be at most ${1_000}` });
    let before: number | undefined;
    if (req.beforeMessageId) {
      before = isUuid(req.beforeMessageId) ? await positionOf(s.id, req.beforeMessageId) : undefined;
      if (before === undefined) throw AppError.invalid('before_message_id is not a message of this session', { before_message_id: 'must be a message id of this session' });
    }
    const [window, replyStatus] = await Promise.all([
      conversationWindow(s.id, req.maxMessages || 50, before),
      req.replyId && isUuid(req.replyId) ? messageStatus(s.id, req.replyId) : Promise.resolve(undefined),
    ]);
    return {
      session: sessionToProto(s),
      summary: summaryToProto(window.summary),
      messages: window.messages.map(messageToProto),
      olderUncovered: window.olderUncovered,
      replyStatus: replyStatus ? STATUS[replyStatus] : sessionV1.MessageStatus.MESSAGE_STATUS_UNSPECIFIED,
    };
  };
}

/**
 * The code path ListMessagesAfter had before its ownership check was folded into its statement
 * (an ownership read, then the page), copied verbatim. Kept here ONLY as the reference the
 * one-statement path is compared with (conversation-window.test.ts).
 */
export function previousListMessagesAfter(sequelize: Sequelize) {
  return async (req: sessionV1.ListMessagesAfterRequest): Promise<sessionV1.ListMessagesAfterResponse> => {
    if (!req.ownerId) throw AppError.invalid('owner_id is required', { owner_id: 'is required' });
    // The ownership read, as assertOwned made it (the window path's first step answers the same NOT_FOUND).
    const owned = isUuid(req.sessionId)
      ? await sequelize.query<{ id: string }>('select * from session.sessions where id = :id and owner_id = :owner', { replacements: { id: req.sessionId, owner: req.ownerId }, type: QueryTypes.SELECT })
      : [];
    if (!owned[0]) throw AppError.notFound('session', req.sessionId);
    if (req.limit > 1_000) throw AppError.invalid('limit is too large', { limit: `must be at most ${1_000}` });
    const limit = req.limit || 100;
    const before = Number(req.beforePosition);
    const rows = await sequelize.query<Record<string, unknown> & { id: string; pos: number }>(
      `select * from session.messages where session_id = :session and pos > :after ${before > 0 ? 'and pos < :before' : ''}
       order by pos asc limit :limit`,
      { replacements: { session: owned[0].id, after: Number(req.afterPosition), before, limit: limit + 1 }, type: QueryTypes.SELECT },
    );
    return { messages: rows.slice(0, limit).map((r) => messageToProto(rowToMessage(r))), hasMore: rows.length > limit };
  };
}

/** rowToMessage is the repository's mapping of a message row (copied; reference only). */
function rowToMessage(r: Record<string, unknown>): Message {
  return {
    id: r.id as string,
    sessionId: r.session_id as string,
    role: r.role as 'user' | 'assistant',
    content: r.content as string,
    status: r.status as MessageStatus,
    replyId: r.reply_id as string | null,
    replyTo: r.reply_to as string | null,
    citations: (r.citations as Message['citations']) ?? [],
    model: r.model as string,
    error: r.error as string,
    createdAt: r.created_at as Date,
    position: Number(r.pos),
  };
}
