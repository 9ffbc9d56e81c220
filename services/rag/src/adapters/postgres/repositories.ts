import { QueryTypes, type Sequelize, type Transaction } from '@chat/db';
import type { JobRepository, SourceRepository } from '../../domain/ports.js';
import type { IngestJob, IngestStage, JobStatus, KnowledgeSource, NewJob, SourceKind } from '../../domain/types.js';

interface JobRow {
  id: string;
  owner_id: string;
  persona_id: string;
  kind: SourceKind;
  title: string;
  source: string;
  text: string;
  content_hash: string;
  status: JobStatus;
  chunks_done: number;
  chunks_total: number;
  error: string;
  source_id: string | null;
  attempts: number;
  stage: IngestStage;
  created_at: Date;
  updated_at: Date;
}

interface SourceRow {
  id: string;
  persona_id: string;
  owner_id: string;
  kind: SourceKind;
  title: string;
  url: string;
  content_hash: string;
  chunk_count: number;
  bytes: number | string;
  created_at: Date;
}

function toJob(r: JobRow): IngestJob {
  return {
    id: r.id,
    ownerId: r.owner_id,
    personaId: r.persona_id,
    kind: r.kind,
    title: r.title,
    source: r.source,
    text: r.text,
    contentHash: r.content_hash,
    status: r.status,
    chunksDone: Number(r.chunks_done),
    chunksTotal: Number(r.chunks_total),
    error: r.error,
    sourceId: r.source_id ?? '',
    attempts: Number(r.attempts),
    stage: r.stage,
    createdAt: new Date(r.created_at),
    updatedAt: new Date(r.updated_at),
  };
}

function toSource(r: SourceRow): KnowledgeSource {
  return {
    id: r.id,
    personaId: r.persona_id,
    ownerId: r.owner_id,
    kind: r.kind,
    title: r.title,
    url: r.url,
    contentHash: r.content_hash,
    chunkCount: Number(r.chunk_count),
    bytes: Number(r.bytes),
    createdAt: new Date(r.created_at),
  };
}

/** Unfinished, and held by no live worker. */
const RUNNABLE = `status in ('queued', 'running') and (lease_until is null or lease_until < now())`;

/** insertSource inserts a source row, or replaces the row with the same id (inside a transaction when given). */
async function insertSource(sequelize: Sequelize, s: KnowledgeSource, transaction?: Transaction): Promise<void> {
  await sequelize.query(
    `insert into rag.sources (id, persona_id, owner_id, kind, title, url, content_hash, chunk_count, bytes)
     values ($1, $2, $3, $4, $5, $6, $7, $8, $9)
     on conflict (id) do update set persona_id = excluded.persona_id, owner_id = excluded.owner_id, kind = excluded.kind,
       title = excluded.title, url = excluded.url, content_hash = excluded.content_hash,
       chunk_count = excluded.chunk_count, bytes = excluded.bytes`,
    { bind: [s.id, s.personaId, s.ownerId, s.kind, s.title, s.url, s.contentHash, s.chunkCount, s.bytes], transaction },
  );
}

/**
 * PgJobRepository keeps ingestion jobs in rag.ingest_jobs. A claim takes the row with
 * `FOR UPDATE SKIP LOCKED` and sets `locked_by`/`lease_until`; every later write of the attempt is
 * conditional on `locked_by` still naming the worker, so a worker whose lease was taken over can no
 * longer change the job.
 */
export class PgJobRepository implements JobRepository {
  constructor(
    private readonly sequelize: Sequelize,
    /** Told (after commit) when a completed job recorded its source: the persona's knowledge state changed (docs/decisions/0022). */
    private readonly onChange?: (personaId: string) => void,
  ) {}

  private select(sql: string, bind: unknown[], transaction?: Transaction): Promise<JobRow[]> {
    return this.sequelize.query<JobRow>(sql, { bind, type: QueryTypes.SELECT, transaction });
  }

  async create(job: NewJob): Promise<IngestJob> {
    const [row] = await this.select(
      `insert into rag.ingest_jobs (id, owner_id, persona_id, kind, title, source, text, content_hash)
       values ($1, $2, $3, $4, $5, $6, $7, $8) returning *`,
      [job.id, job.ownerId, job.personaId, job.kind, job.title, job.source, job.text, job.contentHash],
    );
    return toJob(row!);
  }

  async get(id: string): Promise<IngestJob | undefined> {
    const [row] = await this.select('select * from rag.ingest_jobs where id = $1', [id]);
    return row ? toJob(row) : undefined;
  }

  async listRunnable(limit: number): Promise<IngestJob[]> {
    // Without the text: the worker reads the whole row when it claims the job.
    const rows = await this.select(
      `select id, owner_id, persona_id, kind, title, source, '' as text, content_hash, status, chunks_done, chunks_total, error,
         source_id, attempts, stage, created_at, updated_at
       from rag.ingest_jobs where ${RUNNABLE} order by seq limit $1`,
      [Math.max(1, Math.floor(limit))],
    );
    return rows.map(toJob);
  }

