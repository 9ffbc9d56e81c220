import assert from 'node:assert/strict';
import { configureLogger } from '@chat/logger';
import { Code, httpStatus, isAppError } from '@chat/errors';
import { LocalHashEmbedder } from '../src/domain/hash-embedder.js';
import { IngestService, type IngestSettings, type UrlLoader } from '../src/domain/ingest.js';
import type { Embedder, JobRepository, KnowledgeWriter, SourceRepository } from '../src/domain/ports.js';
import type { IngestJob, IngestStage, KnowledgeSource, NewJob, SourceKind, StoredChunk } from '../src/domain/types.js';
import { parseAllowList } from '../src/fetch/address.js';
import { SafeUrlLoader } from '../src/fetch/loader.js';
import { closedPort, startTestSite, type TestSite } from './fetch/fixtures.js';

type Row = IngestJob & { seq: number; lockedBy: string | null; leaseUntil: number };

/** MemoryJobs keeps jobs like PgJobRepository does: leases, per-persona order, writes only by the lease holder. */
class MemoryJobs implements JobRepository {
  readonly rows = new Map<string, Row>();
  readonly stages = new Map<string, IngestStage[]>();
  private seq = 0;
  private unfinished(r: Row) {
    return r.status === 'queued' || r.status === 'running';
  }
  private runnable(r: Row) {
    return this.unfinished(r) && (r.lockedBy === null || r.leaseUntil < Date.now());
  }
  private mine(id: string, worker: string): Row | undefined {
    const r = this.rows.get(id);
    return r && r.status === 'running' && r.lockedBy === worker ? r : undefined;
  }
  async create(job: NewJob): Promise<IngestJob> {
    const now = new Date();
    const row: Row = { ...job, status: 'queued', chunksDone: 0, chunksTotal: 0, error: '', sourceId: '', attempts: 0, stage: 'queued', createdAt: now, updatedAt: now, seq: ++this.seq, lockedBy: null, leaseUntil: 0 };
    this.rows.set(job.id, row);
    return { ...row };
  }
  async get(id: string) {
    const r = this.rows.get(id);
    return r && { ...r };
  }
  async listRunnable(limit: number) {
    return [...this.rows.values()].filter((r) => this.runnable(r)).sort((a, b) => a.seq - b.seq).slice(0, limit).map((r) => ({ ...r }));
  }
  async claim(id: string, worker: string, leaseMs: number) {
    const r = this.rows.get(id);
    if (!r || !this.runnable(r)) return undefined;
    if ([...this.rows.values()].some((o) => o.personaId === r.personaId && o.seq < r.seq && this.unfinished(o))) return undefined;
    Object.assign(r, { status: 'running', attempts: r.attempts + 1, lockedBy: worker, leaseUntil: Date.now() + leaseMs, error: '' });
    return { ...r };
  }
  async heartbeat(id: string, worker: string, leaseMs: number) {
    const r = this.mine(id, worker);
    if (r) r.leaseUntil = Date.now() + leaseMs;
    return !!r;
  }
  async progress(id: string, worker: string, p: { stage: IngestStage; chunksDone: number; chunksTotal: number }) {
    const r = this.mine(id, worker);
    if (!r) return false;
    Object.assign(r, p);
    this.stages.set(id, [...(this.stages.get(id) ?? []), p.stage]);
    return true;
  }
  constructor(private readonly sources?: MemorySources) {}
  async complete(id: string, worker: string, source: KnowledgeSource) {
    const r = this.mine(id, worker);
    if (!r) return false;
    Object.assign(r, { status: 'succeeded', stage: 'done', sourceId: source.id, chunksDone: source.chunkCount, chunksTotal: source.chunkCount, lockedBy: null });
    await this.sources?.save(source);
    return true;
  }
  async fail(id: string, worker: string, error: string) {
    const r = this.mine(id, worker);
    if (r) Object.assign(r, { status: 'failed', error, lockedBy: null });
  }
  async requeue(id: string, worker: string) {
    const r = this.mine(id, worker);
    if (r) Object.assign(r, { status: 'queued', attempts: Math.max(0, r.attempts - 1), lockedBy: null });
  }
  async cancelPersona(personaId: string, error: string) {
    const ids: string[] = [];
    for (const r of this.rows.values()) {
      if (r.personaId === personaId && this.unfinished(r)) {
        Object.assign(r, { status: 'failed', error, lockedBy: null });
        ids.push(r.id);
      }
    }
    return ids;
  }
  async latestPending(personaId: string, kind: SourceKind) {
    return [...this.rows.values()].filter((r) => r.personaId === personaId && r.kind === kind && this.unfinished(r)).pop();
  }
}

