import { hostname } from 'node:os';
import { randomUUID } from 'node:crypto';
import { AppError, isAppError } from '@chat/errors';
import type { Logger } from '@chat/logger';
import { chunkText, embeddingInput } from './chunker.js';
import type { JobRepository, KnowledgeWriter, PersonaLocks, SourceRepository } from './ports.js';
import type { IngestJob, IngestStage, KnowledgeSource, SourceKind, StoredChunk } from './types.js';
import { isUuid, looksBinary, requireId, sha256, stableUuid } from './validate.js';

/** Largest text one ingestion takes, in UTF-8 bytes (also the largest text extracted from a URL). */
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
  /** How long a claimed job stays this worker's without a heartbeat (default 30 s). */
  leaseMs?: number;
  /** How often unclaimed and abandoned jobs are looked for (0 or unset: only at resume). */
  sweepMs?: number;
  /** Longest one attempt may run before it is abandoned (default 10 min). */
  attemptTimeoutMs?: number;
  /** Extra tries of a fetch that failed transiently (connection refused, 5xx, timeouts), within one attempt. */
  fetchRetries?: number;
  /** Wait before the first fetch retry; doubles for each next one. */
  fetchRetryDelayMs?: number;
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

/** UrlIngestRequest is a caller's request to ingest the document at a URL. */
export interface UrlIngestRequest {
  ownerId: string;
  personaId: string;
  url: string;
  title: string;
}

/** LoadedResource is a fetched document before its text is extracted. */
export interface LoadedResource {
  /** The final URL, after redirects. */
  url: string;
  contentType: string;
  bytes: number;
}

/**
 * UrlLoader fetches and reads documents for URL ingestion (implemented by the SSRF-safe fetcher in
 * src/fetch). Its errors carry `transient: true` when the same fetch may succeed later.
 */
export interface UrlLoader<R extends LoadedResource = LoadedResource> {
  /** check validates a URL before a job is queued (syntax, scheme, literal addresses) and returns it normalised; INVALID_ARGUMENT otherwise. */
  check(url: string): string;
  fetch(url: string, signal: AbortSignal): Promise<R>;
  extract(resource: R): Promise<{ title: string; text: string }>;
}

/** IngestDeps are the ports the ingestion needs. */
export interface IngestDeps {
  jobs: JobRepository;
  sources: SourceRepository;
  /** Where chunks go: the persona's active embedding space, with that space's embedder. */
  store: KnowledgeWriter;
  /** Fetches URL jobs' documents; without it URL ingestion is refused. */
  loader?: UrlLoader;
  logger: Logger;
  settings: IngestSettings;
  /** This worker's name in job leases (default host:pid:random). */
  workerId?: string;
  /** Cross-process locks per persona taken by `exclusive` (PostgreSQL advisory locks); without them only this process is ordered. */
  locks?: PersonaLocks;
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

/** Interrupted ends an attempt without failing the job: the worker stops, or its lease went to another worker. */
class Interrupted extends Error {
  constructor(readonly why: 'stopping' | 'lease_lost') {
    super(why === 'stopping' ? 'the worker is stopping' : 'the job lease was lost to another worker');
  }
}

/** AttemptTimeout ends an attempt that ran longer than attemptTimeoutMs. */
class AttemptTimeout extends Error {}

/** StageFailure is a failure of one stage, with the message the job reports. */
class StageFailure extends Error {
  constructor(
    readonly stage: IngestStage,
    message: string,
  ) {
    super(message);
  }
}

function messageOf(err: unknown): string {
  return isAppError(err) ? err.message : err instanceof Error ? err.message : String(err);
}

/** isTransient says whether a failure may go away by trying again (the fetcher marks its errors). */
export function isTransient(err: unknown): boolean {
  return typeof err === 'object' && err !== null && (err as { transient?: unknown }).transient === true;
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal.aborted) {
      reject(signal.reason);
      return;
    }
    const timer = setTimeout(() => {
      signal.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal.reason);
    };
    signal.addEventListener('abort', onAbort, { once: true });
  });
}

