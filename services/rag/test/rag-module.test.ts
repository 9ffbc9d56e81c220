import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { chmodSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { RagClient, type ServiceEndpoint } from '@chat/clients';
import { eventsV1, personaV1, ragV1 } from '@chat/contracts';
import { connectDatabase, type Database, type EmbeddedPostgres, eventually, isolatedDatabase, type IsolatedDatabase, QueryTypes, startEmbeddedPostgres, testInfrastructure } from '@chat/db';
import { startDevModel } from '@chat/devmodel';
import { Code, isAppError } from '@chat/errors';
import { encodeEvent, InProcessBus, Topics } from '@chat/events';
import { closeClients } from '@chat/grpc';
import { configureLogger } from '@chat/logger';
import { Runtime, type ModuleDef } from '@chat/runtime';
import { generateKeySpec } from '@chat/secrets';
import * as grpc from '@grpc/grpc-js';
import { MilvusClient } from '@zilliz/milvus2-sdk-node';
import { ragModule } from '../src/index.js';

const logger = configureLogger({ silent: true });


async function rejectsWithCode(p: Promise<unknown>, code: Code, reason?: string): Promise<void> {
  await assert.rejects(p, (err: unknown) => {
    assert.ok(isAppError(err), `expected an AppError, got ${String(err)}`);
    assert.equal(err.code, code, `expected code ${Code[code]}, got ${Code[err.code]}: ${err.message}`);
    if (reason) assert.equal(err.reason, reason);
    return true;
  });
}

const ADA_NOTES = [
  'Ada grew up in a small town by the sea. The lighthouse in her town is painted red and white.',
  'Her favourite food is lemon cake. She bakes one every Sunday for her neighbours.',
  'She writes compilers for a living and prefers strongly typed languages.',
].join('\n\n');

// With MILVUS_ADDRESS set (scripts/infra up milvus) the module runs on Milvus, in a collection of
// its own that is dropped afterwards; else on LanceDB in a temporary directory.
const milvusAddress = process.env.MILVUS_ADDRESS;
const masterKeys = generateKeySpec();
const milvusCollection = `test_module_${randomUUID().replace(/-/g, '').slice(0, 12)}`;

describe(`the rag module on PostgreSQL and ${milvusAddress ? 'Milvus' : 'LanceDB'}`, function () {
  this.timeout(180_000);
  let embedded: EmbeddedPostgres | undefined;
  let databaseUrl: string;
  let tmp: string;
  let runtime: Runtime;
  let bus: InProcessBus;
  let client: RagClient;
  let db: Database;

  const modules = (): ModuleDef[] => [
    ...(testInfrastructure(databaseUrl, bus, logger) as ModuleDef[]),
    {
      name: 'llm',
      async init(ctx) {
        const model = await startDevModel({ logger: ctx.logger });
        return { value: model.endpoint, stop: () => model.stop() };
      },
    },
    {
      // A stand-in persona service: every persona uses the default profile (the llm module).
      name: 'persona',
      async init() {
        const server = new grpc.Server();
        server.addService(personaV1.PersonaServiceService, {
          resolvePersona: (call: grpc.ServerUnaryCall<personaV1.ResolvePersonaRequest, personaV1.ResolvePersonaResponse>, cb: grpc.sendUnaryData<personaV1.ResolvePersonaResponse>) =>
            cb(null, personaV1.ResolvePersonaResponse.fromPartial({ persona: { id: call.request.personaId, ownerId: call.request.ownerId }, usesDefaultProfile: true })),
        } as unknown as grpc.UntypedServiceImplementation);
        const port = await new Promise<number>((resolve, reject) =>
          server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))),
        );
        return { value: { address: `127.0.0.1:${port}` }, stop: () => new Promise<void>((resolve) => server.tryShutdown(() => resolve())) };
      },
    },
    ragModule as ModuleDef,
  ];

  const start = async () => {
    runtime = new Runtime(modules(), ['rag', 'persona'], {
      logger,
      env: {
        ...(milvusAddress ? { MILVUS_ADDRESS: milvusAddress, MILVUS_COLLECTION: milvusCollection } : {}),
        LANCEDB_DIR: join(tmp, 'lancedb'),
        MASTER_KEYS: masterKeys,
        RAG_CHUNK_SIZE: '200', RAG_CHUNK_OVERLAP: '20', RAG_EMBED_BATCH_SIZE: '2',
        // The development model sends its whole reply at once; one delta per chunk keeps the stream's steps visible here.
        RAG_DELTA_COALESCE_MS: '0' },
    });
    await runtime.start();
    client = new RagClient(runtime.get<ServiceEndpoint>('rag').address);
  };

  const stop = async () => {
    await runtime?.stop();
    closeClients();
  };

  const waitForJob = (ownerId: string, jobId: string) =>
    eventually(async () => {
      const { job } = await client.getIngestJob({ ownerId, jobId });
      return job && (job.status === ragV1.JobStatus.JOB_STATUS_SUCCEEDED || job.status === ragV1.JobStatus.JOB_STATUS_FAILED) ? job : undefined;
    }, `job ${jobId}`);

  const publishPersona = (event: eventsV1.DeepPartial<eventsV1.PersonaEvent>) =>
    bus.publish(Topics.personaEvents, [{ key: event.personaId!, value: encodeEvent(eventsV1.PersonaEvent, eventsV1.PersonaEvent.fromPartial(event)) }]);

  const sourcesOf = (personaId: string) =>
    db.sequelize.query<{ id: string; kind: string; title: string; content_hash: string }>('select id, kind, title, content_hash from rag.sources where persona_id = $1', {
      bind: [personaId],
      type: QueryTypes.SELECT,
    });

  let isolated: IsolatedDatabase | undefined;
  before(async () => {
    tmp = mkdtempSync(join(tmpdir(), 'rag-module-'));
    // As root, the embedded server runs as the postgres user, which must reach its data directory.
    chmodSync(tmp, 0o755);
    if (process.env.DATABASE_URL) {
      isolated = await isolatedDatabase(process.env.DATABASE_URL, 'rag_test', logger);
      databaseUrl = isolated.url;
    }
    else {
      embedded = await startEmbeddedPostgres({ dataDir: join(tmp, 'pg'), logger });
      databaseUrl = embedded.url;
    }
    db = await connectDatabase(databaseUrl, logger, 2);
    bus = new InProcessBus();
    await start();
  });

  after(async () => {
    await stop();
    await db?.close();
    await isolated?.drop();
    await embedded?.stop();
    rmSync(tmp, { recursive: true, force: true });
    if (milvusAddress) {
      const milvus = new MilvusClient({ address: milvusAddress, logLevel: 'error' });
      milvus.connectPromise.catch(() => undefined);
      await milvus.dropCollection({ collection_name: milvusCollection }).catch(() => undefined);
      await milvus.closeConnection().catch(() => undefined);
    }
  });

  describe('ingestion', () => {
    const owner = `user-${randomUUID()}`;
    const persona = randomUUID();
    let jobId: string;

    it('answers with a job id at once and the job runs to success with progress', async () => {
      ({ jobId } = await client.ingestText({ ownerId: owner, personaId: persona, text: ADA_NOTES, title: 'Notes about Ada', source: 'https://example.com/ada', kind: ragV1.SourceKind.SOURCE_KIND_URL }));
      assert.match(jobId, /^[0-9a-f-]{36}$/);
      const job = await waitForJob(owner, jobId);
      assert.equal(job.status, ragV1.JobStatus.JOB_STATUS_SUCCEEDED, job.error);
      assert.equal(job.personaId, persona);
      assert.ok(job.chunksTotal >= 2, `expected several chunks, got ${job.chunksTotal}`);
      assert.equal(job.chunksDone, job.chunksTotal);
      assert.equal(job.sourceId, jobId);
      assert.ok(job.createdAt instanceof Date && job.updatedAt instanceof Date);
      const sources = await sourcesOf(persona);
      assert.equal(sources.length, 1);
      assert.equal(sources[0]!.title, 'Notes about Ada');
    });

    it('retrieves the best matching chunks first, with title, url and score', async () => {
      const { documents } = await client.retrieveDocuments({ ownerId: owner, personaId: persona, query: 'favourite food lemon cake', topK: 2 });
      assert.equal(documents.length, 2);
      assert.match(documents[0]!.text, /lemon cake/);
      assert.equal(documents[0]!.title, 'Notes about Ada');
      assert.equal(documents[0]!.url, 'https://example.com/ada');
      assert.equal(documents[0]!.sourceId, jobId);
      assert.ok(documents[0]!.chunkId);
      assert.ok(documents[0]!.score >= documents[1]!.score);
    });

    it('applies the score threshold and caps top_k', async () => {
      const { documents } = await client.retrieveDocuments({ ownerId: owner, personaId: persona, query: 'lemon cake', topK: 500, scoreThreshold: 0.99 });
      assert.deepEqual(documents, []);
      const all = await client.retrieveDocuments({ ownerId: owner, personaId: persona, query: 'lemon cake', topK: 500 });
      assert.ok(all.documents.length >= 2 && all.documents.length <= 50);
    });

    it('does not show one persona the knowledge of another', async () => {
      const { documents } = await client.retrieveDocuments({ ownerId: owner, personaId: randomUUID(), query: 'lemon cake' });
      assert.deepEqual(documents, []);
    });

    it('answers NOT_FOUND for another owner’s persona and job', async () => {
      await rejectsWithCode(client.retrieveDocuments({ ownerId: 'someone-else', personaId: persona, query: 'lemon cake' }), Code.NotFound);
      await rejectsWithCode(client.getIngestJob({ ownerId: 'someone-else', jobId }), Code.NotFound);
    });

    it('answers NOT_FOUND for unknown and malformed job ids', async () => {
      await rejectsWithCode(client.getIngestJob({ ownerId: owner, jobId: randomUUID() }), Code.NotFound);
      await rejectsWithCode(client.getIngestJob({ ownerId: owner, jobId: 'not-a-uuid' }), Code.NotFound);
      await rejectsWithCode(client.getIngestJob({ ownerId: owner, jobId: "x'; drop table rag.sources; --" }), Code.NotFound);
    });

    it('rejects bad ingestion requests with INVALID_ARGUMENT', async () => {
      const ok = { ownerId: owner, personaId: persona, text: 'hello', title: 't' };
      await rejectsWithCode(client.ingestText({ ...ok, ownerId: '' }), Code.InvalidArgument);
      await rejectsWithCode(client.ingestText({ ...ok, personaId: '' }), Code.InvalidArgument);
      await rejectsWithCode(client.ingestText({ ...ok, text: '  \n ' }), Code.InvalidArgument);
      await rejectsWithCode(client.ingestText({ ...ok, title: 'x'.repeat(501) }), Code.InvalidArgument);
      await rejectsWithCode(client.ingestText({ ...ok, text: 'a'.repeat(5 * 1024 * 1024 + 1) }), Code.InvalidArgument, 'too_large');
    });

    it('rejects a malformed persona id in retrieval without an internal error', async () => {
      await rejectsWithCode(client.retrieveDocuments({ ownerId: owner, personaId: "p' OR '1'='1", query: 'cake' }), Code.InvalidArgument);
    });

    it('replaces an earlier copy of the same text instead of duplicating it', async () => {
      const again = await client.ingestText({ ownerId: owner, personaId: persona, text: ADA_NOTES, title: 'Notes about Ada (again)', source: 'https://example.com/ada' });
      const job = await waitForJob(owner, again.jobId);
      assert.equal(job.status, ragV1.JobStatus.JOB_STATUS_SUCCEEDED);
      const sources = await sourcesOf(persona);
      assert.deepEqual(
        sources.map((s) => s.id),
        [again.jobId],
      );
      const { documents } = await client.retrieveDocuments({ ownerId: owner, personaId: persona, query: 'lemon cake', topK: 50 });
      assert.ok(documents.every((d) => d.sourceId === again.jobId));
    });

    it('streams a grounded reply from the development model with citations', async () => {
      const items: ragV1.GenerateResponse[] = [];
      for await (const item of client.generate({
        ownerId: owner,
        personaId: persona,
        systemPrompt: 'You are Ada.',
        history: [
          { role: ragV1.ChatRole.CHAT_ROLE_USER, content: 'Hi' },
          { role: ragV1.ChatRole.CHAT_ROLE_ASSISTANT, content: 'Hello!' },
        ],
        userMessage: 'What colour is the lighthouse painted?',
        topK: 3,
      }))
        items.push(item);
      const deltas = items.filter((i) => i.item?.$case === 'delta').map((i) => (i.item as { value: ragV1.GenerateDelta }).value.text);
      assert.ok(deltas.length > 2, 'expected several deltas');
      const last = items[items.length - 1]!.item;
      assert.equal(last?.$case, 'completed');
      const completed = last.value as ragV1.GenerateCompleted;
      assert.equal(completed.content, deltas.join(''));
      assert.ok(completed.content.startsWith('[development model] From what I know: '), completed.content);
      assert.match(completed.content, /red and white/);
      assert.equal(completed.model, 'dev-echo');
      assert.ok(completed.citations.length >= 1 && completed.citations.length <= 3);
      assert.ok(completed.citations.every((c) => c.title.startsWith('Notes about Ada') && c.chunkId && c.sourceId));
    });

    it('rejects a reply request without a user message', async () => {
      const run = async () => {
        for await (const _ of client.generate({ ownerId: owner, personaId: persona, userMessage: '   ' }));
      };
      await rejectsWithCode(run(), Code.InvalidArgument);
    });
  });

  describe('persona background', () => {
    const owner = `user-${randomUUID()}`;
    const persona = randomUUID();

    const retrieve = (query: string) => client.retrieveDocuments({ ownerId: owner, personaId: persona, query, topK: 10 });

    it('ingests the background of an upserted persona', async () => {
      await publishPersona({ personaId: persona, ownerId: owner, kind: { $case: 'upserted', value: { name: 'Bob', background: 'Bob keeps three goats on a hill farm.' } } });
      const { documents } = await eventually(async () => {
        const r = await retrieve('goats');
        return r.documents.length > 0 ? r : undefined;
      }, 'background chunks');
      assert.equal(documents[0]!.title, 'Background of Bob');
      // Chunks become searchable a moment before the job records its source (in one transaction with
      // the job's success): wait for the source row.
      const sources = await eventually(async () => {
        const rows = await sourcesOf(persona);
        return rows.length === 1 ? rows : undefined;
      }, 'the background source');
      assert.equal(sources[0]!.kind, 'BACKGROUND');
    });

    it('does nothing when the same background arrives again', async () => {
      const before = await sourcesOf(persona);
      const event = { personaId: persona, ownerId: owner, kind: { $case: 'upserted' as const, value: { name: 'Bob', background: 'Bob keeps three goats on a hill farm.' } } };
      await publishPersona(event);
      await publishPersona(event);
      await new Promise((r) => setTimeout(r, 300));
      assert.deepEqual(await sourcesOf(persona), before);
      const jobs = await db.sequelize.query<{ n: number }>('select count(*)::int as n from rag.ingest_jobs where persona_id = $1', { bind: [persona], type: QueryTypes.SELECT });
      assert.equal(jobs[0]!.n, 1);
    });

    it('replaces the previous background when it changes', async () => {
      await publishPersona({ personaId: persona, ownerId: owner, kind: { $case: 'upserted', value: { name: 'Bob', background: 'Bob sold the goats and now breeds bees.' } } });
      await eventually(async () => {
        const r = await retrieve('goats bees');
        return r.documents.length === 1 && r.documents[0]!.text.includes('bees');
      }, 'the new background only');
      // The new chunks are searchable a moment before the job's source row commits (and the old
      // source row goes after that): wait for exactly one source.
      await eventually(async () => (await sourcesOf(persona)).length === 1, 'exactly one background source');
    });

    it('removes the background when it becomes empty', async () => {
      await publishPersona({ personaId: persona, ownerId: owner, kind: { $case: 'upserted', value: { name: 'Bob', background: '' } } });
      await eventually(async () => (await retrieve('bees')).documents.length === 0, 'the background to go');
      assert.equal((await sourcesOf(persona)).length, 0);
    });

    it('removes every chunk and source of a deleted persona', async () => {
      await publishPersona({ personaId: persona, ownerId: owner, kind: { $case: 'upserted', value: { name: 'Bob', background: 'Bob plays the tuba.' } } });
      const { jobId } = await client.ingestText({ ownerId: owner, personaId: persona, text: 'Bob also collects stamps from Peru.', title: 'Hobbies' });
      await waitForJob(owner, jobId);
      await eventually(async () => (await retrieve('tuba stamps')).documents.length === 2, 'both sources');
      await publishPersona({ personaId: persona, ownerId: owner, kind: { $case: 'deleted', value: {} } });
      await eventually(async () => (await retrieve('tuba stamps')).documents.length === 0, 'the knowledge to go');
      // Chunks go first, then the source rows: with a fast store the search can be empty a moment
      // before the rows are deleted, so wait for those too.
      await eventually(async () => (await sourcesOf(persona)).length === 0, 'the sources to go');
    });
  });

  describe('restarts', () => {
    it('resumes jobs a crash left queued or running', async () => {
      await stop();
      const owner = `user-${randomUUID()}`;
      const persona = randomUUID();
      const queued = randomUUID();
      const running = randomUUID();
      for (const [id, status, text] of [
        [queued, 'queued', 'Carol paints watercolours of harbours.'],
        [running, 'running', 'Carol rows a boat every morning.'],
      ] as const) {
        await db.sequelize.query(
          `insert into rag.ingest_jobs (id, owner_id, persona_id, kind, title, source, text, content_hash, status, attempts)
           values ($1, $2, $3, 'TEXT', 'Carol', '', $4, md5($4), $5, $6)`,
          { bind: [id, owner, persona, text, status, status === 'running' ? 1 : 0] },
        );
      }
      await start();
      for (const id of [queued, running]) {
        const job = await waitForJob(owner, id);
        assert.equal(job.status, ragV1.JobStatus.JOB_STATUS_SUCCEEDED, job.error);
      }
      const { documents } = await client.retrieveDocuments({ ownerId: owner, personaId: persona, query: 'Carol harbours boat', topK: 5 });
      assert.equal(documents.length, 2);
    });
  });
});
