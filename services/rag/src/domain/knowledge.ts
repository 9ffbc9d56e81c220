import { randomUUID } from 'node:crypto';
import { AppError, isAppError } from '@chat/errors';
import type { Logger } from '@chat/logger';
import type { Embedder, ReembedJobRepository, SourceRepository, SpaceRepository } from './ports.js';
import { sameSpec, type KnowledgeIndex } from './spaces.js';
import type { EmbeddingSpace, KnowledgeSource, KnowledgeStats, ReembedJob, StoredChunk } from './types.js';
import { isUuid, requireId } from './validate.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** KnowledgeDeps are what knowledge management needs. */
export interface KnowledgeDeps {
  index: KnowledgeIndex;
  sources: SourceRepository;
  spaces: SpaceRepository;
  jobs: ReembedJobRepository;
  /** Runs fn after every earlier job or change of the persona (IngestService.exclusive): re-embeds never overlap an ingestion. */
  serialize: <T>(personaId: string, fn: () => Promise<T>) => Promise<T>;
  logger: Logger;
  /** Texts per embedding request of a re-embed. */
  batchSize: number;
}

/**
 * KnowledgeService manages a persona's knowledge: stats, sources, deletion, purge and re-embedding.
 *
 * A re-embed builds a new embedding space beside the active one (same chunks, vectors of the
 * model the persona's profile names now), then switches the persona to it in one transaction and
 * only then removes the old vectors: retrieval reads the old space until the switch and the new
 * one after it, so it is never empty in between. It runs on the persona's work chain, after and
 * before any ingestion of the persona, so no chunk is written to the old space while it copies.
 */
export class KnowledgeService {
  private stopping = false;
  private readonly running = new Set<Promise<unknown>>();

  constructor(private readonly deps: KnowledgeDeps) {}

  /** owned checks that the persona's knowledge (if any) is the owner's; another owner's is NOT_FOUND. */
  private async owned(ownerId: string, personaId: string): Promise<{ ownerId: string; personaId: string }> {
    const o = requireId('owner_id', ownerId);
    const p = requireId('persona_id', personaId);
    const owners = await this.deps.sources.ownersOfPersona(p);
    const space = await this.deps.spaces.active(p);
    if ((owners.length > 0 && !owners.includes(o)) || (space && space.ownerId !== o)) throw AppError.notFound('persona', personaId);
    return { ownerId: o, personaId: p };
  }

  async stats(ownerId: string, personaId: string): Promise<{ stats: KnowledgeStats; sources: KnowledgeSource[] }> {
    const { ownerId: o, personaId: p } = await this.owned(ownerId, personaId);
    const sources = await this.deps.sources.listByPersona(p);
    const space = await this.deps.spaces.active(p);
    const pending = await this.deps.jobs.pendingOf(p);
    let configured = '';
    try {
      configured = (await this.deps.index.deps.profiles.configured(o, p)).spec.model;
    } catch (err) {
      // An unusable profile still lets the stats show; the configured model is then unknown.
      this.deps.logger.debug('configured embedding model unknown', { persona_id: p, err });
    }
    const times = [...sources.map((s) => s.createdAt?.getTime() ?? 0), space?.activatedAt?.getTime() ?? 0].filter((t) => t > 0);
    return {
      sources,
      stats: {
        sources: sources.length,
        chunks: sources.reduce((n, s) => n + s.chunkCount, 0),
        bytes: sources.reduce((n, s) => n + s.bytes, 0),
        embeddingModel: space?.model ?? '',
        embeddingDimensions: space?.dimensions ?? 0,
        configuredEmbeddingModel: configured,
        ...(times.length ? { lastUpdate: new Date(Math.max(...times)) } : {}),
        reembedJobId: pending?.id ?? '',
      },
    };
  }

  /** deleteSource removes one source and its chunks; unknown, foreign or other personas' sources are NOT_FOUND. */
  async deleteSource(ownerId: string, personaId: string, sourceId: string): Promise<void> {
    const { personaId: p } = await this.owned(ownerId, personaId);
    const id = sourceId.trim().toLowerCase();
    if (!isUuid(id)) throw AppError.notFound('source', sourceId);
    await this.deps.serialize(p, async () => {
      const source = (await this.deps.sources.listByPersona(p)).find((s) => s.id === id);
      if (!source || source.ownerId !== ownerId.trim()) throw AppError.notFound('source', sourceId);
      await this.deps.index.deleteBySource(id);
      await this.deps.sources.delete([id]);
    });
  }

