import { outboxMigration, type Migration } from '@chat/db';

/** SCHEMA is the persona service's own PostgreSQL schema. */
export const SCHEMA = 'persona';

/** The persona service's migrations, applied in order at start. */
export const migrations: Migration[] = [
  outboxMigration(SCHEMA),
  {
    id: '001_personas',
    up: `create table persona.personas (
      id uuid primary key,
      owner_id text not null,
      name text not null,
      system_prompt text not null,
      background text not null default '',
      api_profile_id uuid,
      settings jsonb not null default '{}'::jsonb,
      created_at timestamptz not null default now(),
      updated_at timestamptz not null default now()
    );
    create index personas_owner_created on persona.personas (owner_id, created_at desc, id desc)`,
  },
];