class MemorySources implements SourceRepository {
  readonly rows = new Map<string, KnowledgeSource>();
  async listByPersona(personaId: string, kind?: SourceKind) {
    return [...this.rows.values()].filter((s) => s.personaId === personaId && (!kind || s.kind === kind));
  }
  async save(s: KnowledgeSource) {
    this.rows.set(s.id, s);
  }
  async delete(ids: readonly string[]) {
    for (const id of ids) this.rows.delete(id);
  }
  async deleteByPersona(personaId: string) {
    for (const [id, s] of this.rows) if (s.personaId === personaId) this.rows.delete(id);
  }
  async ownersOfPersona(personaId: string) {
    return [...new Set([...this.rows.values()].filter((s) => s.personaId === personaId).map((s) => s.ownerId))];
  }
}

/** MemoryKnowledge is a KnowledgeWriter over a map (the vector stores have their own contract suite). */
class MemoryKnowledge implements KnowledgeWriter {
  readonly chunks = new Map<string, StoredChunk>();
  /** Chunks ever written, including ones removed later. */
  written = 0;
  constructor(readonly embedder: Embedder = new LocalHashEmbedder()) {}
  async embedderFor() {
    return this.embedder;
  }
  async upsert(chunks: readonly StoredChunk[]) {
    for (const c of chunks) this.chunks.set(c.id, c);
    this.written += chunks.length;
  }
  async deleteBySource(sourceId: string) {
    for (const [id, c] of this.chunks) if (c.sourceId === sourceId) this.chunks.delete(id);
  }
  async deleteByPersona(personaId: string) {
    for (const [id, c] of this.chunks) if (c.personaId === personaId) this.chunks.delete(id);
  }
}

const settings: IngestSettings = { chunkSize: 100, chunkOverlap: 10, embedBatchSize: 2, concurrency: 2, maxAttempts: 2, fetchRetries: 2, fetchRetryDelayMs: 10, leaseMs: 5_000 };
const logger = configureLogger({ silent: true });
const text = Array.from({ length: 20 }, (_, i) => `Fact number ${i} is about item ${i}.`).join(' ');
const LOOPBACK = parseAllowList('127.0.0.1/32');

function setup(opts: { embedder?: Embedder; loader?: UrlLoader; settings?: Partial<IngestSettings>; workerId?: string } = {}) {
  const sources = new MemorySources();
  const jobs = new MemoryJobs(sources);
  const store = new MemoryKnowledge(opts.embedder);
  const ingest = new IngestService({ jobs, sources, store, logger, loader: opts.loader, settings: { ...settings, ...opts.settings }, workerId: opts.workerId });
  return { jobs, sources, store, ingest };
}

const loaderFor = (limits: Partial<ConstructorParameters<typeof SafeUrlLoader>[0]['limits']> = {}) =>
  new SafeUrlLoader({ policy: LOOPBACK, limits: { maxBytes: 1024 * 1024, timeoutMs: 3_000, idleTimeoutMs: 1_000, maxRedirects: 3, ...limits } });

