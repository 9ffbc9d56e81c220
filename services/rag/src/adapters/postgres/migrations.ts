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
  {
    // Embedding spaces (which model made a persona's vectors; one active per persona, the switch of
    // a re-embed is one transaction) and re-embed jobs. Owned by knowledge management (spaces.ts, knowledge.ts).
    id: '0100_embedding_spaces_and_reembed_jobs',
    up: `
      create table rag.embedding_spaces (
        id text primary key,
        persona_id text not null,
        owner_id text not null,
        provider text not null check (provider in ('local', 'openai')),
        model text not null,
        base_url text not null default '',
        dimensions integer not null check (dimensions > 0),
        state text not null check (state in ('building', 'active', 'retired')),
        created_at timestamptz not null default now(),
        activated_at timestamptz
      );
      create unique index embedding_spaces_one_active_idx on rag.embedding_spaces (persona_id) where state = 'active';
      create index embedding_spaces_persona_idx on rag.embedding_spaces (persona_id);

      create table rag.reembed_jobs (
        id uuid primary key,
        owner_id text not null,
        persona_id text not null,
        status text not null default 'queued' check (status in ('queued', 'running', 'succeeded', 'failed')),
        target_space_id text not null default '',
        model text not null default '',
        chunks_done integer not null default 0,
        chunks_total integer not null default 0,
        error text not null default '',
        created_at timestamptz not null default now(),
        updated_at timestamptz not null default now()
      );
      create index reembed_jobs_unfinished_idx on rag.reembed_jobs (created_at) where status in ('queued', 'running');
      create unique index reembed_jobs_one_pending_idx on rag.reembed_jobs (persona_id) where status in ('queued', 'running');
    `,
  },
  {
    // Ingest job leases (a worker claims a job FOR UPDATE SKIP LOCKED and renews lease_until; an
    // expired lease is taken over), the stage a job is at, and a sequence that orders one persona's
    // jobs across replicas. Owned by ingestion (ingest.ts, repositories.ts).
    id: '0200_ingest_job_leases_and_stages',
    up: `
      alter table rag.ingest_jobs
        add column seq bigserial,
        add column stage text not null default 'queued'
          check (stage in ('queued', 'fetch', 'extract', 'chunk', 'embed', 'upsert', 'done')),
        add column locked_by text,
        add column lease_until timestamptz;
      update rag.ingest_jobs set stage = 'done' where status = 'succeeded';
      create index ingest_jobs_persona_unfinished_idx on rag.ingest_jobs (persona_id, seq) where status in ('queued', 'running');
      create index ingest_jobs_runnable_idx on rag.ingest_jobs (seq) where status in ('queued', 'running');
    `,
  },
  {
    // Every change of a persona's sources or embedding spaces notifies the channel rag_knowledge
    // with the persona id, at commit (NOTIFY is transactional; one notification per persona and
    // transaction). Every rag replica LISTENs and drops its cached knowledge state of that persona
    // (KnowledgeStateCache, PgKnowledgeListener; docs/decisions/0022).
    id: '0300_knowledge_change_notifications',
    up: `
      create or replace function rag.notify_knowledge_changed() returns trigger language plpgsql as $fn$
      begin
        if tg_op = 'DELETE' then
          perform pg_notify('rag_knowledge', old.persona_id);
        else
          perform pg_notify('rag_knowledge', new.persona_id);
          if tg_op = 'UPDATE' and old.persona_id is distinct from new.persona_id then
            perform pg_notify('rag_knowledge', old.persona_id);
          end if;
        end if;
        return null;
      end
      $fn$;
      create trigger sources_knowledge_changed after insert or update or delete on rag.sources
        for each row execute function rag.notify_knowledge_changed();
      create trigger embedding_spaces_knowledge_changed after insert or update or delete on rag.embedding_spaces
        for each row execute function rag.notify_knowledge_changed();
    `,
  },
];
