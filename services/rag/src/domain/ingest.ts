import { randomUUID } from 'node:crypto';
import { AppError, isAppError } from '@chat/errors';
import type { Logger } from '@chat/logger';
import { chunkText } from './chunker.js';
import type { Embedder, JobRepository, SourceRepository, VectorStore } from './ports.js';
import type { IngestJob, KnowledgeSource, SourceKind, StoredChunk } from './types.js';
import { isUuid, requireId, sha256, stableUuid } from './validate.js';

/** Largest text one ingestion takes, in UTF-8 bytes. */
export const MAX_TEXT_BYTES = 5 * 1024 * 1024;
/** Longest title, in characters. */
export const MAX_TITLE_CHARS = 500;
/** Longest source (URL or label), in characters. */
export const MAX_SOURCE_CHARS = 2048;

/** IngestSettings tune the worker. */
export interface IngestSettings {
  chunkSize: number;
  chunkOverlap: number;
  embedBatchSize: number;
  /** Jobs of different personas that run at once. */
  concurrency: number;
  /** Attempts (including resumes after crashes) before a job is failed for good. */
  maxAttempts: number;
}

/** IngestRequest is a caller's request to ingest text. */
export interface IngestRequest {
  ownerId: string;
  personaId: string;
  text: string;
  title: string;
  source: string;
  kind: SourceKind;
}

/** IngestDeps are the ports the ingestion needs. */
export interface IngestDeps {
  jobs: JobRepository;
  sources: SourceRepository;
  store: VectorStore;
  embedder: Embedder;
  logger: Logger;
  settings: IngestSettings;
}

/** A small counting semaphore. */
class Slots {
  private free: number;
  private readonly waiting: Array<() => void> = [];
  constructor(n: number) {
    this.free = Math.max(1, n);
  }
  async acquire(): Promise<() => void> {
    if (this.free > 0) this.free--;
    else await new Promise<void>((r) => this.waiting.push(r));
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const next = this.waiting.shift();
      if (next) next();
      else this.free++;
    };
  }
}

/**
 * IngestService validates ingestion requests, stores them as jobs and runs them in-process:
 * chunk, embed in batches, upsert to the vector store, then record (or replace) the source.
 * Work on one persona (jobs and knowledge changes from persona events) runs one at a time, in
 * the order it was asked for; different personas run in parallel up to `concurrency`.
 */
export class IngestService {
  private readonly chains = new Map<string, Promise<void>>();
  private readonly slots: Slots;
  private stopping = false;

  constructor(private readonly deps: IngestDeps) {
    this.slots = new Slots(deps.settings.concurrency);
  }

  /** validate checks a request and returns it cleaned, or throws INVALID_ARGUMENT. */
  static validate(req: IngestRequest): IngestRequest {
    const ownerId = requireId('owner_id', req.ownerId);
    const personaId = requireId('persona_id', req.personaId);
    if (!req.text.trim()) throw AppError.invalid('text must not be empty', { text: 'must not be empty' });
    const bytes = Buffer.byteLength(req.text, 'utf8');
    if (bytes > MAX_TEXT_BYTES) throw AppError.tooLarge(`text is ${bytes} bytes; the limit is ${MAX_TEXT_BYTES} bytes`, MAX_TEXT_BYTES);
    const title = req.title.trim();
    if (title.length > MAX_TITLE_CHARS) throw AppError.invalid(`title must be at most ${MAX_TITLE_CHARS} characters`, { title: `must be at most ${MAX_TITLE_CHARS} characters` });
    const source = req.source.trim();
    if (source.length > MAX_SOURCE_CHARS) throw AppError.invalid(`source must be at most ${MAX_SOURCE_CHARS} characters`, { source: `must be at most ${MAX_SOURCE_CHARS} characters` });
    return { ownerId, personaId, text: req.text, title, source, kind: req.kind };
  }

  /** submit validates and queues an ingestion; it answers with the job id before any work is done. */
  async submit(req: IngestRequest): Promise<string> {
    const r = IngestService.validate(req);
    const job = await this.deps.jobs.create({
      id: randomUUID(),
      ownerId: r.ownerId,
      personaId: r.personaId,
      kind: r.kind,
      title: r.title,
      source: r.source,
      text: r.text,
      contentHash: sha256(r.text.trim()),
    });
    this.schedule(job);
    return job.id;
  }

