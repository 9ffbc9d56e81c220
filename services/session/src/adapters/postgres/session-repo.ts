import { randomUUID } from 'node:crypto';
import { QueryTypes, type Outbox, type Sequelize } from '@chat/db';
import { eventsV1 } from '@chat/contracts';
import { AppError } from '@chat/errors';
import { encodeEvent, traceHeaders, Topics } from '@chat/events';
import type { Citation, Message, MessageStatus, Session } from '../../domain/session.js';

interface SessionRow {
  id: string;
  owner_id: string;
  persona_id: string;
  title: string;
  last_seq: number;
  created_at: Date;
}
interface MessageRow {
  id: string;
  session_id: string;
  role: 'user' | 'assistant';
  content: string;
  status: MessageStatus;
  reply_id: string | null;
  reply_to: string | null;
  citations: Citation[];
  model: string;
  error: string;
  created_at: Date;
}

const toSession = (r: SessionRow): Session => ({ id: r.id, ownerId: r.owner_id, personaId: r.persona_id, title: r.title, lastSeq: Number(r.last_seq), createdAt: r.created_at });
const toMessage = (r: MessageRow): Message => ({
  id: r.id,
  sessionId: r.session_id,
  role: r.role,
  content: r.content,
  status: r.status,
  replyId: r.reply_id,
  replyTo: r.reply_to,
  citations: r.citations ?? [],
  model: r.model,
  error: r.error,
  createdAt: r.created_at,
});

/** SessionRepository stores sessions and messages, and writes message events to the outbox. */
export class SessionRepository {
  constructor(
    private readonly sequelize: Sequelize,
    private readonly outbox: Outbox,
  ) {}

  async createSession(ownerId: string, personaId: string, title: string): Promise<Session> {
    const rows = await this.sequelize.query<SessionRow>(
      'insert into session.sessions (id, owner_id, persona_id, title) values (:id, :owner, :persona, :title) returning *',
      { replacements: { id: randomUUID(), owner: ownerId, persona: personaId, title }, type: QueryTypes.SELECT },
    );
    return toSession(rows[0]!);
  }

  /** getSession returns the session when it exists and belongs to the owner. */
  async getSession(ownerId: string, id: string): Promise<Session | undefined> {
    const rows = await this.sequelize.query<SessionRow>('select * from session.sessions where id = :id and owner_id = :owner', {
      replacements: { id, owner: ownerId },
      type: QueryTypes.SELECT,
    });
    return rows[0] ? toSession(rows[0]) : undefined;
  }

  /** listMessages returns up to `limit` messages before `before` (newest page), oldest first. */
  async listMessages(sessionId: string, limit: number, before?: string): Promise<{ messages: Message[]; hasMore: boolean }> {
    const rows = await this.sequelize.query<MessageRow>(
      `select * from session.messages where session_id = :session
       ${before ? 'and pos < (select pos from session.messages where id = :before and session_id = :session)' : ''}
       order by pos desc limit :limit`,
      { replacements: { session: sessionId, before: before ?? null, limit: limit + 1 }, type: QueryTypes.SELECT },
    );
    return { messages: rows.slice(0, limit).reverse().map(toMessage), hasMore: rows.length > limit };
  }

  /** messageExists tells whether a message id belongs to the session. */
  async messageExists(sessionId: string, id: string): Promise<boolean> {
    const rows = await this.sequelize.query('select 1 from session.messages where id = :id and session_id = :session', {
      replacements: { id, session: sessionId },
      type: QueryTypes.SELECT,
    });
    return rows.length > 0;
  }

  /**
   * sendMessage stores a user message and its MessageCreated event in one transaction. A repeated
   * idempotency key returns the first call's ids and writes nothing.
   */
  async sendMessage(session: Session, content: string, priority: number, idempotencyKey: string): Promise<{ messageId: string; replyId: string; created: boolean }> {
    const result = await this.sequelize.transaction(async (t) => {
      if (idempotencyKey) {
        // Serialise senders of the same key so the second one sees the first one's row.
        await this.sequelize.query('select pg_advisory_xact_lock(hashtext(:k))', { replacements: { k: `${session.id}:${idempotencyKey}` }, transaction: t });
        const existing = await this.sequelize.query<{ id: string; reply_id: string }>(
          'select id, reply_id from session.messages where session_id = :session and idempotency_key = :key',
          { replacements: { session: session.id, key: idempotencyKey }, type: QueryTypes.SELECT, transaction: t },
        );
        if (existing[0]) return { messageId: existing[0].id, replyId: existing[0].reply_id, created: false };
      }
      const messageId = randomUUID();
      const replyId = randomUUID();
      const rows = await this.sequelize.query<{ created_at: Date }>(
        `insert into session.messages (id, session_id, role, content, status, reply_id, idempotency_key)
         values (:id, :session, 'user', :content, 'completed', :reply, :key) returning created_at`,
        { replacements: { id: messageId, session: session.id, content, reply: replyId, key: idempotencyKey || null }, type: QueryTypes.SELECT, transaction: t },
      );
      const event = eventsV1.MessageCreated.fromPartial({
        messageId,
        replyId,
        sessionId: session.id,
        ownerId: session.ownerId,
        personaId: session.personaId,
        content,
        priority,
        createdAt: rows[0]!.created_at,
      });
      await this.outbox.add(t, Topics.messages, { key: session.id, value: encodeEvent(eventsV1.MessageCreated, event), headers: traceHeaders({ 'event-type': 'message.created' }) });
      return { messageId, replyId, created: true };
    });
    if (result.created) this.outbox.kick();
    return result;
  }

  /**
   * recordReply stores the final assistant message of a reply once: a redelivered event finds the
   * row already there and changes nothing. It also advances the session's last event seq.
   */
  async recordReply(e: { sessionId: string; replyId: string; messageId: string; seq: number; status: 'completed' | 'failed' | 'cancelled'; content: string; citations: Citation[]; model: string; error: string }): Promise<boolean> {
    return this.sequelize.transaction(async (t) => {
      const session = await this.sequelize.query<{ id: string }>('select id from session.sessions where id = :id for update', {
        replacements: { id: e.sessionId },
        type: QueryTypes.SELECT,
        transaction: t,
      });
      if (!session[0]) return false; // session deleted meanwhile: nothing to attach the reply to
      const inserted = await this.sequelize.query<{ id: string }>(
        `insert into session.messages (id, session_id, role, content, status, reply_to, citations, model, error)
         values (:id, :session, 'assistant', :content, :status, :replyTo, :citations, :model, :error)
         on conflict do nothing returning id`,
        {
          replacements: { id: e.replyId, session: e.sessionId, content: e.content, status: e.status, replyTo: e.messageId, citations: JSON.stringify(e.citations), model: e.model, error: e.error },
          type: QueryTypes.SELECT,
          transaction: t,
        },
      );
      await this.sequelize.query('update session.sessions set last_seq = greatest(last_seq, :seq) where id = :id', {
        replacements: { seq: e.seq, id: e.sessionId },
        transaction: t,
      });
      return inserted.length > 0;
    });
  }
}

/** assertOwned loads a session or answers NOT_FOUND (also for another owner's session). */
export async function assertOwned(repo: SessionRepository, ownerId: string, id: string, isUuid: (s: string) => boolean): Promise<Session> {
  const s = isUuid(id) ? await repo.getSession(ownerId, id) : undefined;
  if (!s) throw AppError.notFound('session', id);
  return s;
}
