import { outboxClaimMigration, outboxMigration, type Migration } from '@chat/db';

/** SCHEMA is the session service's own PostgreSQL schema. */
export const SCHEMA = 'session';

/** The session service's migrations, applied in order at start. */
export const migrations: Migration[] = [
  outboxMigration(SCHEMA),
  {
    id: '001_sessions_messages',
    up: `create table session.sessions (
      id uuid primary key,
      owner_id text not null,
      persona_id uuid not null,
      title text not null default '',
      last_seq bigint not null default 0,
      created_at timestamptz not null default now()
    );
    create index sessions_owner on session.sessions (owner_id, created_at desc);
    create index sessions_persona on session.sessions (persona_id);
    create table session.messages (
      id uuid primary key,
      pos bigserial not null unique,
      session_id uuid not null references session.sessions(id) on delete cascade,
      role text not null check (role in ('user', 'assistant')),
      content text not null,
      status text not null,
      reply_id uuid,
      reply_to uuid,
      citations jsonb not null default '[]'::jsonb,
      model text not null default '',
      error text not null default '',
      idempotency_key text,
      created_at timestamptz not null default now()
    );
    create index messages_session_pos on session.messages (session_id, pos desc);
    create unique index messages_idempotency on session.messages (session_id, idempotency_key) where idempotency_key is not null;
    create unique index messages_reply_to on session.messages (reply_to) where reply_to is not null`,
  },
  {
    id: '002_summaries_session_listing',
    up: `create table session.summaries (
      session_id uuid primary key references session.sessions(id) on delete cascade,
      summary text not null,
      covered_until bigint not null,
      version bigint not null,
      updated_at timestamptz not null default now()
    );
    create index sessions_owner_created on session.sessions (owner_id, created_at desc, id desc);
    create index sessions_owner_persona_created on session.sessions (owner_id, persona_id, created_at desc, id desc)`,
  },
  {
    // Every reply event (the encoded chat.events.v1.ReplyEvent), so a WebSocket `resume` can be
    // served by any gateway instance, also after a restart (docs/decisions/0016).
    id: '003_reply_events',
    up: `create table session.reply_events (
      session_id uuid not null references session.sessions(id) on delete cascade,
      seq bigint not null,
      payload bytea not null,
      created_at timestamptz not null default now(),
      primary key (session_id, seq)
    );
    create index reply_events_created on session.reply_events (created_at)`,
  },
  {
    // Sessions made for one OpenAI-compatible completion; swept after a retention period
    // (docs/decisions/0019).
    id: '004_ephemeral_sessions',
    up: `alter table session.sessions add column ephemeral boolean not null default false;
    create index sessions_ephemeral_created on session.sessions (created_at) where ephemeral`,
  },
  {
    // The seq of the final event recorded for a reply: a second, different final event of the same
    // reply (a message delivered again whose first run had finished) is then stored as a tombstone
    // (docs/decisions/0018).
    id: '005_reply_final_seq',
    up: `alter table session.messages add column final_seq bigint`,
  },
  outboxClaimMigration(SCHEMA),
];