  /** purge removes every source, chunk and embedding space of the persona (new knowledge starts a new space). */
  async purge(ownerId: string, personaId: string): Promise<void> {
    const { personaId: p } = await this.owned(ownerId, personaId);
    await this.deps.serialize(p, async () => {
      await this.deps.index.deleteByPersona(p);
      await this.deps.sources.deleteByPersona(p);
    });
  }

  /** reembed queues a re-embed of the persona's knowledge with the model its profile names now; a pending one is returned instead of a second. */
  async reembed(ownerId: string, personaId: string): Promise<string> {
    const { ownerId: o, personaId: p } = await this.owned(ownerId, personaId);
    const pending = await this.deps.jobs.pendingOf(p);
    if (pending) return pending.id;
    let model = '';
    try {
      model = (await this.deps.index.deps.profiles.configured(o, p)).spec.model;
    } catch (err) {
      // The job fails with the reason when it runs.
      this.deps.logger.debug('configured embedding model unknown', { persona_id: p, err });
    }
    const job = await this.deps.jobs.create({ id: randomUUID(), ownerId: o, personaId: p, model });
    this.schedule(job);
    return job.id;
  }

  /**
   * reconcile queues a re-embed when the persona's profile now names another embedding model than
   * the one its knowledge is embedded with (after a persona or profile change). Nothing happens
   * without knowledge, with a re-embed already pending, or when the profile cannot be resolved.
   */
  async reconcile(personaId: string): Promise<string | undefined> {
    const active = await this.deps.spaces.active(personaId);
    if (!active) return undefined;
    const pending = await this.deps.jobs.pendingOf(personaId);
    if (pending) return pending.id;
    let configured;
    try {
      configured = (await this.deps.index.deps.profiles.configured(active.ownerId, personaId)).spec;
    } catch (err) {
      this.deps.logger.debug('embedding model of the profile unknown; no re-embed', { persona_id: personaId, err });
      return undefined;
    }
    if (sameSpec(active, configured)) return undefined;
    const job = await this.deps.jobs.create({ id: randomUUID(), ownerId: active.ownerId, personaId, model: configured.model });
    this.deps.logger.info('the embedding model changed; re-embedding', { persona_id: personaId, job_id: job.id, from: active.model, to: configured.model });
    this.schedule(job);
    return job.id;
  }

  /** getJob returns a re-embed job of the owner; unknown and foreign ids are NOT_FOUND. */
  async getJob(ownerId: string, jobId: string): Promise<ReembedJob> {
    const id = jobId.trim().toLowerCase();
    if (!isUuid(id)) throw AppError.notFound('job', jobId);
    const job = await this.deps.jobs.get(id);
    if (!job || job.ownerId !== ownerId.trim()) throw AppError.notFound('job', jobId);
    return job;
  }

  /** resume schedules re-embeds a previous run left queued or running. */
  async resume(): Promise<number> {
    const jobs = await this.deps.jobs.listUnfinished();
    for (const job of jobs) this.schedule(job);
    if (jobs.length) this.deps.logger.info('resuming unfinished re-embed jobs', { count: jobs.length });
    return jobs.length;
  }

  /** stop lets running re-embeds stop at their next batch (they resume at the next start) and waits for them, up to boundMs. */
  async stop(boundMs: number): Promise<void> {
    this.stopping = true;
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([Promise.allSettled([...this.running]), new Promise((r) => (timer = setTimeout(r, boundMs)))]);
    clearTimeout(timer);
  }

  /** idle resolves when no re-embed is running (for tests). */
  async idle(): Promise<void> {
    while (this.running.size > 0) await Promise.allSettled([...this.running]);
  }

  private schedule(job: Pick<ReembedJob, 'id' | 'personaId'>): void {
    const run = this.deps
      .serialize(job.personaId, () => (this.stopping ? Promise.resolve() : this.run(job.id)))
      .catch((err: unknown) => this.deps.logger.error('re-embed job crashed', { job_id: job.id, err }));
    this.running.add(run);
    void run.finally(() => this.running.delete(run));
  }

