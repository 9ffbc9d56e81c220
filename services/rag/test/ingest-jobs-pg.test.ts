import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { connectDatabase, isolatedDatabase, migrate, QueryTypes, type Database, type IsolatedDatabase } from '@chat/db';
import { configureLogger } from '@chat/logger';
import { LocalHashEmbedder } from '../src/domain/hash-embedder.js';
import { IngestService } from '../src/domain/ingest.js';
import type { KnowledgeWriter } from '../src/domain/ports.js';
import type { KnowledgeSource, NewJob, StoredChunk } from '../src/domain/types.js';
import { ragMigrations } from '../src/adapters/postgres/migrations.js';
import { PgJobRepository, PgSourceRepository } from '../src/adapters/postgres/repositories.js';

const logger = configureLogger({ silent: true });
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function newJob(personaId: string, text = 'Some facts about the island of Velmora. The ferry leaves at seven.'): NewJob {
  return { id: randomUUID(), ownerId: 'owner-1', personaId, kind: 'TEXT', title: 'Notes', source: '', text, contentHash: 'hash' };
}

function sourceOf(jobId: string, personaId: string): KnowledgeSource {
  return { id: jobId, personaId, ownerId: 'owner-1', kind: 'TEXT', title: 'Notes', url: '', contentHash: 'hash', chunkCount: 3, bytes: 10 };
}

/** CountingKnowledge records every upsert (to prove no job was run twice). */
class CountingKnowledge implements KnowledgeWriter {
  readonly chunks = new Map<string, StoredChunk>();
  readonly upsertsBySource = new Map<string, number>();
  private readonly embedder = new LocalHashEmbedder();
  async embedderFor() {
    return this.embedder;
  }
  async upsert(chunks: readonly StoredChunk[]) {
    for (const c of chunks) {
      this.chunks.set(c.id, c);
      this.upsertsBySource.set(c.sourceId, (this.upsertsBySource.get(c.sourceId) ?? 0) + 1);
    }
  }
  async deleteBySource(sourceId: string) {
    for (const [id, c] of this.chunks) if (c.sourceId === sourceId) this.chunks.delete(id);
  }
  async deleteByPersona(personaId: string) {
    for (const [id, c] of this.chunks) if (c.personaId === personaId) this.chunks.delete(id);
  }
}

