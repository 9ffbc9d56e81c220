import { randomUUID } from 'node:crypto';
import { QueryTypes, type Outbox, type Sequelize } from '@chat/db';
import { eventsV1 } from '@chat/contracts';
import { AppError } from '@chat/errors';
import { encodeEvent, traceHeaders, Topics, type OutgoingEvent } from '@chat/events';
import { isUuid, type Citation, type Message, type MessageStatus, type PageCursor, type Session, type Summary } from '../../domain/session.js';

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
  pos: number;
}
interface SummaryRow {
  summary: string;
  covered_until: number;
  version: number;
  updated_at: Date;
}

const toSummary = (r: SummaryRow | undefined): Summary =>
  r ? { text: r.summary, coveredUntil: Number(r.covered_until), version: Number(r.version), updatedAt: r.updated_at } : { text: '', coveredUntil: 0, version: 0, updatedAt: undefined };

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
  position: Number(r.pos),
});

/** messageCreated is the outbox event of a new user message: the turn the scheduler answers. */
function messageCreated(session: Pick<Session, 'id' | 'ownerId' | 'personaId'>, messageId: string, replyId: string, content: string, priority: number, createdAt: Date, firstInSession = false) {
  const event = eventsV1.MessageCreated.fromPartial({ messageId, replyId, sessionId: session.id, ownerId: session.ownerId, personaId: session.personaId, content, priority, createdAt, firstInSession });
  return { key: session.id, value: encodeEvent(eventsV1.MessageCreated, event), headers: traceHeaders({ 'event-type': 'message.created' }) };
}

/**
 * messageCreatedAround builds the MessageCreated event of a session whose persona id only the
 * database knows yet (a send that checks ownership in the same statement): the event is encoded with
 * a random placeholder persona id and cut around it, and the statement puts the stored persona id
 * (a uuid, so always 36 characters, like the placeholder: the encoding around it does not change)
 * between the two halves. Undefined in the (astronomically unlikely) case that the placeholder
 * occurs twice in the encoding, e.g. quoted in the content: the caller then reads the session first.
 */
function messageCreatedAround(sessionId: string, ownerId: string, messageId: string, replyId: string, content: string, priority: number, createdAt: Date) {
  const placeholder = randomUUID();
  const event = messageCreated({ id: sessionId, ownerId, personaId: placeholder }, messageId, replyId, content, priority, createdAt);
  const bytes = Buffer.from(event.value);
  const mark = Buffer.from(placeholder, 'utf8');
  const at = bytes.indexOf(mark);
  if (at < 0 || bytes.indexOf(mark, at + 1) >= 0) return undefined;
  return { event, head: bytes.subarray(0, at), tail: bytes.subarray(at + mark.length) };
}

/** A message row as the one-statement inserts take them (a jsonb array, inserted in order). */
interface MessageInsert {
  id: string;
  role: 'user' | 'assistant';
  content: string;
  status: 'completed' | 'pending';
  reply_id: string | null;
  reply_to: string | null;
}

/** sentRows are the rows of a sent message: the user message (completed) and its reply (pending, so GET shows it and its status moves on). */
const sentRows = (messageId: string, replyId: string, content: string): MessageInsert[] => [
  { id: messageId, role: 'user', content, status: 'completed', reply_id: replyId, reply_to: null },
  { id: replyId, role: 'assistant', content: '', status: 'pending', reply_id: null, reply_to: messageId },
];

/** The insert of MessageInsert rows (`:rows`, jsonb) into the session `s`, all at `:created`; append `from s, MESSAGE_ROWS order by t.i`. */
const MESSAGES_INSERT = `insert into session.messages (id, session_id, role, content, status, reply_id, reply_to, created_at)
  select t.id, s.id, t.role, t.content, t.status, t.reply_id, t.reply_to, cast(:created as timestamptz)`;