  private async run(jobId: string): Promise<void> {
    const { jobs, spaces, sources, index, logger } = this.deps;
    const job = await jobs.claim(jobId);
    if (!job) return;
    const started = Date.now();
    // What an interrupted run left half built goes first.
    for (const s of await spaces.list(job.personaId)) {
      if (s.state === 'building' || s.state === 'retired') await this.dropSpace(s);
    }
    const active = await spaces.active(job.personaId);
    if (!active) {
      await jobs.finish(job.id, 'succeeded');
      logger.info('re-embed: nothing to do (no knowledge)', { job_id: job.id, persona_id: job.personaId });
      return;
    }
    let target: EmbeddingSpace | undefined;
    try {
      const built = await index.newSpace(job.ownerId, job.personaId, 'building');
      target = built.space;
      if (!target) throw new Error('could not record the new embedding space');
      const list = await sources.listByPersona(job.personaId);
      const total = list.reduce((n, s) => n + s.chunkCount, 0);
      await jobs.progress(job.id, { chunksDone: 0, chunksTotal: total, targetSpaceId: target.id, model: target.model });
      const progress = { done: 0, total };
      const copied = new Set<string>();
      // Sources that arrive while the copy runs (another rag replica's ingestion; this replica's
      // waits on the persona's chain) are copied by up to three catch-up passes before the switch.
      let pending = list;
      for (let pass = 0; pass < 4 && pending.length > 0; pass++) {
        for (const source of pending) {
          copied.add(source.id);
          if (!(await this.copySource(job, source.id, active, target, built.embedder, progress))) return;
        }
        pending = (await sources.listByPersona(job.personaId)).filter((s) => !copied.has(s.id));
      }
      // Readers elsewhere (another rag replica on Milvus at Bounded consistency) may lag the
      // writes: the switch waits until they see the whole new space, and the old space goes only
      // once no reader can still be on its way to it.
      const settle = index.store.settleMs ?? 0;
      if (settle > 0) await sleep(settle);
      // The switch: one transaction makes the new space active and retires the old one.
      const retired = await spaces.activate(target.id);
      target = undefined;
      if (retired) {
        if (settle > 0) await sleep(settle);
        await this.dropSpace(retired);
      }
      await jobs.finish(job.id, 'succeeded');
      logger.info('re-embed succeeded', { job_id: job.id, persona_id: job.personaId, from: active.model, to: built.embedder.name, chunks: progress.done, ms: Date.now() - started });
    } catch (err) {
      const message = isAppError(err) ? err.message : err instanceof Error ? err.message : String(err);
      logger.warn('re-embed failed; the persona keeps its current embeddings', { job_id: job.id, persona_id: job.personaId, err });
      if (target) await this.dropSpace(target).catch((e: unknown) => logger.warn('could not remove a half-built embedding space', { space_id: target?.id, err: e }));
      await jobs.finish(job.id, 'failed', `re-embedding failed: ${message}`.slice(0, 1000));
    }
  }

  /** copySource embeds one source's chunks into the target space; false when a stop interrupted it. */
  private async copySource(job: ReembedJob, sourceId: string, from: EmbeddingSpace, to: EmbeddingSpace, embedder: Embedder, progress: { done: number; total: number }): Promise<boolean> {
    const chunks = await this.deps.index.store.chunksOfSource(from, sourceId);
    for (let i = 0; i < chunks.length; i += this.deps.batchSize) {
      if (this.stopping) {
        this.deps.logger.info('re-embed interrupted by stop; it starts again at the next start', { job_id: job.id, chunks_done: progress.done });
        return false;
      }
      const batch = chunks.slice(i, i + this.deps.batchSize);
      const vectors = await embedder.embed(batch.map((c) => (c.title ? `${c.title}\n${c.text}` : c.text)));
      if (vectors.length !== batch.length) throw new Error(`the embedder returned ${vectors.length} vectors for ${batch.length} texts`);
      const rows: StoredChunk[] = batch.map((c, k) => ({ ...c, vector: vectors[k]! }));
      await this.deps.index.store.upsert(to, rows);
      progress.done += batch.length;
      await this.deps.jobs.progress(job.id, { chunksDone: progress.done, chunksTotal: Math.max(progress.total, progress.done) });
    }
    return true;
  }

  private async dropSpace(space: EmbeddingSpace): Promise<void> {
    await this.deps.index.store.deleteSpace(space);
    await this.deps.spaces.delete(space.id);
  }
}