/**
 * IngestService validates ingestion requests, stores them as jobs and runs them:
 * fetch → extract (URL jobs) → chunk → embed (batched) → upsert, then records (or replaces) the
 * source. Each stage shows in the job's `stage` and progress; a failure names its stage.
 *
 * Jobs are claimed with a lease (PostgreSQL `FOR UPDATE SKIP LOCKED`), kept alive by a heartbeat:
 * two replicas never run one job at once, and a crashed replica's job is taken over when its lease
 * runs out (a sweep looks for such jobs, and for queued jobs no process has taken). Attempts are
 * bounded. A job that fails — or is given up — removes every chunk it wrote, so nothing partial
 * stays in the store; a resumed job starts its writes clean.
 *
 * Work on one persona (jobs and knowledge changes from persona events) runs one at a time, in the
 * order it was asked for (a job is claimed only when it is its persona's oldest unfinished one);
 * different personas run in parallel up to `concurrency`.
 */
export class IngestService {
  private readonly chains = new Map<string, Promise<void>>();
  private readonly scheduled = new Set<string>();
  private readonly slots: Slots;
  private readonly workerId: string;
  private readonly stopController = new AbortController();
  private sweepTimer: NodeJS.Timeout | undefined;
  private sweeping = false;

  constructor(private readonly deps: IngestDeps) {
    this.slots = new Slots(deps.settings.concurrency);
    this.workerId = deps.workerId ?? `${hostname()}:${process.pid}:${randomUUID().slice(0, 8)}`;
  }

  private get stopping(): boolean {
    return this.stopController.signal.aborted;
  }

  private get leaseMs(): number {
    return this.deps.settings.leaseMs ?? 30_000;
  }