const MESSAGE_ROWS = `rows from (jsonb_to_recordset(cast(:rows as jsonb)) as (id uuid, role text, content text, status text, reply_id uuid, reply_to uuid))
  with ordinality as t(id, role, content, status, reply_id, reply_to, i)`;

/** OwnedWindow is a conversation window read together with its ownership check (ownedConversationWindow). */
export interface OwnedWindow {
  session: Session;
  summary: Summary;
  /** Oldest first. */
  messages: Message[];
  /** Uncovered messages older than the window (0 unless the window is full). */
  olderUncovered: number;
  /** False when a beforeMessageId was given that is not a message of the session. */
  beforeFound: boolean;
  /** The reply's status; undefined when not asked, malformed or not a message of the session. */
  replyStatus: MessageStatus | undefined;
}

/** A row of WINDOW_STATEMENT: the session, summary and asked-for parts, then one message (or none). */
type WindowRow = MessageRow & {
  s_id: string;
  s_owner_id: string;
  s_persona_id: string;
  s_title: string;
  s_last_seq: number;
  s_created_at: Date;
  sm_summary: string | null;
  sm_covered: number | null;
  sm_version: number | null;
  sm_updated: Date | null;
  before_pos: number | null;
  reply_status: MessageStatus | null;
  older_uncovered: number;
};

/** A pg connection of sequelize's pool, as used for a named prepared statement. */
interface PreparedConnection {
  query<R>(config: { name: string; text: string; values: unknown[] }): Promise<{ rows: R[] }>;
}

/** Error codes after which a pool connection is dropped: reset, prepared statement missing (26000) or already there (42P05), cached plan no longer fits (0A000). */
const PREPARED_GONE = new Set(['ECONNRESET', '26000', '42P05', '0A000']);

/**
 * WINDOW_STATEMENT is GetConversationWindow's one statement (docs/decisions/0023), parameters
 * $1 session id, $2 owner id, $3 before_message_id (null: none, or malformed), $4 whether a
 * before_message_id was given, $5 reply id (null: not asked), $6 max messages. It answers no row
 * for an unknown or foreign session, else one row per window message, newest first (or one row
 * without a message), each with the session, the summary's columns (its text only on the first
 * row: it can be long, and travels once), the before position (null when asked for and not a
 * message of the session: the window is then empty), the reply's status and the older count.
 *
 * Every part is a lateral of the ownership row, so a foreign session reads no message. The window
 * is `limit $6` on (session_id, pos), between the summary's covered_until and the before position;
 * the before position and the reply are primary-key reads. olderUncovered is the count of the same
 * range minus the window (never negative): an index-only count, bounded by the window size plus the
 * older uncovered messages — as the former "count when the window is full" query was, and equal to
 * it (a window that is not full holds the whole range, so both are 0). Its cost is bounded by `max`,
 * not by the length of the session (beyond that count). The message columns are listed, not `*`:
 * a column added to session.messages later does not change the prepared statement's result type.
 * The name carries a version: change the text, change the name.
 */
const WINDOW_STATEMENT = {
  name: 'session_conversation_window_v1',
  text: `select s.id as s_id, s.owner_id as s_owner_id, s.persona_id as s_persona_id, s.title as s_title, s.last_seq as s_last_seq, s.created_at as s_created_at,
    case when row_number() over (order by m.pos desc nulls last) = 1 then sm.summary end as sm_summary,
    sm.covered_until as sm_covered, sm.version as sm_version, sm.updated_at as sm_updated,
    b.pos as before_pos, r.status as reply_status, greatest(c.n - $6, 0)::int as older_uncovered,
    m.id, m.session_id, m.role, m.content, m.status, m.reply_id, m.reply_to, m.citations, m.model, m.error, m.created_at, m.pos
  from session.sessions s
  left join session.summaries sm on sm.session_id = s.id
  left join lateral (select pos from session.messages where id = $3 and session_id = s.id) b on true
  left join lateral (select status from session.messages where id = $5 and session_id = s.id) r on true
  cross join lateral (select coalesce(sm.covered_until, 0) as lower, case when $4::boolean then coalesce(b.pos, 0) else 9223372036854775807 end as upper) w
  left join lateral (select count(*) as n from session.messages where session_id = s.id and pos > w.lower and pos < w.upper) c on true
  left join lateral (
    select id, session_id, role, content, status, reply_id, reply_to, citations, model, error, created_at, pos from session.messages
    where session_id = s.id and pos > w.lower and pos < w.upper order by pos desc limit $6
  ) m on true
  where s.id = $1 and s.owner_id = $2
  order by m.pos desc nulls last`,
};

