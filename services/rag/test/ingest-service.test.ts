import assert from 'node:assert/strict';
import { configureLogger } from '@chat/logger';
import { Code, isAppError } from '@chat/errors';
import { LocalHashEmbedder } from '../src/domain/hash-embedder.js';
import { IngestService } from '../src/domain/ingest.js';
import type { Embedder, JobRepository, SourceRepository, VectorStore } from '../src/domain/ports.js';
import type { IngestJob, KnowledgeSource, NewJob, ScoredChunk, SourceKind, StoredChunk } from '../src/domain/types.js';

class MemoryJobs implements JobRepository {
  readonly rows = new Map<string, IngestJob>();
  async create(job: NewJob): Promise<IngestJob> {
    const now = new Date();
    const row: IngestJob = { ...job, status: 'queued', chunksDone: 0, chunksTotal: 0, error: '', sourceId: '', attempts: 0, createdAt: now, updatedAt: now };
    this.rows.set(job.id, row);
    return { ...row };
  }
  async get(id: string) {
    const r = this.rows.get(id);
    return r && { ...r };
  }
  async listUnfinished() {
    return [...this.rows.values()].filter((r) => r.status === 'queued' || r.status === 'running');
  }
  async claim(id: string) {
    const r = this.rows.get(id);
    if (!r || (r.status !== 'queued' && r.status !== 'running')) return undefined;
    Object.assign(r, { status: 'running', attempts: r.attempts + 1 });
    return { ...r };
  }
  async progress(id: string, chunksDone: number, chunksTotal: number) {
    Object.assign(this.rows.get(id)!, { chunksDone, chunksTotal });
  }
  async succeed(id: string, sourceId: string, chunksTotal: number) {
    Object.assign(this.rows.get(id)!, { status: 'succeeded', sourceId, chunksDone: chunksTotal, chunksTotal });
  }
  async fail(id: string, error: string) {
    Object.assign(this.rows.get(id)!, { status: 'failed', error });
  }
  async requeue(id: string) {
    Object.assign(this.rows.get(id)!, { status: 'queued' });
  }
  async latestPending(personaId: string, kind: SourceKind) {
    return [...this.rows.values()].filter((r) => r.personaId === personaId && r.kind === kind && (r.status === 'queued' || r.status === 'running')).pop();
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

class MemoryStore implements VectorStore {
  readonly chunks = new Map<string, StoredChunk>();
  async upsert(chunks: readonly StoredChunk[]) {
    for (const c of chunks) this.chunks.set(c.id, c);
  }
  async search(): Promise<ScoredChunk[]> {
    return [];
  }
  async deleteBySource(sourceId: string) {
    for (const [id, c] of this.chunks) if (c.sourceId === sourceId) this.chunks.delete(id);
  }
  async deleteByPersona(personaId: string) {
    for (const [id, c] of this.chunks) if (c.personaId === personaId) this.chunks.delete(id);
  }
  async close() {}
}

const settings = { chunkSize: 100, chunkOverlap: 10, embedBatchSize: 2, concurrency: 2, maxAttempts: 2 };
const logger = configureLogger({ silent: true });
const text = Array.from({ length: 20 }, (_, i) => `Fact number ${i} is about item ${i}.`).join(' ');

function setup(embedder: Embedder = new LocalHashEmbedder()) {
  const jobs = new MemoryJobs();
  const sources = new MemorySources();
  const store = new MemoryStore();
  const ingest = new IngestService({ jobs, sources, store, embedder, logger, settings });
  return { jobs, sources, store, ingest };
}

describe('the ingest service', () => {
  it('runs a job in batches and records the source with its chunk count', async () => {
    const { jobs, sources, store, ingest } = setup();
    const id = await ingest.submit({ ownerId: 'u1', personaId: 'p1', text, title: 'Facts', source: '', kind: 'TEXT' });
    await ingest.idle();
    const job = jobs.rows.get(id)!;
    assert.equal(job.status, 'succeeded');
    assert.ok(job.chunksTotal > 2);
    assert.equal(job.chunksDone, job.chunksTotal);
    assert.equal(store.chunks.size, job.chunksTotal);
    assert.equal(sources.rows.get(id)?.chunkCount, job.chunksTotal);
    assert.ok([...store.chunks.values()].every((c) => c.title === 'Facts' && c.sourceId === id));
  });

  it('marks a job failed with a clear error when embedding fails', async () => {
    const broken: Embedder = { name: 'broken', dimensions: 3, local: true, embed: async () => Promise.reject(new Error('embedding service exploded')) };
    const { jobs, sources, ingest } = setup(broken);
    const id = await ingest.submit({ ownerId: 'u1', personaId: 'p1', text, title: '', source: '', kind: 'TEXT' });
    await ingest.idle();
    const job = jobs.rows.get(id)!;
    assert.equal(job.status, 'failed');
    assert.match(job.error, /ingestion failed: embedding service exploded/);
    assert.equal(sources.rows.size, 0);
  });

  it('gives up on a job that keeps crashing the process', async () => {
    const { jobs, ingest } = setup();
    const job = await jobs.create({ id: '00000000-0000-4000-8000-000000000001', ownerId: 'u', personaId: 'p', kind: 'TEXT', title: '', source: '', text, contentHash: 'h' });
    jobs.rows.get(job.id)!.attempts = settings.maxAttempts;
    jobs.rows.get(job.id)!.status = 'running';
    await ingest.resume();
    await ingest.idle();
    assert.equal(jobs.rows.get(job.id)!.status, 'failed');
    assert.match(jobs.rows.get(job.id)!.error, /given up after 2 attempts/);
  });

  it('validates requests before queuing anything', async () => {
    const { jobs, ingest } = setup();
    const bad = [
      { ownerId: '', personaId: 'p', text: 'x', title: '' },
      { ownerId: 'u', personaId: '', text: 'x', title: '' },
      { ownerId: 'u', personaId: 'p', text: ' ', title: '' },
      { ownerId: 'u', personaId: 'p', text: 'x', title: 't'.repeat(501) },
      { ownerId: 'u', personaId: "p'--", text: 'x', title: '' },
    ];
    for (const b of bad) {
      await assert.rejects(ingest.submit({ ...b, source: '', kind: 'TEXT' }), (err: unknown) => isAppError(err) && err.code === Code.InvalidArgument);
    }
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
});
