import { QueryTypes, type Sequelize } from '@chat/db';
import type { JobRepository, SourceRepository } from '../../domain/ports.js';
import type { IngestJob, JobStatus, KnowledgeSource, NewJob, SourceKind } from '../../domain/types.js';

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

/** PgJobRepository keeps ingestion jobs in rag.ingest_jobs. */
export class PgJobRepository implements JobRepository {
  constructor(private readonly sequelize: Sequelize) {}

  private select(sql: string, bind: unknown[]): Promise<JobRow[]> {
    return this.sequelize.query<JobRow>(sql, { bind, type: QueryTypes.SELECT });
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

  async listUnfinished(): Promise<IngestJob[]> {
    const rows = await this.select(`select * from rag.ingest_jobs where status in ('queued', 'running') order by created_at, id`, []);
    return rows.map(toJob);
  }

  async claim(id: string): Promise<IngestJob | undefined> {
    const [row] = await this.select(
      `update rag.ingest_jobs set status = 'running', attempts = attempts + 1, error = '', updated_at = now()
       where id = $1 and status in ('queued', 'running') returning *`,
      [id],
    );
    return row ? toJob(row) : undefined;
  }

  async progress(id: string, chunksDone: number, chunksTotal: number): Promise<void> {
    await this.sequelize.query('update rag.ingest_jobs set chunks_done = $2, chunks_total = $3, updated_at = now() where id = $1', { bind: [id, chunksDone, chunksTotal] });
  }

  async succeed(id: string, sourceId: string, chunksTotal: number): Promise<void> {
    await this.sequelize.query(
      `update rag.ingest_jobs set status = 'succeeded', source_id = $2, chunks_done = $3, chunks_total = $3, error = '', updated_at = now() where id = $1`,
      { bind: [id, sourceId, chunksTotal] },
    );
  }

  async fail(id: string, error: string): Promise<void> {
    await this.sequelize.query(`update rag.ingest_jobs set status = 'failed', error = $2, updated_at = now() where id = $1`, { bind: [id, error] });
  }

  async requeue(id: string): Promise<void> {
    await this.sequelize.query(`update rag.ingest_jobs set status = 'queued', updated_at = now() where id = $1 and status = 'running'`, { bind: [id] });
  }

  async latestPending(personaId: string, kind: SourceKind): Promise<IngestJob | undefined> {
    const [row] = await this.select(
      `select * from rag.ingest_jobs where persona_id = $1 and kind = $2 and status in ('queued', 'running') order by created_at desc, id desc limit 1`,
      [personaId, kind],
    );
    return row ? toJob(row) : undefined;
  }
}

/** PgSourceRepository keeps knowledge sources in rag.sources. */
export class PgSourceRepository implements SourceRepository {
  constructor(private readonly sequelize: Sequelize) {}

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
    await this.sequelize.query(
      `insert into rag.sources (id, persona_id, owner_id, kind, title, url, content_hash, chunk_count, bytes)
       values ($1, $2, $3, $4, $5, $6, $7, $8, $9)
       on conflict (id) do update set persona_id = excluded.persona_id, owner_id = excluded.owner_id, kind = excluded.kind,
         title = excluded.title, url = excluded.url, content_hash = excluded.content_hash,
         chunk_count = excluded.chunk_count, bytes = excluded.bytes`,
      { bind: [s.id, s.personaId, s.ownerId, s.kind, s.title, s.url, s.contentHash, s.chunkCount, s.bytes] },
    );
  }

  async delete(ids: readonly string[]): Promise<void> {
    if (ids.length === 0) return;
    await this.sequelize.query('delete from rag.sources where id = any($1::uuid[])', { bind: [ids] });
  }

  async deleteByPersona(personaId: string): Promise<void> {
    await this.sequelize.query('delete from rag.sources where persona_id = $1', { bind: [personaId] });
  }

  async ownersOfPersona(personaId: string): Promise<string[]> {
    const rows = await this.sequelize.query<{ owner_id: string }>('select distinct owner_id from rag.sources where persona_id = $1', {
      bind: [personaId],
      type: QueryTypes.SELECT,
    });
    return rows.map((r) => r.owner_id);
  }
}