  /** getJob returns a job of the owner; unknown ids and other owners' jobs are NOT_FOUND alike. */
  async getJob(ownerId: string, jobId: string): Promise<IngestJob> {
    const id = jobId.trim();
    if (!isUuid(id) || !ownerId.trim()) throw AppError.notFound('ingest job', jobId);
    const job = await this.deps.jobs.get(id.toLowerCase());
    if (!job || job.ownerId !== ownerId.trim()) throw AppError.notFound('ingest job', jobId);
    return job;
  }

  /** resume schedules jobs a previous run left queued or running. */
  async resume(): Promise<number> {
    const jobs = await this.deps.jobs.listUnfinished();
    for (const job of jobs) this.schedule(job);
    if (jobs.length) this.deps.logger.info('resuming unfinished ingest jobs', { count: jobs.length });
    return jobs.length;
  }

  /** exclusive runs fn after every earlier job or change of the same persona has finished. */
  exclusive<T>(personaId: string, fn: () => Promise<T>): Promise<T> {
    const prev = this.chains.get(personaId) ?? Promise.resolve();
    const result = prev.then(fn);
    const tail = result.then(
      () => undefined,
      () => undefined,
    );
    this.chains.set(personaId, tail);
    void tail.then(() => {
      if (this.chains.get(personaId) === tail) this.chains.delete(personaId);
    });
    return result;
  }

  /** schedule queues a stored job on its persona's chain. */
  schedule(job: Pick<IngestJob, 'id' | 'personaId'>): void {
    void this.exclusive(job.personaId, async () => {
      if (this.stopping) return;
      const release = await this.slots.acquire();
      try {
        await this.run(job.id);
      } finally {
        release();
      }
    }).catch((err: unknown) => this.deps.logger.error('ingest job crashed', { job_id: job.id, err }));
  }

  /** pending is how many personas have work queued or running. */
  get pending(): number {
    return this.chains.size;
  }

  /** idle resolves when no work is queued or running (for tests and draining). */
  async idle(): Promise<void> {
    while (this.chains.size > 0) await Promise.allSettled([...this.chains.values()]);
  }

  /** stop takes no new work, lets running jobs stop at their next batch, and waits up to boundMs. */
  async stop(boundMs: number): Promise<void> {
    this.stopping = true;
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<'timeout'>((r) => {
      timer = setTimeout(() => r('timeout'), boundMs);
    });
    const outcome = await Promise.race([this.idle().then(() => 'idle' as const), timeout]);
    clearTimeout(timer);
    if (outcome === 'timeout') this.deps.logger.warn('ingest jobs still running at stop; they resume at the next start', { personas: this.chains.size });
  }