describe('the ingest service', function () {
  this.timeout(20_000);

  it('runs a text job through its stages in batches and records the source with its chunk count', async () => {
    const { jobs, sources, store, ingest } = setup();
    const id = await ingest.submit({ ownerId: 'u1', personaId: 'p1', text, title: 'Facts', source: '', kind: 'TEXT' });
    await ingest.idle();
    const job = jobs.rows.get(id)!;
    assert.equal(job.status, 'succeeded', job.error);
    assert.equal(job.stage, 'done');
    assert.deepEqual([...new Set(jobs.stages.get(id))], ['chunk', 'embed', 'upsert']);
    assert.ok(job.chunksTotal > 2);
    assert.equal(job.chunksDone, job.chunksTotal);
    assert.equal(store.chunks.size, job.chunksTotal);
    assert.equal(sources.rows.get(id)?.chunkCount, job.chunksTotal);
    assert.ok([...store.chunks.values()].every((c) => c.title === 'Facts' && c.sourceId === id));
  });

  it('fails a job whose embedding breaks half-way, naming the stage, and leaves no chunk behind', async () => {
    let calls = 0;
    const inner = new LocalHashEmbedder();
    const flaky: Embedder = { name: 'flaky', dimensions: inner.dimensions, local: true, embed: async (t) => (++calls >= 3 ? Promise.reject(new Error('embedding service exploded')) : inner.embed(t)) };
    const { jobs, sources, store, ingest } = setup({ embedder: flaky });
    const id = await ingest.submit({ ownerId: 'u1', personaId: 'p1', text, title: '', source: '', kind: 'TEXT' });
    await ingest.idle();
    const job = jobs.rows.get(id)!;
    assert.equal(job.status, 'failed');
    assert.equal(job.error, 'ingestion failed at embed: embedding service exploded');
    assert.ok(store.written >= 4, 'two batches were written before the failure');
    assert.equal(store.chunks.size, 0, 'nothing partial stays in the store');
    assert.equal(sources.rows.size, 0);
  });

  it('gives up on a job that keeps crashing the process, removing what it left', async () => {
    const { jobs, store, ingest } = setup();
    const job = await jobs.create({ id: '00000000-0000-4000-8000-000000000001', ownerId: 'u', personaId: 'p', kind: 'TEXT', title: '', source: '', text, contentHash: 'h' });
    Object.assign(jobs.rows.get(job.id)!, { attempts: settings.maxAttempts, status: 'running', lockedBy: 'dead-worker', leaseUntil: Date.now() - 1 });
    await store.upsert([{ id: 'left-over', personaId: 'p', sourceId: job.id, title: '', url: '', text: 'half', vector: [1] }]);
    assert.equal(await ingest.resume(), 1);
    await ingest.idle();
    assert.equal(jobs.rows.get(job.id)!.status, 'failed');
    assert.match(jobs.rows.get(job.id)!.error, /given up after 2 attempts/);
    assert.equal(store.chunks.size, 0);
  });

  it('takes over a crashed worker’s job once its lease runs out, but not before', async () => {
    const { jobs, store, ingest } = setup({ workerId: 'w2' });
    const job = await jobs.create({ id: '00000000-0000-4000-8000-000000000002', ownerId: 'u', personaId: 'p', kind: 'TEXT', title: 'T', source: '', text, contentHash: 'h' });
    const row = jobs.rows.get(job.id)!;
    Object.assign(row, { attempts: 1, status: 'running', lockedBy: 'w1', leaseUntil: Date.now() + 60_000, chunksDone: 2 });
    await store.upsert([{ id: 'from-w1', personaId: 'p', sourceId: job.id, title: '', url: '', text: 'partial', vector: [1] }]);
    assert.equal(await ingest.sweep(), 0, 'a live lease is left alone');
    row.leaseUntil = Date.now() - 1;
    assert.equal(await ingest.sweep(), 1);
    await ingest.idle();
    assert.equal(row.status, 'succeeded', row.error);
    assert.equal(row.attempts, 2);
    assert.ok(!store.chunks.has('from-w1'), 'the resumed job started its writes clean');
    assert.equal(store.chunks.size, row.chunksTotal);
  });

  it('stops writing, without failing or cleaning up, when its lease went to another worker', async () => {
    const { jobs, store, ingest } = setup({ workerId: 'w1' });
    const id = await ingest.submit({ ownerId: 'u', personaId: 'p', text, title: '', source: '', kind: 'TEXT' });
    // Another worker takes the job over as soon as this one starts writing.
    const original = jobs.heartbeat.bind(jobs);
    jobs.heartbeat = async (jobId, worker, leaseMs) => {
      Object.assign(jobs.rows.get(jobId)!, { lockedBy: 'w2' });
      return original(jobId, worker, leaseMs);
    };
    await ingest.idle();
    const row = jobs.rows.get(id)!;
    assert.equal(row.status, 'running');
    assert.equal(row.lockedBy, 'w2');
    assert.equal(row.error, '');
    assert.equal(store.written, 0, 'nothing was written once the lease was gone');
  });

  it('removes what a running job wrote when its persona is deleted meanwhile (on another replica)', async () => {
    let calls = 0;
    const inner = new LocalHashEmbedder();
    let jobs!: MemoryJobs;
    const deleting: Embedder = {
      name: 'deleting',
      dimensions: inner.dimensions,
      local: true,
      embed: async (t) => {
        // Another replica consumes PersonaDeleted while this job is half-way.
        if (++calls === 2) await jobs.cancelPersona('p', 'the persona was deleted');
        return inner.embed(t);
      },
    };
    const s = setup({ embedder: deleting });
    jobs = s.jobs;
    const id = await s.ingest.submit({ ownerId: 'u', personaId: 'p', text, title: '', source: '', kind: 'TEXT' });
    await s.ingest.idle();
    assert.equal(s.jobs.rows.get(id)!.status, 'failed');
    assert.equal(s.jobs.rows.get(id)!.error, 'the persona was deleted');
    assert.ok(s.store.written >= 2, 'the first batch was written');
    assert.equal(s.store.chunks.size, 0);
    assert.equal(s.sources.rows.size, 0);
  });

  it('puts a job it is stopped in the middle of back in the queue, and the next worker finishes it cleanly', async () => {
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    let calls = 0;
    const inner = new LocalHashEmbedder();
    const slow: Embedder = {
      name: 'slow',
      dimensions: inner.dimensions,
      local: true,
      embed: async (t) => {
        if (++calls === 2) await gate;
        return inner.embed(t);
      },
    };
    const first = setup({ embedder: slow, workerId: 'w1' });
    const id = await first.ingest.submit({ ownerId: 'u', personaId: 'p', text, title: 'T', source: '', kind: 'TEXT' });
    while (calls < 2) await new Promise((r) => setTimeout(r, 5));
    const stopping = first.ingest.stop(5_000);
    release();
    await stopping;
    const row = first.jobs.rows.get(id)!;
    assert.equal(row.status, 'queued');
    assert.equal(row.attempts, 0, 'a graceful stop does not count as an attempt');
    assert.ok(first.store.chunks.size > 0 && first.store.chunks.size < 10, 'it stopped part-way');
    // The next worker (same repositories and store) resumes it and starts its writes clean.
    const next = new IngestService({ jobs: first.jobs, sources: first.sources, store: first.store, logger, settings, workerId: 'w2' });
    assert.equal(await next.resume(), 1);
    await next.idle();
    assert.equal(row.status, 'succeeded', row.error);
    assert.equal(first.store.chunks.size, row.chunksTotal);
  });

  it('validates requests before queuing anything: ids, empty, binary and oversized text', async () => {
    const { jobs, ingest } = setup();
    const bad = [
      { ownerId: '', personaId: 'p', text: 'x', title: '' },
      { ownerId: 'u', personaId: '', text: 'x', title: '' },
      { ownerId: 'u', personaId: 'p', text: ' ', title: '' },
      { ownerId: 'u', personaId: 'p', text: 'x', title: 't'.repeat(501) },
      { ownerId: 'u', personaId: "p'--", text: 'x', title: '' },
      { ownerId: 'u', personaId: 'p', text: 'binary\u0000content', title: '' },
      { ownerId: 'u', personaId: 'p', text: '\u0001\u0002\u0003\u0004 abc', title: '' },
    ];
    for (const b of bad) {
      await assert.rejects(ingest.submit({ ...b, source: '', kind: 'TEXT' }), (err: unknown) => isAppError(err) && err.code === Code.InvalidArgument && httpStatus(err) === 400);
    }
    const huge = 'a'.repeat(50 * 1024 * 1024);
    await assert.rejects(ingest.submit({ ownerId: 'u', personaId: 'p', text: huge, title: '', source: '', kind: 'TEXT' }), (err: unknown) => {
      assert.ok(isAppError(err));
      assert.equal(httpStatus(err), 413);
      assert.match(err.message, /52428800 bytes; the limit is 5242880 bytes/);
      return true;
    });
    assert.equal(jobs.rows.size, 0);
  });

  it('answers NOT_FOUND for another owner’s job', async () => {
    const { ingest } = setup();
    const id = await ingest.submit({ ownerId: 'u1', personaId: 'p1', text: 'hello', title: '', source: '', kind: 'TEXT' });
    assert.equal((await ingest.getJob('u1', id)).id, id);
    await assert.rejects(ingest.getJob('u2', id), (err: unknown) => isAppError(err) && err.code === Code.NotFound);
    await ingest.idle();
  });

  it('applies background changes of one persona in the order they came', async () => {
    const { sources, store, ingest } = setup();
    await ingest.syncBackground({ ownerId: 'u', personaId: 'p', name: 'Eve', background: 'first background' });
    await ingest.syncBackground({ ownerId: 'u', personaId: 'p', name: 'Eve', background: 'second background' });
    assert.equal(await ingest.syncBackground({ ownerId: 'u', personaId: 'p', name: 'Eve', background: 'second background' }), 'unchanged');
    await ingest.idle();
    const list = await sources.listByPersona('p', 'BACKGROUND');
    assert.equal(list.length, 1);
    assert.ok([...store.chunks.values()].every((c) => c.text === 'second background' && c.title === 'Background of Eve'));
    assert.equal(await ingest.syncBackground({ ownerId: 'u', personaId: 'p', name: 'Eve', background: '' }), 'removed');
    assert.equal(store.chunks.size, 0);
  });

  it('fails a deleted persona’s unfinished jobs and removes its knowledge', async () => {
    const { jobs, sources, store, ingest } = setup();
    await ingest.submit({ ownerId: 'u', personaId: 'gone', text, title: 'A', source: '', kind: 'TEXT' });
    await ingest.idle();
    const queued = await jobs.create({ id: '00000000-0000-4000-8000-000000000003', ownerId: 'u', personaId: 'gone', kind: 'TEXT', title: '', source: '', text, contentHash: 'x' });
    await ingest.deletePersona('gone');
    assert.equal(jobs.rows.get(queued.id)!.status, 'failed');
    assert.equal(jobs.rows.get(queued.id)!.error, 'the persona was deleted');
    assert.equal(store.chunks.size, 0);
    assert.equal(sources.rows.size, 0);
  });

  describe('URL jobs', () => {
    let site: TestSite;
    before(async () => {
      site = await startTestSite();
    });
    after(async () => {
      await site.close();
    });

    it('fetches, extracts, chunks, embeds and stores a page, with the page title on every chunk', async () => {
      const { jobs, sources, store, ingest } = setup({ loader: loaderFor() });
      const id = await ingest.submitUrl({ ownerId: 'u', personaId: 'p', url: `${site.base}/page.html`, title: '' });
      await ingest.idle();
      const job = jobs.rows.get(id)!;
      assert.equal(job.status, 'succeeded', job.error);
      assert.deepEqual([...new Set(jobs.stages.get(id))], ['fetch', 'extract', 'chunk', 'embed', 'upsert']);
      const source = sources.rows.get(id)!;
      assert.equal(source.kind, 'URL');
      assert.equal(source.url, `${site.base}/page.html`);
      assert.match(source.title, /Velmora/);
      assert.ok([...store.chunks.values()].every((c) => c.title === source.title && c.url === source.url));
      assert.ok([...store.chunks.values()].some((c) => /Orla Brennick/.test(c.text)));

      // Ingesting the same URL again replaces the earlier source.
      const again = await ingest.submitUrl({ ownerId: 'u', personaId: 'p', url: `${site.base}/page.html`, title: 'Guide' });
      await ingest.idle();
      assert.deepEqual([...sources.rows.keys()], [again]);
      assert.ok([...store.chunks.values()].every((c) => c.sourceId === again && c.title === 'Guide'));
    });

    it('refuses a URL it can judge without connecting, before queuing anything', async () => {
      const { jobs, ingest } = setup({ loader: new SafeUrlLoader({ limits: { maxBytes: 1, timeoutMs: 1, idleTimeoutMs: 1, maxRedirects: 0 } }) });
      for (const url of ['ftp://example.com/', 'http://127.0.0.1/', 'http://[::ffff:169.254.169.254]/', 'not a url', '']) {
        await assert.rejects(ingest.submitUrl({ ownerId: 'u', personaId: 'p', url, title: '' }), (err: unknown) => {
          assert.ok(isAppError(err) && err.code === Code.InvalidArgument, String(err));
          assert.ok((err.details.fields as Record<string, string>).url, 'the error names the field url');
          return true;
        });
      }
      assert.equal(jobs.rows.size, 0);
    });

    it('retries transient fetch failures a bounded number of times, and permanent ones not at all', async () => {
      const loader = loaderFor();
      let fetches = 0;
      const counting: UrlLoader = { check: (u) => loader.check(u), extract: (r) => loader.extract(r as never), fetch: (u, s) => (fetches++, loader.fetch(u, s)) };
      const { jobs, ingest } = setup({ loader: counting });
      const port = await closedPort();
      const down = await ingest.submitUrl({ ownerId: 'u', personaId: 'p', url: `http://127.0.0.1:${port}/`, title: '' });
      await ingest.idle();
      assert.equal(fetches, 3, 'one try and two retries');
      assert.equal(jobs.rows.get(down)!.status, 'failed');
      assert.match(jobs.rows.get(down)!.error, /^ingestion failed at fetch: could not connect to 127\.0\.0\.1:\d+: ECONNREFUSED \(after 3 tries\)$/);
      fetches = 0;
      const missing = await ingest.submitUrl({ ownerId: 'u', personaId: 'p', url: `${site.base}/missing`, title: '' });
      await ingest.idle();
      assert.equal(fetches, 1);
      assert.equal(jobs.rows.get(missing)!.error, 'ingestion failed at fetch: the server answered 404 Not Found');
    });

    it('fails bad inputs with a clear reason and leaves nothing in the store (point 8)', async () => {
      const { jobs, sources, store, ingest } = setup({ loader: loaderFor({ timeoutMs: 1_000, idleTimeoutMs: 500 }), settings: { fetchRetries: 0 } });
      const port = await closedPort();
      const cases: Array<[path: string, error: RegExp]> = [
        [`${site.base}/missing`, /at fetch: the server answered 404/],
        [`${site.base}/loop-a`, /at fetch: redirect loop/],
        [`${site.base}/trickle`, /at fetch: the fetch did not finish within 1000 ms/],
        [`${site.base}/silent`, /at fetch: the server sent nothing for 500 ms/],
        [`${site.base}/huge`, /at fetch: the response is larger than the limit of 1048576 bytes/],
        [`${site.base}/binary`, /at fetch: content type application\/octet-stream is not ingested/],
        [`${site.base}/binary-as-text`, /at extract: the content looks binary/],
        [`${site.base}/empty.html`, /at extract: the page has no text to index/],
        [`http://127.0.0.1:${port}/`, /at fetch: could not connect .*ECONNREFUSED/],
        [`${site.base}/redirect?to=${encodeURIComponent('http://10.0.0.1/')}`, /at fetch: refused to fetch 10\.0\.0\.1: 10\.0\.0\.1 is a private address/],
      ];
      const ids: string[] = [];
      for (const [url] of cases) ids.push(await ingest.submitUrl({ ownerId: 'u', personaId: 'bad', url, title: '' }));
      await ingest.idle();
      cases.forEach(([url, error], i) => {
        const job = jobs.rows.get(ids[i]!)!;
        assert.equal(job.status, 'failed', url);
        assert.match(job.error, error, url);
      });
      assert.equal(store.written, 0);
      assert.equal(sources.rows.size, 0);
    });
  });
});
