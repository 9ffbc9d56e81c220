import { QueryTypes, type Sequelize } from '@chat/db';
import type { ReembedJobRepository, SpaceRepository } from '../../domain/ports.js';
import type { EmbeddingSpace, JobStatus, ReembedJob } from '../../domain/types.js';

interface SpaceRow {
  id: string;
  persona_id: string;
  owner_id: string;
  provider: 'local' | 'openai';
  model: string;
  base_url: string;
  dimensions: number;
  state: EmbeddingSpace['state'];
  created_at: Date;
  activated_at: Date | null;
}

interface ReembedRow {
  id: string;
  owner_id: string;
  persona_id: string;
  status: JobStatus;
  target_space_id: string;
  model: string;
  chunks_done: number;
  chunks_total: number;
  error: string;
  created_at: Date;
  updated_at: Date;
}

function toSpace(r: SpaceRow): EmbeddingSpace {
  return {
    id: r.id,
    personaId: r.persona_id,
    ownerId: r.owner_id,
    provider: r.provider,
    model: r.model,
    baseUrl: r.base_url,
    dimensions: Number(r.dimensions),
    state: r.state,
    createdAt: new Date(r.created_at),
    ...(r.activated_at ? { activatedAt: new Date(r.activated_at) } : {}),
  };
}

function toJob(r: ReembedRow): ReembedJob {
  return {
    id: r.id,
    ownerId: r.owner_id,
    personaId: r.persona_id,
    status: r.status,
    targetSpaceId: r.target_space_id,
    model: r.model,
    chunksDone: Number(r.chunks_done),
    chunksTotal: Number(r.chunks_total),
    error: r.error,
    createdAt: new Date(r.created_at),
    updatedAt: new Date(r.updated_at),
  };
}

/** PgSpaceRepository keeps embedding spaces in rag.embedding_spaces (at most one active per persona, by a unique index). */
export class PgSpaceRepository implements SpaceRepository {
  constructor(
    private readonly sequelize: Sequelize,
    /** Told after every write (after commit), with the persona whose spaces changed (docs/decisions/0022). */
    private readonly onChange?: (personaId: string) => void,
  ) {}

  private select(sql: string, bind: unknown[]): Promise<SpaceRow[]> {
    return this.sequelize.query<SpaceRow>(sql, { bind, type: QueryTypes.SELECT });
  }

  async active(personaId: string): Promise<EmbeddingSpace | undefined> {
    const [row] = await this.select(`select * from rag.embedding_spaces where persona_id = $1 and state = 'active'`, [personaId]);
    return row ? toSpace(row) : undefined;
  }

  async list(personaId: string): Promise<EmbeddingSpace[]> {
    return (await this.select('select * from rag.embedding_spaces where persona_id = $1 order by created_at, id', [personaId])).map(toSpace);
  }

  async create(s: Omit<EmbeddingSpace, 'createdAt' | 'activatedAt'>): Promise<EmbeddingSpace | undefined> {
    // A second active space of a persona hits the partial unique index and inserts nothing.
    const [row] = await this.select(
      `insert into rag.embedding_spaces (id, persona_id, owner_id, provider, model, base_url, dimensions, state, activated_at)
       values ($1, $2, $3, $4, $5, $6, $7, $8, case when $8 = 'active' then now() end)
       on conflict do nothing returning *`,
      [s.id, s.personaId, s.ownerId, s.provider, s.model, s.baseUrl, s.dimensions, s.state],
    );
    if (row) this.onChange?.(s.personaId);
    return row ? toSpace(row) : undefined;
  }