  /** run does one job: claimed, chunked, embedded, stored; its row tells the outcome. */
  private async run(jobId: string): Promise<void> {
    const { jobs, sources, store, embedder, logger, settings } = this.deps;
    const job = await jobs.claim(jobId);
    if (!job) return;
    if (job.attempts > settings.maxAttempts) {
      await jobs.fail(job.id, `ingestion was given up after ${settings.maxAttempts} attempts`);
      return;
    }
    const started = Date.now();
    const sourceId = job.id;
    try {
      const chunks = chunkText(job.text, job.title, { chunkSize: settings.chunkSize, chunkOverlap: settings.chunkOverlap });
      if (chunks.length === 0) throw AppError.invalid('the text has no content to index');
      await jobs.progress(job.id, 0, chunks.length);
      // A resumed job may have left part of its chunks behind; start clean.
      if (job.attempts > 1) await store.deleteBySource(sourceId);
      const url = job.kind === 'URL' || /^https?:\/\//i.test(job.source) ? job.source : '';
      let done = 0;
      for (let i = 0; i < chunks.length; i += settings.embedBatchSize) {
        if (this.stopping) {
          await jobs.requeue(job.id);
          logger.info('ingest job interrupted by stop; it resumes at the next start', { job_id: job.id, chunks_done: done });
          return;
        }
        const batch = chunks.slice(i, i + settings.embedBatchSize);
        const vectors = await embedder.embed(batch.map((c) => (c.title ? `${c.title}\n${c.text}` : c.text)));
        const rows: StoredChunk[] = batch.map((c, k) => ({
          id: stableUuid(`${sourceId}:${c.index}`),
          personaId: job.personaId,
          sourceId,
          title: c.title,
          url,
          text: c.text,
          vector: vectors[k]!,
        }));
        await store.upsert(rows);
        done += batch.length;
        await jobs.progress(job.id, done, chunks.length);
      }

      // Record the source, then retire the sources it replaces: the persona's previous background,
      // or an earlier copy of the same text.
      const existing = await sources.listByPersona(job.personaId);
      const replaced = existing.filter(
        (s) => s.id !== sourceId && (job.kind === 'BACKGROUND' ? s.kind === 'BACKGROUND' : s.kind !== 'BACKGROUND' && s.contentHash === job.contentHash),
      );
      const source: KnowledgeSource = {
        id: sourceId,
        personaId: job.personaId,
        ownerId: job.ownerId,
        kind: job.kind,
        title: job.title,
        url,
        contentHash: job.contentHash,
        chunkCount: chunks.length,
        bytes: Buffer.byteLength(job.text, 'utf8'),
      };
      await sources.save(source);
      for (const old of replaced) {
        await store.deleteBySource(old.id);
        await sources.delete([old.id]);
      }
      await jobs.succeed(job.id, sourceId, chunks.length);
      logger.info('ingest job succeeded', { job_id: job.id, persona_id: job.personaId, kind: job.kind, chunks: chunks.length, replaced: replaced.length, ms: Date.now() - started });
    } catch (err) {
      const message = isAppError(err) ? err.message : err instanceof Error ? err.message : String(err);
      logger.warn('ingest job failed', { job_id: job.id, persona_id: job.personaId, err });
      await jobs.fail(job.id, `ingestion failed: ${message}`.slice(0, 1000)).catch((e: unknown) => logger.error('could not record a failed ingest job', { job_id: job.id, err: e }));
    }
  }

  /**
   * syncBackground makes a persona's background the given text: queued as a BACKGROUND job that
   * replaces the previous one, nothing when it is already (or about to be) that text, and removal
   * when the text is empty. Safe to call again with the same input.
   */
  async syncBackground(input: { ownerId: string; personaId: string; name: string; background: string }): Promise<'queued' | 'unchanged' | 'removed'> {
    const personaId = requireId('persona_id', input.personaId);
    const ownerId = requireId('owner_id', input.ownerId);
    const text = input.background.trim();
    if (!text) {
      const removed = await this.exclusive(personaId, () => this.removeSources(personaId, 'BACKGROUND'));
      return removed > 0 ? 'removed' : 'unchanged';
    }
    const hash = sha256(text);
    const pending = await this.deps.jobs.latestPending(personaId, 'BACKGROUND');
    if (pending) {
      if (pending.contentHash === hash) return 'unchanged';
    } else {
      const current = await this.deps.sources.listByPersona(personaId, 'BACKGROUND');
      if (current.length === 1 && current[0]!.contentHash === hash) return 'unchanged';
    }
    const name = input.name.trim() || 'this persona';
    await this.submitTrusted({ ownerId, personaId, text, title: `Background of ${name}`.slice(0, MAX_TITLE_CHARS), source: '', kind: 'BACKGROUND' });
    return 'queued';
  }

  /** deletePersona removes every chunk and source of a persona, after its queued work. */
  async deletePersona(personaId: string): Promise<void> {
    const id = requireId('persona_id', personaId);
    await this.exclusive(id, async () => {
      await this.deps.store.deleteByPersona(id);
      await this.deps.sources.deleteByPersona(id);
    });
  }

  /** submitTrusted queues a job without the caller-facing limits (background text is the persona's own). */
  private async submitTrusted(r: IngestRequest): Promise<string> {
    if (Buffer.byteLength(r.text, 'utf8') > MAX_TEXT_BYTES) throw AppError.tooLarge('background is too large', MAX_TEXT_BYTES);
    const job = await this.deps.jobs.create({ id: randomUUID(), ...r, contentHash: sha256(r.text.trim()) });
    this.schedule(job);
    return job.id;
  }

  /** removeSources deletes a persona's sources of one kind, chunks first. */
  private async removeSources(personaId: string, kind: SourceKind): Promise<number> {
    const list = await this.deps.sources.listByPersona(personaId, kind);
    for (const s of list) {
      await this.deps.store.deleteBySource(s.id);
      await this.deps.sources.delete([s.id]);
    }
    return list.length;
  }
}