  async claim(id: string, workerId: string, leaseMs: number): Promise<IngestJob | undefined> {
    const [row] = await this.select(
      `update rag.ingest_jobs set status = 'running', attempts = attempts + 1, error = '', locked_by = $2,
         lease_until = now() + make_interval(secs => $3::double precision / 1000), updated_at = now()
       where id = (
         select j.id from rag.ingest_jobs j
         where j.id = $1 and ${RUNNABLE}
           and not exists (
             select 1 from rag.ingest_jobs o
             where o.persona_id = j.persona_id and o.seq < j.seq and o.status in ('queued', 'running'))
         for update skip locked)
       returning *`,
      [id, workerId, leaseMs],
    );
    return row ? toJob(row) : undefined;
  }

  async heartbeat(id: string, workerId: string, leaseMs: number): Promise<boolean> {
    const rows = await this.select(
      `update rag.ingest_jobs set lease_until = now() + make_interval(secs => $3::double precision / 1000)
       where id = $1 and locked_by = $2 and status = 'running' returning id`,
      [id, workerId, leaseMs],
    );
    return rows.length > 0;
  }

  async progress(id: string, workerId: string, p: { stage: IngestStage; chunksDone: number; chunksTotal: number }): Promise<boolean> {
    const rows = await this.select(
      `update rag.ingest_jobs set stage = $3, chunks_done = $4, chunks_total = $5, updated_at = now()
       where id = $1 and locked_by = $2 and status = 'running' returning id`,
      [id, workerId, p.stage, p.chunksDone, p.chunksTotal],
    );
    return rows.length > 0;
  }

  async complete(id: string, workerId: string, source: KnowledgeSource): Promise<boolean> {
    const done = await this.sequelize.transaction(async (t) => {
      const rows = await this.select(
        `update rag.ingest_jobs set status = 'succeeded', stage = 'done', source_id = $3, chunks_done = $4, chunks_total = $4,
           error = '', locked_by = null, lease_until = null, updated_at = now()
         where id = $1 and locked_by = $2 and status = 'running' returning id`,
        [id, workerId, source.id, source.chunkCount],
        t,
      );
      if (rows.length === 0) return false;
      await insertSource(this.sequelize, source, t);
      return true;
    });
    if (done) this.onChange?.(source.personaId);
    return done;
  }

  async fail(id: string, workerId: string, error: string): Promise<void> {
    await this.sequelize.query(
      `update rag.ingest_jobs set status = 'failed', error = $3, locked_by = null, lease_until = null, updated_at = now()
       where id = $1 and locked_by = $2 and status = 'running'`,
      { bind: [id, workerId, error] },
    );
  }

  async requeue(id: string, workerId: string): Promise<void> {
    await this.sequelize.query(
      `update rag.ingest_jobs set status = 'queued', attempts = greatest(attempts - 1, 0), locked_by = null, lease_until = null, updated_at = now()
       where id = $1 and locked_by = $2 and status = 'running'`,
      { bind: [id, workerId] },
    );
  }

  async cancelPersona(personaId: string, error: string): Promise<string[]> {
    const rows = await this.select(
      `update rag.ingest_jobs set status = 'failed', error = $2, locked_by = null, lease_until = null, updated_at = now()
       where persona_id = $1 and status in ('queued', 'running') returning id`,
      [personaId, error],
    );
    return rows.map((r) => r.id);
  }

  async latestPending(personaId: string, kind: SourceKind): Promise<IngestJob | undefined> {
    const [row] = await this.select(
      `select * from rag.ingest_jobs where persona_id = $1 and kind = $2 and status in ('queued', 'running') order by seq desc limit 1`,
      [personaId, kind],
    );
    return row ? toJob(row) : undefined;
  }
}

/** PgSourceRepository keeps knowledge sources in rag.sources. */
export class PgSourceRepository implements SourceRepository {
  constructor(
    private readonly sequelize: Sequelize,
    /** Told after every write, with the persona whose sources changed (docs/decisions/0022). */
    private readonly onChange?: (personaId: string) => void,
  ) {}

  async listByPersona(personaId: string, kind?: SourceKind): Promise<KnowledgeSource[]> {
    const rows = kind
      ? await this.sequelize.query<SourceRow>('select * from rag.sources where persona_id = $1 and kind = $2 order by created_at, id', {
          bind: [personaId, kind],
          type: QueryTypes.SELECT,
        })
      : await this.sequelize.query<SourceRow>('select * from rag.sources where persona_id = $1 order by created_at, id', { bind: [personaId], type: QueryTypes.SELECT });
    return rows.map(toSource);
  }

  async save(s: KnowledgeSource): Promise<void> {
    await insertSource(this.sequelize, s);
    this.onChange?.(s.personaId);
  }

  async delete(ids: readonly string[]): Promise<void> {
    if (ids.length === 0) return;
    const rows = await this.sequelize.query<{ persona_id: string }>('delete from rag.sources where id = any($1::uuid[]) returning persona_id', { bind: [ids], type: QueryTypes.SELECT });
    for (const personaId of new Set(rows.map((r) => r.persona_id))) this.onChange?.(personaId);
  }

  async deleteByPersona(personaId: string): Promise<void> {
    await this.sequelize.query('delete from rag.sources where persona_id = $1', { bind: [personaId] });
    this.onChange?.(personaId);
  }

  async ownersOfPersona(personaId: string): Promise<string[]> {
    const rows = await this.sequelize.query<{ owner_id: string }>('select distinct owner_id from rag.sources where persona_id = $1', {
      bind: [personaId],
      type: QueryTypes.SELECT,
    });
    return rows.map((r) => r.owner_id);
  }
}