  async activate(spaceId: string): Promise<EmbeddingSpace | undefined> {
    let personaId: string | undefined;
    const retired = await this.sequelize.transaction(async (transaction) => {
      const [target] = await this.sequelize.query<SpaceRow>(`select * from rag.embedding_spaces where id = $1 for update`, { bind: [spaceId], type: QueryTypes.SELECT, transaction });
      if (!target) throw new Error(`embedding space ${spaceId} does not exist`);
      if (target.state === 'active') return undefined;
      personaId = target.persona_id;
      const retired = await this.sequelize.query<SpaceRow>(
        `update rag.embedding_spaces set state = 'retired' where persona_id = $1 and state = 'active' returning *`,
        { bind: [target.persona_id], type: QueryTypes.SELECT, transaction },
      );
      await this.sequelize.query(`update rag.embedding_spaces set state = 'active', activated_at = now() where id = $1`, { bind: [spaceId], transaction });
      return retired[0] ? toSpace(retired[0]) : undefined;
    });
    if (personaId) this.onChange?.(personaId);
    return retired;
  }

  async delete(spaceId: string): Promise<void> {
    const rows = await this.select('delete from rag.embedding_spaces where id = $1 returning *', [spaceId]);
    for (const r of rows) this.onChange?.(r.persona_id);
  }

  async deleteByPersona(personaId: string): Promise<void> {
    await this.sequelize.query('delete from rag.embedding_spaces where persona_id = $1', { bind: [personaId] });
    this.onChange?.(personaId);
  }
}

/** PgReembedJobRepository keeps re-embed jobs in rag.reembed_jobs (at most one pending per persona). */
export class PgReembedJobRepository implements ReembedJobRepository {
  constructor(private readonly sequelize: Sequelize) {}

  private select(sql: string, bind: unknown[]): Promise<ReembedRow[]> {
    return this.sequelize.query<ReembedRow>(sql, { bind, type: QueryTypes.SELECT });
  }

  async create(job: Pick<ReembedJob, 'id' | 'ownerId' | 'personaId' | 'model'>): Promise<ReembedJob> {
    const [row] = await this.select(
      `insert into rag.reembed_jobs (id, owner_id, persona_id, model) values ($1, $2, $3, $4) on conflict do nothing returning *`,
      [job.id, job.ownerId, job.personaId, job.model],
    );
    if (row) return toJob(row);
    // A concurrent request queued one first: that is the job.
    const pending = await this.pendingOf(job.personaId);
    if (!pending) throw new Error('could not create the re-embed job');
    return pending;
  }

  async get(id: string): Promise<ReembedJob | undefined> {
    const [row] = await this.select('select * from rag.reembed_jobs where id = $1', [id]);
    return row ? toJob(row) : undefined;
  }

  async pendingOf(personaId: string): Promise<ReembedJob | undefined> {
    const [row] = await this.select(`select * from rag.reembed_jobs where persona_id = $1 and status in ('queued', 'running') limit 1`, [personaId]);
    return row ? toJob(row) : undefined;
  }

  async listUnfinished(): Promise<ReembedJob[]> {
    return (await this.select(`select * from rag.reembed_jobs where status in ('queued', 'running') order by created_at, id`, [])).map(toJob);
  }

  async claim(id: string): Promise<ReembedJob | undefined> {
    const [row] = await this.select(
      `update rag.reembed_jobs set status = 'running', error = '', updated_at = now() where id = $1 and status in ('queued', 'running') returning *`,
      [id],
    );
    return row ? toJob(row) : undefined;
  }

  async progress(id: string, v: { chunksDone: number; chunksTotal: number; targetSpaceId?: string; model?: string }): Promise<void> {
    await this.sequelize.query(
      `update rag.reembed_jobs set chunks_done = $2, chunks_total = $3, target_space_id = coalesce($4, target_space_id), model = coalesce($5, model), updated_at = now() where id = $1`,
      { bind: [id, v.chunksDone, v.chunksTotal, v.targetSpaceId ?? null, v.model ?? null] },
    );
  }

  async finish(id: string, status: 'succeeded' | 'failed', error = ''): Promise<void> {
    await this.sequelize.query(
      `update rag.reembed_jobs set status = $2, error = $3, chunks_done = case when $2 = 'succeeded' then chunks_total else chunks_done end, updated_at = now() where id = $1`,
      { bind: [id, status, error] },
    );
  }
}