  /** validate checks a request and returns it cleaned, or throws INVALID_ARGUMENT. */
  static validate(req: IngestRequest): IngestRequest {
    const ownerId = requireId('owner_id', req.ownerId);
    const personaId = requireId('persona_id', req.personaId);
    if (!req.text.trim()) throw AppError.invalid('text must not be empty', { text: 'must not be empty' });
    const bytes = Buffer.byteLength(req.text, 'utf8');
    if (bytes > MAX_TEXT_BYTES) throw AppError.tooLarge(`text is ${bytes} bytes; the limit is ${MAX_TEXT_BYTES} bytes`, MAX_TEXT_BYTES);
    if (looksBinary(req.text)) throw AppError.invalid('text looks like binary content, not text', { text: 'must be text (no NUL bytes, few control characters)' });
    const title = validTitle(req.title);
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
      // Text given by the caller is never fetched: a URL it names is only its label.
      kind: r.kind === 'URL' ? 'TEXT' : r.kind,
      title: r.title,
      source: r.source,
      text: r.text,
      contentHash: sha256(r.text.trim()),
    });
    this.schedule(job);
    return job.id;
  }

  /** submitUrl validates a URL (syntax, scheme, literal addresses) and queues a job that fetches it. */
  async submitUrl(req: UrlIngestRequest): Promise<string> {
    const ownerId = requireId('owner_id', req.ownerId);
    const personaId = requireId('persona_id', req.personaId);
    const raw = req.url.trim();
    if (!raw) throw AppError.invalid('url is required', { url: 'is required' });
    if (raw.length > MAX_SOURCE_CHARS) throw AppError.invalid(`url must be at most ${MAX_SOURCE_CHARS} characters`, { url: `must be at most ${MAX_SOURCE_CHARS} characters` });
    if (!this.deps.loader) throw AppError.invalid('URL ingestion is not available in this deployment', { url: 'URL ingestion is not configured' });
    const url = this.deps.loader.check(raw);
    const title = validTitle(req.title);
    const job = await this.deps.jobs.create({ id: randomUUID(), ownerId, personaId, kind: 'URL', title, source: url, text: '', contentHash: '' });
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

  /**
   * resume schedules the jobs no live worker holds (queued ones, and running ones whose lease ran
   * out: a crashed process's), then keeps sweeping for them every `sweepMs`.
   */
  async resume(): Promise<number> {
    const n = await this.sweep();
    if (n) this.deps.logger.info('resuming unfinished ingest jobs', { count: n });
    const every = this.deps.settings.sweepMs ?? 0;
    if (every > 0 && !this.sweepTimer && !this.stopping) {
      this.sweepTimer = setInterval(() => {
        void this.sweep().catch((err: unknown) => this.deps.logger.warn('ingest job sweep failed', { err }));
      }, every);
      this.sweepTimer.unref();
    }
    return n;
  }

  /** sweep schedules every runnable job this process does not already have queued; returns how many. */
  async sweep(): Promise<number> {
    if (this.sweeping || this.stopping) return 0;
    this.sweeping = true;
    try {
      const jobs = await this.deps.jobs.listRunnable(500);
      let n = 0;
      for (const job of jobs) {
        if (this.scheduled.has(job.id)) continue;
        this.schedule(job);
        n++;
      }
      return n;
    } finally {
      this.sweeping = false;
    }
  }

  /**
   * exclusive runs fn after every earlier job or change of the same persona has finished, holding
   * the persona's cross-process lock (deps.locks) while it runs: ingestion, deletions and the
   * re-embed copy and switch of one persona never overlap, on any replica.
   */
  exclusive<T>(personaId: string, fn: () => Promise<T>): Promise<T> {
    const prev = this.chains.get(personaId) ?? Promise.resolve();
    const locks = this.deps.locks;
    const result = prev.then(() => (locks ? locks.withLock(personaId, fn) : fn()));
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
    if (this.scheduled.has(job.id)) return;
    this.scheduled.add(job.id);
    void this.exclusive(job.personaId, async () => {
      if (this.stopping) return;
      const release = await this.slots.acquire();
      try {
        await this.run(job.id);
      } finally {
        release();
      }
    })
      .catch((err: unknown) =>
        // Stopping while waiting for the persona's lock: the job stays queued for the next worker.
        this.stopping ? this.deps.logger.debug('ingest job left queued at stop', { job_id: job.id, err }) : this.deps.logger.error('ingest job crashed', { job_id: job.id, err }),
      )
      .finally(() => this.scheduled.delete(job.id));
  }

  /** pending is how many personas have work queued or running. */
  get pending(): number {
    return this.chains.size;
  }

  /** idle resolves when no work is queued or running (for tests and draining). */
  async idle(): Promise<void> {
    while (this.chains.size > 0) await Promise.allSettled([...this.chains.values()]);
  }

  /** stop takes no new work, interrupts running jobs at their next step (they go back to the queue), and waits up to boundMs. */
  async stop(boundMs: number): Promise<void> {
    this.stopController.abort(new Interrupted('stopping'));
    if (this.sweepTimer) clearInterval(this.sweepTimer);
    this.sweepTimer = undefined;
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<'timeout'>((r) => {
      timer = setTimeout(() => r('timeout'), boundMs);
    });
    const outcome = await Promise.race([this.idle().then(() => 'idle' as const), timeout]);
    clearTimeout(timer);
    if (outcome === 'timeout') this.deps.logger.warn('ingest jobs still running at stop; another worker takes them over when their lease runs out', { personas: this.chains.size });
  }

  /** run does one attempt of a job: claimed, fetched and extracted (URL), chunked, embedded, stored; its row tells the outcome. */
  private async run(jobId: string): Promise<void> {
    const { jobs, logger, settings } = this.deps;
    const job = await jobs.claim(jobId, this.workerId, this.leaseMs);
    if (!job) return;
    const sourceId = job.id;
    if (job.attempts > settings.maxAttempts) {
      // Every earlier attempt ended without finishing (crashes, lost leases): give up, leaving nothing behind.
      await this.discardChunks(job, 'given-up job');
      await jobs.fail(job.id, this.workerId, `ingestion was given up after ${settings.maxAttempts} attempts (the worker stopped or crashed each time)`);
      logger.warn('ingest job given up', { job_id: job.id, attempts: job.attempts - 1 });
      return;
    }

    const attempt = new AbortController();
    const onStop = () => attempt.abort(new Interrupted('stopping'));
    this.stopController.signal.addEventListener('abort', onStop, { once: true });
    const attemptMs = settings.attemptTimeoutMs ?? 600_000;
    const deadline = setTimeout(() => attempt.abort(new AttemptTimeout(`the attempt did not finish within ${attemptMs} ms`)), attemptMs);
    deadline.unref();
    const heartbeat = setInterval(() => {
      jobs.heartbeat(job.id, this.workerId, this.leaseMs).then(
        (ok) => {
          if (!ok) attempt.abort(new Interrupted('lease_lost'));
        },
        (err: unknown) => logger.warn('ingest job heartbeat failed', { job_id: job.id, err }),
      );
    }, Math.max(50, Math.floor(this.leaseMs / 3)));
    heartbeat.unref();

    const started = Date.now();
    let stage: IngestStage = 'queued';
    // An earlier attempt (crashed, taken over, or stopped and requeued) may have written chunks.
    let wrote = job.attempts > 1 || job.chunksDone > 0 || job.stage === 'embed' || job.stage === 'upsert';
    const enter = async (next: IngestStage, done = 0, total = 0) => {
      attempt.signal.throwIfAborted();
      stage = next;
      if (!(await jobs.progress(job.id, this.workerId, { stage: next, chunksDone: done, chunksTotal: total }))) throw new Interrupted('lease_lost');
    };
    try {
      let text = job.text;
      let title = job.title;
      let contentHash = job.contentHash;
      let url = job.kind === 'URL' || /^https?:\/\//i.test(job.source) ? job.source : '';
      let bytes = Buffer.byteLength(job.text, 'utf8');

      if (job.kind === 'URL') {
        const loader = this.deps.loader;
        if (!loader) throw new StageFailure('fetch', 'URL ingestion is not configured in this deployment');
        await enter('fetch');
        const resource = await this.fetchWithRetries(loader, job, attempt.signal);
        await enter('extract');
        let doc: { title: string; text: string };
        try {
          doc = await loader.extract(resource);
        } catch (err) {
          throw new StageFailure('extract', messageOf(err));
        }
        bytes = Buffer.byteLength(doc.text, 'utf8');
        if (bytes > MAX_TEXT_BYTES) throw new StageFailure('extract', `the extracted text is ${bytes} bytes; the limit is ${MAX_TEXT_BYTES} bytes`);
        text = doc.text;
        title = (job.title || doc.title || resource.url).slice(0, MAX_TITLE_CHARS);
        contentHash = sha256(text.trim());
        url = job.source;
      }

      await enter('chunk');
      const chunks = await chunkText(text, title, { chunkSize: settings.chunkSize, chunkOverlap: settings.chunkOverlap });
      if (chunks.length === 0) throw new StageFailure('chunk', 'the text has no content to index');

      await enter('embed', 0, chunks.length);
      const knowledge = this.deps.store;
      const embedder = await knowledge.embedderFor(job.ownerId, job.personaId);
      // A resumed job may have left part of its chunks behind: start clean.
      if (wrote) await knowledge.deleteBySource(sourceId);
      wrote = true;
      let done = 0;
      for (let i = 0; i < chunks.length; i += settings.embedBatchSize) {
        attempt.signal.throwIfAborted();
        const batch = chunks.slice(i, i + settings.embedBatchSize);
        let vectors: number[][];
        try {
          vectors = await embedder.embed(batch.map(embeddingInput));
        } catch (err) {
          throw new StageFailure('embed', messageOf(err));
        }
        if (vectors.length !== batch.length) throw new StageFailure('embed', `the embedder returned ${vectors.length} vectors for ${batch.length} texts`);
        const rows: StoredChunk[] = batch.map((c, k) => ({
          id: stableUuid(`${sourceId}:${c.index}`),
          personaId: job.personaId,
          sourceId,
          title: c.title,
          url,
          text: c.text,
          vector: vectors[k]!,
        }));
        // Write only while the lease is still ours (a worker that lost it must not write over the new owner).
        if (!(await jobs.heartbeat(job.id, this.workerId, this.leaseMs))) throw new Interrupted('lease_lost');
        try {
          await knowledge.upsert(rows);
        } catch (err) {
          throw new StageFailure('upsert', messageOf(err));
        }
        done += batch.length;
        await enter(i + batch.length >= chunks.length ? 'upsert' : 'embed', done, chunks.length);
      }

      // Retire the sources this one replaces — the persona's previous background, an earlier copy
      // of the same text, or an earlier ingestion of the same URL — once the new chunks are all in
      // (so retrieval never finds neither), then record the source and finish the job in one
      // transaction, only while the lease is still ours.
      const existing = await this.deps.sources.listByPersona(job.personaId);
      const replaced = existing.filter((s) => {
        if (s.id === sourceId) return false;
        if (job.kind === 'BACKGROUND') return s.kind === 'BACKGROUND';
        if (s.kind === 'BACKGROUND') return false;
        return s.contentHash === contentHash || (job.kind === 'URL' && s.kind === 'URL' && s.url === url);
      });
      const source: KnowledgeSource = { id: sourceId, personaId: job.personaId, ownerId: job.ownerId, kind: job.kind, title, url, contentHash, chunkCount: chunks.length, bytes };
      attempt.signal.throwIfAborted();
      if (!(await jobs.heartbeat(job.id, this.workerId, this.leaseMs))) throw new Interrupted('lease_lost');
      for (const old of replaced) {
        await knowledge.deleteBySource(old.id);
        await this.deps.sources.delete([old.id]);
      }
      if (!(await jobs.complete(job.id, this.workerId, source))) throw new Interrupted('lease_lost');
      logger.info('ingest job succeeded', { job_id: job.id, persona_id: job.personaId, kind: job.kind, chunks: chunks.length, replaced: replaced.length, ms: Date.now() - started });
    } catch (caught) {
      const err = attempt.signal.aborted && !(caught instanceof StageFailure) ? attempt.signal.reason : caught;
      if (err instanceof Interrupted) {
        if (err.why === 'stopping') {
          await jobs.requeue(job.id, this.workerId).catch((e: unknown) => logger.warn('could not requeue an interrupted ingest job', { job_id: job.id, err: e }));
          logger.info('ingest job interrupted by stop; it resumes later', { job_id: job.id, stage });
        } else {
          const now = await jobs.get(job.id).catch(() => undefined);
          if (now && now.status === 'failed') {
            // Cancelled (its persona was deleted): what this attempt wrote must go too.
            await this.discardChunks(job, 'cancelled job');
            logger.info('ingest job cancelled while running', { job_id: job.id, stage, error: now.error });
          } else {
            // Another worker owns the job now and starts its writes clean; deleting here would race it.
            logger.warn('ingest job lease lost; another worker took it over', { job_id: job.id, stage });
          }
        }
        return;
      }
      const failedStage = err instanceof StageFailure ? err.stage : stage;
      const message = `ingestion failed at ${failedStage}: ${messageOf(err)}`.slice(0, 1000);
      logger.warn('ingest job failed', { job_id: job.id, persona_id: job.personaId, stage: failedStage, err });
      if (wrote) await this.discardChunks(job, 'failed job');
      await jobs.fail(job.id, this.workerId, message).catch((e: unknown) => logger.error('could not record a failed ingest job', { job_id: job.id, err: e }));
    } finally {
      clearInterval(heartbeat);
      clearTimeout(deadline);
      this.stopController.signal.removeEventListener('abort', onStop);
    }
  }

  /** fetchWithRetries fetches a URL job's document, trying again (bounded, with backoff) only after transient failures. */
  private async fetchWithRetries(loader: UrlLoader, job: IngestJob, signal: AbortSignal): Promise<LoadedResource> {
    const retries = this.deps.settings.fetchRetries ?? 2;
    let delay = this.deps.settings.fetchRetryDelayMs ?? 1_000;
    for (let attempt = 0; ; attempt++) {
      try {
        return await loader.fetch(job.source, signal);
      } catch (err) {
        if (signal.aborted) throw signal.reason;
        if (!isTransient(err) || attempt >= retries) {
          const tries = attempt + 1;
          throw new StageFailure('fetch', tries > 1 ? `${messageOf(err)} (after ${tries} tries)` : messageOf(err));
        }
        this.deps.logger.info('ingest fetch failed transiently; retrying', { job_id: job.id, attempt: attempt + 1, err: messageOf(err) });
        await sleep(delay, signal);
        delay *= 2;
      }
    }
  }

  /** discardChunks removes what a job wrote, logging (not throwing) when the store is unreachable. */
  private async discardChunks(job: IngestJob, what: string): Promise<void> {
    try {
      await this.deps.store.deleteBySource(job.id);
    } catch (err) {
      this.deps.logger.error(`could not remove the chunks of a ${what}`, { job_id: job.id, err });
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

  /**
   * deletePersona removes every chunk and source of a persona, after its queued work here; its
   * unfinished jobs (on any worker) are failed first, so none of them records a source afterwards.
   */
  async deletePersona(personaId: string): Promise<void> {
    const id = requireId('persona_id', personaId);
    await this.deps.jobs.cancelPersona(id, 'the persona was deleted');
    await this.exclusive(id, async () => {
      await this.deps.store.deleteByPersona(id);
      await this.deps.sources.deleteByPersona(id);
    });
  }

  /** submitTrusted queues a job without the caller-facing limits (background text is the persona's own). */
  private async submitTrusted(r: IngestRequest): Promise<string> {
    if (Buffer.byteLength(r.text, 'utf8') > MAX_TEXT_BYTES) throw AppError.tooLarge('background is too large', MAX_TEXT_BYTES);
    // PostgreSQL text cannot hold NUL characters; nothing else in a background is refused.
    const job = await this.deps.jobs.create({ id: randomUUID(), ...r, text: r.text.replace(/\u0000/g, ''), contentHash: sha256(r.text.trim()) });
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

function validTitle(raw: string): string {
  const title = raw.trim();
  if (title.length > MAX_TITLE_CHARS) throw AppError.invalid(`title must be at most ${MAX_TITLE_CHARS} characters`, { title: `must be at most ${MAX_TITLE_CHARS} characters` });
  return title;
}