describe('ingest job leases on PostgreSQL', function () {
  this.timeout(60_000);
  let isolated: IsolatedDatabase;
  let db: Database;
  let jobs: PgJobRepository;
  let sources: PgSourceRepository;

  before(async function () {
    const serverUrl = process.env.DATABASE_URL;
    assert.ok(serverUrl, 'DATABASE_URL must be set (scripts/test.mjs starts PostgreSQL when it is not)');
    isolated = await isolatedDatabase(serverUrl, 'rag_ingest_jobs', logger);
    db = await connectDatabase(isolated.url, logger, 6);
    await migrate(db.sequelize, 'rag', ragMigrations, logger);
    jobs = new PgJobRepository(db.sequelize);
    sources = new PgSourceRepository(db.sequelize);
  });

  after(async () => {
    await db?.close();
    await isolated?.drop();
  });

  it('lets exactly one of two racing workers claim a job', async () => {
    const job = await jobs.create(newJob(randomUUID()));
    assert.equal(job.stage, 'queued');
    const results = await Promise.all([jobs.claim(job.id, 'w1', 30_000), jobs.claim(job.id, 'w2', 30_000), jobs.claim(job.id, 'w3', 30_000)]);
    const winners = results.filter(Boolean);
    assert.equal(winners.length, 1);
    assert.equal(winners[0]!.attempts, 1);
    assert.equal(winners[0]!.status, 'running');
    assert.equal(winners[0]!.text, job.text);
  });

  it('hands a job over only when its lease expires, and then refuses the old holder’s writes', async () => {
    const persona = randomUUID();
    const job = await jobs.create(newJob(persona));
    assert.ok(await jobs.claim(job.id, 'w1', 300));
    assert.equal(await jobs.claim(job.id, 'w2', 300), undefined, 'a live lease is not taken');
    assert.ok(!(await jobs.listRunnable(100)).some((j) => j.id === job.id));
    assert.equal(await jobs.heartbeat(job.id, 'w1', 300), true);
    await sleep(400);
    assert.ok((await jobs.listRunnable(100)).some((j) => j.id === job.id), 'an expired lease makes the job runnable');
    const taken = await jobs.claim(job.id, 'w2', 30_000);
    assert.equal(taken?.attempts, 2);
    assert.equal(await jobs.heartbeat(job.id, 'w1', 300), false);
    assert.equal(await jobs.progress(job.id, 'w1', { stage: 'embed', chunksDone: 1, chunksTotal: 3 }), false);
    assert.equal(await jobs.complete(job.id, 'w1', sourceOf(job.id, persona)), false);
    await jobs.fail(job.id, 'w1', 'stale worker');
    assert.equal((await jobs.get(job.id))!.status, 'running');
    assert.deepEqual(await sources.listByPersona(persona), [], 'the stale worker recorded no source');
    assert.equal(await jobs.progress(job.id, 'w2', { stage: 'upsert', chunksDone: 3, chunksTotal: 3 }), true);
    assert.equal(await jobs.complete(job.id, 'w2', sourceOf(job.id, persona)), true);
    const done = (await jobs.get(job.id))!;
    assert.equal(done.status, 'succeeded');
    assert.equal(done.stage, 'done');
    assert.equal(done.sourceId, job.id);
    assert.equal((await sources.listByPersona(persona)).length, 1);
  });

  it('claims one persona’s jobs only in the order they were created', async () => {
    const persona = randomUUID();
    const first = await jobs.create(newJob(persona));
    const second = await jobs.create(newJob(persona));
    const other = await jobs.create(newJob(randomUUID()));
    assert.equal(await jobs.claim(second.id, 'w1', 30_000), undefined, 'the older job comes first');
    assert.ok(await jobs.claim(other.id, 'w1', 30_000), 'other personas are not held up');
    assert.ok(await jobs.claim(first.id, 'w1', 30_000));
    assert.equal(await jobs.claim(second.id, 'w2', 30_000), undefined, 'not while the older job runs');
    await jobs.fail(first.id, 'w1', 'boom');
    assert.ok(await jobs.claim(second.id, 'w2', 30_000));
  });

  it('puts a stopped job back without counting the attempt, and fails a deleted persona’s jobs', async () => {
    const persona = randomUUID();
    const job = await jobs.create(newJob(persona));
    await jobs.claim(job.id, 'w1', 30_000);
    await jobs.requeue(job.id, 'w1');
    const back = (await jobs.get(job.id))!;
    assert.equal(back.status, 'queued');
    assert.equal(back.attempts, 0);
    assert.ok((await jobs.listRunnable(1000)).some((j) => j.id === job.id));
    const other = await jobs.create(newJob(persona));
    assert.deepEqual((await jobs.cancelPersona(persona, 'the persona was deleted')).sort(), [job.id, other.id].sort());
    assert.equal((await jobs.get(other.id))!.error, 'the persona was deleted');
    assert.equal(await jobs.claim(job.id, 'w1', 30_000), undefined);
  });

  it('runs every job exactly once with two workers sweeping the same queue, and takes over a dead worker’s job', async () => {
    const knowledge = new CountingKnowledge();
    const settings = { chunkSize: 60, chunkOverlap: 0, embedBatchSize: 2, concurrency: 2, maxAttempts: 3, leaseMs: 500 };
    const a = new IngestService({ jobs, sources, store: knowledge, logger, settings, workerId: 'replica-a' });
    const b = new IngestService({ jobs, sources, store: knowledge, logger, settings, workerId: 'replica-b' });
    const created: Array<{ id: string }> = [];
    for (let i = 0; i < 8; i++) created.push(await jobs.create(newJob(randomUUID(), `Fact ${i} about the island. `.repeat(10))));
    // A job a crashed worker held: its lease has run out.
    const orphan = await jobs.create(newJob(randomUUID()));
    await jobs.claim(orphan.id, 'crashed-worker', 1);
    await sleep(20);
    await Promise.all([a.sweep(), b.sweep(), a.sweep(), b.sweep()]);
    await Promise.all([a.idle(), b.idle()]);
    for (const j of [...created, orphan]) {
      const row = (await jobs.get(j.id))!;
      assert.equal(row.status, 'succeeded', `${j.id}: ${row.error}`);
    }
    for (const j of created) {
      const row = (await jobs.get(j.id))!;
      assert.equal(row.attempts, 1, 'no job was claimed twice');
      assert.equal(knowledge.upsertsBySource.get(j.id), row.chunksTotal, 'each chunk was written once');
    }
    assert.equal((await jobs.get(orphan.id))!.attempts, 2, 'the dead worker’s job was taken over');
    const counted = await db.sequelize.query<{ n: string }>(`select count(*) as n from rag.ingest_jobs where id = any($1::uuid[]) and status in ('queued', 'running')`, {
      bind: [[...created, orphan].map((j) => j.id)],
      type: QueryTypes.SELECT,
    });
    assert.equal(Number(counted[0]!.n), 0, 'no job stays queued or running');
    await a.stop(1_000);
    await b.stop(1_000);
  });
});