/** SessionRepository stores sessions and messages, and writes message events to the outbox. */
export class SessionRepository {
  constructor(
    private readonly sequelize: Sequelize,
    private readonly outbox: Outbox,
  ) {}

  /** createSession stores a new session; an ephemeral one is deleted by the retention sweep (ephemeral-sessions.ts). */
  async createSession(ownerId: string, personaId: string, title: string, ephemeral = false): Promise<Session> {
    return (await this.openSession({ ownerId, personaId, title, ephemeral })).session;
  }

  /**
   * openSession stores a new session with its history turns and, when `first` is given, its first
   * user message, the reply's pending row and the MessageCreated outbox row — all in ONE statement
   * (a data-modifying CTE), so it commits atomically in one round trip: a failure leaves nothing
   * (docs/decisions/0021). The messages are one multi-row insert ordered by ordinality, so their
   * positions follow history, then the message, then its reply.
   */
  async openSession(input: {
    ownerId: string;
    personaId: string;
    title: string;
    ephemeral?: boolean;
    history?: ReadonlyArray<{ role: 'user' | 'assistant'; content: string }>;
    first?: { content: string; priority: number };
  }): Promise<{ session: Session; messageId?: string; replyId?: string }> {
    const id = randomUUID();
    const createdAt = new Date();
    const rows: MessageInsert[] = (input.history ?? []).map((t) => ({ id: randomUUID(), role: t.role, content: t.content, status: 'completed', reply_id: null, reply_to: null }));
    let outbox: { sql: string; replacements: Record<string, unknown> } | undefined;
    let event: OutgoingEvent | undefined;
    let sent: { messageId: string; replyId: string } | undefined;
    if (input.first) {
      sent = { messageId: randomUUID(), replyId: randomUUID() };
      // Without history the message is the session's first: the scheduler may start on it at once.
      const firstInSession = rows.length === 0;
      rows.push(...sentRows(sent.messageId, sent.replyId, input.first.content));
      const session = { id, ownerId: input.ownerId, personaId: input.personaId };
      event = messageCreated(session, sent.messageId, sent.replyId, input.first.content, input.first.priority, createdAt, firstInSession);
      // Claimed: the session is new, so no other event of its key can wait in the outbox, and this
      // process publishes the event itself right after the commit (Outbox.publishClaimed).
      outbox = this.outbox.insertStatement(Topics.messages, event, { claim: true });
    }
    const result = await this.sequelize.query<SessionRow & { outbox_id?: string | number | null }>(
      `with s as (
         insert into session.sessions (id, owner_id, persona_id, title, ephemeral) values (:id, :owner, :persona, :title, :ephemeral) returning *
       )${rows.length > 0 ? `, m as (${MESSAGES_INSERT} from s, ${MESSAGE_ROWS} order by t.i)` : ''}${outbox ? `, o as (${outbox.sql})` : ''}
       select s.*${outbox ? ', (select id from o) as outbox_id' : ''} from s`,
      {
        replacements: { id, owner: input.ownerId, persona: input.personaId, title: input.title, ephemeral: input.ephemeral ?? false, rows: JSON.stringify(rows), created: createdAt, ...outbox?.replacements },
        type: QueryTypes.SELECT,
      },
    );
    const row = result[0]!;
    if (event && row.outbox_id !== undefined && row.outbox_id !== null) await this.outbox.publishClaimed(row.outbox_id, Topics.messages, event);
    return { session: toSession(row), ...sent };
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
    if (!idempotencyKey) return this.sendWithoutKey(session, content, priority);
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
      // The reply's row exists from the start (pending), so GET shows it and its status moves on.
      await this.sequelize.query(
        `insert into session.messages (id, session_id, role, content, status, reply_to)
         values (:id, :session, 'assistant', '', 'pending', :replyTo)`,
        { replacements: { id: replyId, session: session.id, replyTo: messageId }, transaction: t },
      );
      await this.outbox.add(t, Topics.messages, messageCreated(session, messageId, replyId, content, priority, rows[0]!.created_at));
      return { messageId, replyId, created: true };
    });
    if (result.created) this.outbox.kick();
    return result;
  }

  /**
   * sendWithoutKey is sendMessage without an idempotency key in ONE statement (one round trip
   * instead of five): the user row and the pending reply row (one multi-row insert, so their
   * positions follow each other in order) and the outbox row, in a data-modifying CTE — a single
   * statement commits atomically, as the transaction did. created_at is taken here so that the
   * event carries the stored value.
   */
  private async sendWithoutKey(session: Session, content: string, priority: number): Promise<{ messageId: string; replyId: string; created: boolean }> {
    const messageId = randomUUID();
    const replyId = randomUUID();
    const createdAt = new Date();
    const outbox = this.outbox.insertStatement(Topics.messages, messageCreated(session, messageId, replyId, content, priority, createdAt));
    await this.sequelize.query(`with s as (select cast(:session as uuid) as id), m as (${MESSAGES_INSERT} from s, ${MESSAGE_ROWS} order by t.i) ${outbox.sql}`, {
      replacements: { session: session.id, rows: JSON.stringify(sentRows(messageId, replyId, content)), created: createdAt, ...outbox.replacements },
    });
    this.outbox.kick();
    return { messageId, replyId, created: true };
  }

  /**
   * sendOwned is SendMessage without an idempotency key in ONE statement, ownership check included:
   * the CTE `s` selects the session by id AND owner, and every insert (the user row and the pending
   * reply row, one multi-row insert in order, and the outbox row) selects from it, so an unknown or
   * foreign session writes nothing and answers undefined (NOT_FOUND). The event's persona id comes
   * from the session row, inside the statement (messageCreatedAround). A session deleted meanwhile
   * (the insert's foreign key fails) is not found either.
   */
  async sendOwned(ownerId: string, sessionId: string, content: string, priority: number): Promise<{ messageId: string; replyId: string } | undefined> {
    const messageId = randomUUID();
    const replyId = randomUUID();
    const createdAt = new Date();
    const around = messageCreatedAround(sessionId, ownerId, messageId, replyId, content, priority, createdAt);
    if (!around) {
      const session = await this.getSession(ownerId, sessionId);
      return session ? this.sendWithoutKey(session, content, priority) : undefined;
    }
    // Written once per row of `s` (so not at all for an unknown or foreign session), with the
    // stored persona id put between the halves of the encoded event.
    const outbox = this.outbox.insertStatement(Topics.messages, around.event, {
      from: 's',
      payloadSql: `(cast(:outbox_head as bytea) || convert_to(s.persona_id::text, 'UTF8') || cast(:outbox_tail as bytea))`,
    });
    let found: number;
    try {
      const rows = await this.sequelize.query<{ found: number }>(
        `with s as (select id, persona_id from session.sessions where id = :session and owner_id = :owner),
         m as (${MESSAGES_INSERT} from s, ${MESSAGE_ROWS} order by t.i),
         o as (${outbox.sql})
         select count(*)::int as found from s`,
        {
          replacements: {
            session: sessionId,
            owner: ownerId,
            rows: JSON.stringify(sentRows(messageId, replyId, content)),
            created: createdAt,
            ...outbox.replacements,
            outbox_head: around.head,
            outbox_tail: around.tail,
          },
          type: QueryTypes.SELECT,
        },
      );
      found = Number(rows[0]?.found ?? 0);
    } catch (err) {
      if (isForeignKeyViolation(err)) return undefined;
      throw err;
    }
    if (found === 0) return undefined;
    this.outbox.kick();
    return { messageId, replyId };
  }

  /** markStreaming moves a pending reply to streaming (on its first delta); later calls change nothing. */
  async markStreaming(sessionId: string, replyId: string): Promise<boolean> {
    const [, count] = await this.sequelize.query(`update session.messages set status = 'streaming' where id = :id and session_id = :session and status = 'pending'`, {
      replacements: { id: replyId, session: sessionId },
      type: QueryTypes.UPDATE,
    });
    return Number(count) > 0;
  }

  /**
   * recordReply stores the final state of a reply once: the pending/streaming row becomes
   * completed, failed or cancelled, with the seq of its final event; a redelivered event finds it
   * final and changes nothing. (A reply without a pending row, from before rows were created at
   * send time, is inserted.) It also advances the session's last event seq. `duplicate` is true
   * when the reply was already final through a different event (another seq): a second final
   * event of one reply, which must not reach anyone (decision 0018).
   */
  async recordReply(e: {
    sessionId: string;
    replyId: string;
    messageId: string;
    seq: number;
    status: 'completed' | 'failed' | 'cancelled';
    content: string;
    citations: Citation[];
    model: string;
    error: string;
  }): Promise<{ changed: boolean; duplicate: boolean }> {
    const replacements = { id: e.replyId, session: e.sessionId, content: e.content, status: e.status, replyTo: e.messageId, citations: JSON.stringify(e.citations), model: e.model, error: e.error, seq: e.seq };
    // The usual case in one statement (one round trip instead of five): the session row locked,
    // the pending/streaming row made final, the session's last seq advanced — atomically, as the
    // transaction below does it. When no row was made final (no pending row, already final, or the
    // session is gone) nothing was written, and the transaction handles the other cases.
    const fast = await this.sequelize.query<{ updated: number }>(
      `with s as (select id from session.sessions where id = :session for update),
       u as (
         update session.messages set content = :content, status = :status, citations = :citations, model = :model, error = :error, final_seq = :seq
         where id = :id and session_id = :session and role = 'assistant' and status in ('pending', 'streaming') and exists (select 1 from s) returning id
       ),
       l as (update session.sessions set last_seq = greatest(last_seq, :seq) where id = :session and exists (select 1 from u) returning id)
       select (select count(*) from u)::int as updated, (select count(*) from l)::int as advanced`,
      { replacements, type: QueryTypes.SELECT },
    );
    if (Number(fast[0]?.updated ?? 0) > 0) return { changed: true, duplicate: false };
    return this.sequelize.transaction(async (t) => {
      const session = await this.sequelize.query<{ id: string }>('select id from session.sessions where id = :id for update', {
        replacements: { id: e.sessionId },
        type: QueryTypes.SELECT,
        transaction: t,
      });
      if (!session[0]) return { changed: false, duplicate: false }; // session deleted meanwhile: nothing to attach the reply to
      const updated = await this.sequelize.query<{ id: string }>(
        `update session.messages set content = :content, status = :status, citations = :citations, model = :model, error = :error, final_seq = :seq
         where id = :id and session_id = :session and role = 'assistant' and status in ('pending', 'streaming') returning id`,
        { replacements, type: QueryTypes.SELECT, transaction: t },
      );
      let changed = updated.length > 0;
      let duplicate = false;
      if (!changed) {
        const inserted = await this.sequelize.query<{ id: string }>(
          `insert into session.messages (id, session_id, role, content, status, reply_to, citations, model, error, final_seq)
           values (:id, :session, 'assistant', :content, :status, :replyTo, :citations, :model, :error, :seq)
           on conflict do nothing returning id`,
          { replacements, type: QueryTypes.SELECT, transaction: t },
        );
        changed = inserted.length > 0;
        if (!changed) {
          const row = await this.sequelize.query<{ final_seq: string | number | null }>('select final_seq from session.messages where id = :id and session_id = :session', {
            replacements,
            type: QueryTypes.SELECT,
            transaction: t,
          });
          const first = row[0]?.final_seq;
          duplicate = first !== null && first !== undefined && Number(first) !== e.seq;
        }
      }
      await this.sequelize.query('update session.sessions set last_seq = greatest(last_seq, :seq) where id = :id', {
        replacements: { seq: e.seq, id: e.sessionId },
        transaction: t,
      });
      return { changed, duplicate };
    });
  }

  /**
   * reopenReply moves a failed reply back to pending (its dead letter was replayed and it runs
   * again under the same id): the error and the final seq are cleared. Other states change nothing.
   */
  async reopenReply(sessionId: string, replyId: string): Promise<boolean> {
    const [, count] = await this.sequelize.query(
      `update session.messages set status = 'pending', error = '', final_seq = null where id = :id and session_id = :session and role = 'assistant' and status = 'failed'`,
      { replacements: { id: replyId, session: sessionId }, type: QueryTypes.UPDATE },
    );
    return Number(count) > 0;
  }

  /** listSessions pages an owner's sessions (of one persona when given), newest first. */
  async listSessions(ownerId: string, personaId: string | undefined, limit: number, after?: PageCursor): Promise<{ sessions: Session[]; next?: PageCursor }> {
    const rows = await this.sequelize.query<SessionRow & { created_text: string }>(
      `select *, (created_at at time zone 'UTC')::text as created_text from session.sessions
       where owner_id = :owner ${personaId ? 'and persona_id = :persona' : ''}
       ${after ? "and (created_at, id) < (cast(:ts as timestamp) at time zone 'UTC', cast(:after as uuid))" : ''}
       order by created_at desc, id desc limit :limit`,
      { replacements: { owner: ownerId, persona: personaId ?? null, ts: after?.createdAt ?? null, after: after?.id ?? null, limit: limit + 1 }, type: QueryTypes.SELECT },
    );
    const page = rows.slice(0, limit);
    const last = page[page.length - 1];
    return { sessions: page.map(toSession), next: rows.length > limit && last ? { createdAt: last.created_text, id: last.id } : undefined };
  }

  /** deleteSession removes a session of the owner with its messages and summary (cascade). */
  async deleteSession(ownerId: string, id: string): Promise<boolean> {
    const rows = await this.sequelize.query('delete from session.sessions where id = :id and owner_id = :owner returning id', {
      replacements: { id, owner: ownerId },
      type: QueryTypes.SELECT,
    });
    return rows.length > 0;
  }

  /** deleteByPersona removes every session of a persona with their messages; repeating it is harmless. */
  async deleteByPersona(personaId: string): Promise<number> {
    const rows = await this.sequelize.query('delete from session.sessions where persona_id = :persona returning id', {
      replacements: { persona: personaId },
      type: QueryTypes.SELECT,
    });
    return rows.length;
  }

  /** getSummary returns the session's summary (empty, version 0, when there is none yet). */
  async getSummary(sessionId: string): Promise<Summary> {
    const rows = await this.sequelize.query<SummaryRow>('select * from session.summaries where session_id = :session', { replacements: { session: sessionId }, type: QueryTypes.SELECT });
    return toSummary(rows[0]);
  }

  /**
   * ownedConversationWindow is GetConversationWindow in ONE statement (one round trip, one
   * snapshot): the session by id AND owner, the position of `beforeMessageId`, the summary, the
   * newest `max` messages after the summary (and before that position when asked), oldest first,
   * the status of `replyId`, and how many uncovered messages are older than the window. Undefined
   * when the session is unknown or another owner's. `beforeFound` is false when a
   * `beforeMessageId` was given that is not a message of the session (also when it is malformed: it
   * is never sent to the database then); a malformed `replyId` is not looked up (status undefined).
   * It runs as a named prepared statement (WINDOW_STATEMENT, docs/decisions/0023).
   */
  async ownedConversationWindow(q: { ownerId: string; sessionId: string; max: number; beforeMessageId?: string; replyId?: string }): Promise<OwnedWindow | undefined> {
    const withBefore = Boolean(q.beforeMessageId);
    const values = [
      q.sessionId,
      q.ownerId,
      // A malformed id is asked for (the upper bound becomes 0: no window) but matches nothing.
      withBefore && isUuid(q.beforeMessageId!) ? q.beforeMessageId! : null,
      withBefore,
      q.replyId && isUuid(q.replyId) ? q.replyId : null,
      q.max,
    ];
    // On a connection of the pool (as sequelize.query would take it, with sequelize's type parsers),
    // so that the statement is parsed and planned once per connection instead of on every call.
    const manager = this.sequelize.connectionManager;
    let rows: WindowRow[] | undefined;
    for (let attempt = 1; !rows; attempt++) {
      const conn = (await manager.getConnection({ type: 'read' })) as unknown as PreparedConnection;
      try {
        rows = (await conn.query<WindowRow>({ ...WINDOW_STATEMENT, values })).rows;
      } catch (err) {
        // A broken connection, or one whose prepared statement is gone or no longer fits (a pooler
        // in transaction mode, DISCARD ALL, a changed column type), leaves the pool (as sequelize
        // marks a broken one), and the read is made once more on another connection, which
        // prepares the statement again (a read: safe to repeat).
        if (!PREPARED_GONE.has(String((err as { code?: unknown }).code))) throw err;
        (conn as { _invalid?: boolean })._invalid = true;
        if (attempt >= 2) throw err;
      } finally {
        await manager.releaseConnection(conn as never);
      }
    }
    const head = rows[0];
    if (!head) return undefined;
    const session = toSession({ id: head.s_id, owner_id: head.s_owner_id, persona_id: head.s_persona_id, title: head.s_title, last_seq: head.s_last_seq, created_at: head.s_created_at });
    const summary = toSummary(
      head.sm_covered !== null ? { summary: head.sm_summary ?? '', covered_until: head.sm_covered, version: head.sm_version ?? 0, updated_at: head.sm_updated! } : undefined,
    );
    return {
      session,
      summary,
      messages: rows.filter((r) => r.id !== null).reverse().map(toMessage),
      olderUncovered: Number(head.older_uncovered),
      beforeFound: !withBefore || head.before_pos !== null,
      replyStatus: head.reply_status ?? undefined,
    };
  }

  /**
   * listOwnedMessagesAfter returns the session's messages with after < position < before (no bound
   * when before is 0), oldest first, with the ownership check in the same statement (one round
   * trip): undefined when the session is unknown or another owner's (no message is read then).
   */
  async listOwnedMessagesAfter(ownerId: string, sessionId: string, after: number, before: number, limit: number): Promise<{ messages: Message[]; hasMore: boolean } | undefined> {
    const rows = await this.sequelize.query<MessageRow & { s_id: string }>(
      `select s.id as s_id, m.id, m.session_id, m.role, m.content, m.status, m.reply_id, m.reply_to, m.citations, m.model, m.error, m.created_at, m.pos
       from session.sessions s
       left join lateral (
         select * from session.messages where session_id = s.id and pos > :after ${before > 0 ? 'and pos < :before' : ''} order by pos asc limit :limit
       ) m on true
       where s.id = :session and s.owner_id = :owner
       order by m.pos asc`,
      { replacements: { session: sessionId, owner: ownerId, after, before, limit: limit + 1 }, type: QueryTypes.SELECT },
    );
    if (rows.length === 0) return undefined;
    const found = rows.filter((r) => r.id !== null);
    return { messages: found.slice(0, limit).map(toMessage), hasMore: found.length > limit };
  }

  /**
   * updateSummary stores a new summary if the stored version is still expectedVersion (0: none yet)
   * and covered_until does not move backwards; otherwise it returns undefined and changes nothing.
   */
  async updateSummary(sessionId: string, text: string, coveredUntil: number, expectedVersion: number): Promise<Summary | undefined> {
    const replacements = { session: sessionId, text, covered: coveredUntil, expected: expectedVersion };
    const rows =
      expectedVersion === 0
        ? await this.sequelize.query<SummaryRow>(
            `insert into session.summaries (session_id, summary, covered_until, version)
             select :session, :text, :covered, 1 where exists (select 1 from session.sessions where id = :session)
             on conflict (session_id) do nothing returning *`,
            { replacements, type: QueryTypes.SELECT },
          )
        : await this.sequelize.query<SummaryRow>(
            `update session.summaries set summary = :text, covered_until = :covered, version = version + 1, updated_at = now()
             where session_id = :session and version = :expected and covered_until <= :covered returning *`,
            { replacements, type: QueryTypes.SELECT },
          );
    return rows[0] ? toSummary(rows[0]) : undefined;
  }

  /**
   * updateOwnedSummary is updateSummary with the ownership check in the same statement (one round
   * trip): `owned` is false when the session is unknown or another owner's (nothing is written);
   * `summary` is undefined when the version or covered_until check failed (nothing is written).
   */
  async updateOwnedSummary(ownerId: string, sessionId: string, text: string, coveredUntil: number, expectedVersion: number): Promise<{ owned: boolean; summary?: Summary }> {
    const write =
      expectedVersion === 0
        ? `insert into session.summaries (session_id, summary, covered_until, version)
           select s.id, :text, :covered, 1 from s
           on conflict (session_id) do nothing returning *`
        : `update session.summaries set summary = :text, covered_until = :covered, version = version + 1, updated_at = now()
           where session_id in (select id from s) and version = :expected and covered_until <= :covered returning *`;
    const rows = await this.sequelize.query<SummaryRow & { owned: number; session_id: string | null }>(
      `with s as (select id from session.sessions where id = :session and owner_id = :owner),
       w as (${write})
       select (select count(*) from s)::int as owned, w.* from (select 1) as one left join w on true`,
      { replacements: { session: sessionId, owner: ownerId, text, covered: coveredUntil, expected: expectedVersion }, type: QueryTypes.SELECT },
    );
    const row = rows[0];
    if (!row || Number(row.owned) === 0) return { owned: false };
    return { owned: true, summary: row.session_id !== null ? toSummary(row) : undefined };
  }

  /**
   * appendTurns inserts finished turns in order in one statement (imports and tests of long
   * sessions); it writes no events.
   */
  async appendTurns(sessionId: string, turns: ReadonlyArray<{ role: 'user' | 'assistant'; content: string }>): Promise<void> {
    await this.sequelize.query(
      `insert into session.messages (id, session_id, role, content, status)
       select gen_random_uuid(), :session, t.role, t.content, 'completed'
       from rows from (jsonb_to_recordset(cast(:turns as jsonb)) as (role text, content text)) with ordinality as t(role, content, i) order by t.i`,
      { replacements: { session: sessionId, turns: JSON.stringify(turns) } },
    );
  }
}

/** isForeignKeyViolation tells a PostgreSQL foreign key violation (23503) from other errors. */
function isForeignKeyViolation(err: unknown): boolean {
  const e = err as { parent?: { code?: unknown }; original?: { code?: unknown } } | undefined;
  return (e?.parent?.code ?? e?.original?.code) === '23503';
}

/** assertOwned loads a session or answers NOT_FOUND (also for another owner's session). */
export async function assertOwned(repo: SessionRepository, ownerId: string, id: string, isUuid: (s: string) => boolean): Promise<Session> {
  const s = isUuid(id) ? await repo.getSession(ownerId, id) : undefined;
  if (!s) throw AppError.notFound('session', id);
  return s;
}
