import type { Migration } from '@chat/db';

/** The rag schema's migrations, applied in order, each once. */
export const ragMigrations: Migration[] = [
  {
    id: '0001_sources_and_jobs',
    up: `
      create table rag.sources (
        id uuid primary key,
        persona_id text not null,
        owner_id text not null,
        kind text not null check (kind in ('TEXT', 'URL', 'BACKGROUND')),
        title text not null default '',
        url text not null default '',
        content_hash text not null,
        chunk_count integer not null default 0,
        bytes bigint not null default 0,
        created_at timestamptz not null default now()
      );
      create index sources_persona_kind_idx on rag.sources (persona_id, kind);

      create table rag.ingest_jobs (
        id uuid primary key,
        owner_id text not null,
        persona_id text not null,
        kind text not null check (kind in ('TEXT', 'URL', 'BACKGROUND')),
        title text not null default '',
        source text not null default '',
        text text not null,
        content_hash text not null,
        status text not null default 'queued' check (status in ('queued', 'running', 'succeeded', 'failed')),
        chunks_done integer not null default 0,
        chunks_total integer not null default 0,
        error text not null default '',
        source_id uuid,
        attempts integer not null default 0,
        created_at timestamptz not null default now(),
        updated_at timestamptz not null default now()
      );
      create index ingest_jobs_unfinished_idx on rag.ingest_jobs (created_at) where status in ('queued', 'running');
      create index ingest_jobs_persona_kind_idx on rag.ingest_jobs (persona_id, kind, created_at);
    `,
  },
];
