import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { RagClient, type ServiceEndpoint } from '@chat/clients';
import { eventsV1, personaV1, ragV1 } from '@chat/contracts';
import { connectDatabase, type Database, eventually, isolatedDatabase, type IsolatedDatabase, QueryTypes, testInfrastructure } from '@chat/db';
import { startDevModel } from '@chat/devmodel';
import { Code, isAppError } from '@chat/errors';
import { encodeEvent, InProcessBus, Topics } from '@chat/events';
import { closeClients } from '@chat/grpc';
import { configureLogger } from '@chat/logger';
import { Runtime, type ModuleDef } from '@chat/runtime';
import { generateKeySpec } from '@chat/secrets';
import * as grpc from '@grpc/grpc-js';
import { ragModule } from '../src/index.js';
import { closedPort, startTestSite, type TestSite } from './fetch/fixtures.js';

const logger = configureLogger({ silent: true });


/**
 * The rag module as it runs in production (PostgreSQL, the in-process bus, LanceDB, the real
 * gRPC server and client) ingesting URLs from a local server. RAG_FETCH_ALLOW opens 127.0.0.1
 * only; every other address stays refused.
 */
describe('IngestUrl through the rag module', function () {
  this.timeout(120_000);
  let isolated: IsolatedDatabase;
  let db: Database;
  let tmp: string;
  let runtime: Runtime;
  let bus: InProcessBus;
  let client: RagClient;
  let site: TestSite;

  const modules = (databaseUrl: string): ModuleDef[] => [
    ...(testInfrastructure(databaseUrl, bus, logger) as ModuleDef[]),
    {
      name: 'llm',
      async init(ctx) {
        const model = await startDevModel({ logger: ctx.logger });
        return { value: model.endpoint, stop: () => model.stop() };
      },
    },
    {
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

  const waitForJob = (ownerId: string, jobId: string) =>
    eventually(async () => {
      const { job } = await client.getIngestJob({ ownerId, jobId });
      return job && (job.status === ragV1.JobStatus.JOB_STATUS_SUCCEEDED || job.status === ragV1.JobStatus.JOB_STATUS_FAILED) ? job : undefined;
    }, `job ${jobId}`);

  const sourcesOf = (personaId: string) =>
    db.sequelize.query<{ id: string; kind: string; title: string; url: string }>('select id, kind, title, url from rag.sources where persona_id = $1', { bind: [personaId], type: QueryTypes.SELECT });

  before(async () => {
    const serverUrl = process.env.DATABASE_URL;
    assert.ok(serverUrl, 'DATABASE_URL must be set (scripts/test.mjs starts PostgreSQL when it is not)');
    isolated = await isolatedDatabase(serverUrl, 'rag_ingest_url', logger);
    db = await connectDatabase(isolated.url, logger, 2);
    tmp = mkdtempSync(join(tmpdir(), 'rag-ingest-url-'));
    bus = new InProcessBus();
    site = await startTestSite();
    runtime = new Runtime(modules(isolated.url), ['rag', 'persona'], {
      logger,
      env: {
        LANCEDB_DIR: join(tmp, 'lancedb'),
        MASTER_KEYS: generateKeySpec(),
        RAG_CHUNK_SIZE: '200',
        RAG_CHUNK_OVERLAP: '20',
        RAG_FETCH_ALLOW: '127.0.0.1/32',
        RAG_FETCH_TIMEOUT_MS: '1500',
        RAG_FETCH_IDLE_TIMEOUT_MS: '700',
        RAG_FETCH_MAX_BYTES: String(1024 * 1024),
        RAG_FETCH_RETRIES: '1',
        RAG_FETCH_RETRY_DELAY_MS: '20',
      },
    });
    await runtime.start();
    client = new RagClient(runtime.get<ServiceEndpoint>('rag').address);
  });

  after(async () => {
    await runtime?.stop();
    closeClients();
    await site?.close();
    await db?.close();
    await isolated?.drop();
    if (tmp) rmSync(tmp, { recursive: true, force: true });
  });

  const owner = `user-${randomUUID()}`;

  it('ingests an HTML page: the job goes through its stages and the chunks carry the page title and url', async () => {
    const persona = randomUUID();
    const { jobId } = await client.ingestUrl({ ownerId: owner, personaId: persona, url: `${site.base}/page.html` });
    const job = await waitForJob(owner, jobId);
    assert.equal(job.status, ragV1.JobStatus.JOB_STATUS_SUCCEEDED, job.error);
    assert.equal(job.stage, 'done');
    assert.ok(job.chunksTotal >= 2);
    assert.equal(job.chunksDone, job.chunksTotal);
    assert.equal(job.sourceId, jobId);
    const [source] = await sourcesOf(persona);
    assert.equal(source?.kind, 'URL');
    assert.equal(source?.url, `${site.base}/page.html`);
    const { documents } = await client.retrieveDocuments({ ownerId: owner, personaId: persona, query: 'secret ingredient of the island soup', topK: 3 });
    assert.ok(documents.length > 0);
    assert.ok(documents.some((d) => /smoked seaweed/.test(d.text)));
    for (const d of documents) {
      assert.match(d.title, /Velmora/);
      assert.equal(d.url, `${site.base}/page.html`);
      assert.doesNotMatch(d.text, /NAV-NOISE|FOOTER-NOISE|SCRIPT-NOISE/);
    }
  });

  it('ingests a PDF with the title given by the caller', async () => {
    const persona = randomUUID();
    const { jobId } = await client.ingestUrl({ ownerId: owner, personaId: persona, url: `${site.base}/doc.pdf`, title: 'Keeper report' });
    const job = await waitForJob(owner, jobId);
    assert.equal(job.status, ragV1.JobStatus.JOB_STATUS_SUCCEEDED, job.error);
    const { documents } = await client.retrieveDocuments({ ownerId: owner, personaId: persona, query: 'who is the lighthouse keeper', topK: 1 });
    assert.match(documents[0]!.text, /Captain Orla Brennick/);
    assert.equal(documents[0]!.title, 'Keeper report');
  });

  it('answers INVALID_ARGUMENT naming the field url for URLs refused without connecting', async () => {
    for (const url of ['ftp://example.com/x', 'http://169.254.169.254/latest/meta-data/', 'http://[::ffff:10.0.0.1]/', 'http://localhost/', 'http://user:pw@127.0.0.1/', 'nonsense', '']) {
      await assert.rejects(client.ingestUrl({ ownerId: owner, personaId: randomUUID(), url }), (err: unknown) => {
        assert.ok(isAppError(err), String(err));
        assert.equal(err.code, Code.InvalidArgument, `${url}: ${err.message}`);
        assert.equal(typeof (err.details.fields as Record<string, string> | undefined)?.url, 'string', `${url}: details name the field`);
        return true;
      });
    }
    // The allow-list opens 127.0.0.1 only: other loopback addresses stay refused.
    await assert.rejects(client.ingestUrl({ ownerId: owner, personaId: randomUUID(), url: 'http://127.0.0.2/' }), (err: unknown) => isAppError(err) && /loopback/.test(err.message));
  });

  it('fails bad documents with a clear reason, at the stage that failed, leaving no knowledge behind', async () => {
    const persona = randomUUID();
    const port = await closedPort();
    const cases: Array<[string, string, RegExp]> = [
      [`${site.base}/missing`, 'fetch', /the server answered 404/],
      [`${site.base}/loop-a`, 'fetch', /redirect loop/],
      [`${site.base}/trickle`, 'fetch', /did not finish within 1500 ms \(after 2 tries\)/],
      [`${site.base}/huge`, 'fetch', /larger than the limit of 1048576 bytes/],
      [`${site.base}/binary-as-text`, 'extract', /looks binary/],
      [`http://127.0.0.1:${port}/`, 'fetch', /ECONNREFUSED \(after 2 tries\)/],
    ];
    const jobs: string[] = [];
    for (const [url] of cases) jobs.push((await client.ingestUrl({ ownerId: owner, personaId: persona, url })).jobId);
    for (let i = 0; i < cases.length; i++) {
      const [url, stage, error] = cases[i]!;
      const job = await waitForJob(owner, jobs[i]!);
      assert.equal(job.status, ragV1.JobStatus.JOB_STATUS_FAILED, url);
      assert.equal(job.stage, stage, url);
      assert.match(job.error, error, url);
      assert.equal(job.sourceId, '');
    }
    assert.deepEqual(await sourcesOf(persona), []);
    const { documents } = await client.retrieveDocuments({ ownerId: owner, personaId: persona, query: 'anything at all', topK: 5 });
    assert.deepEqual(documents, []);
  });

  it('removes URL knowledge when the persona is deleted', async () => {
    const persona = randomUUID();
    const { jobId } = await client.ingestUrl({ ownerId: owner, personaId: persona, url: `${site.base}/notes.txt` });
    assert.equal((await waitForJob(owner, jobId)).status, ragV1.JobStatus.JOB_STATUS_SUCCEEDED);
    await bus.publish(Topics.personaEvents, [
      { key: persona, value: encodeEvent(eventsV1.PersonaEvent, eventsV1.PersonaEvent.fromPartial({ personaId: persona, ownerId: owner, kind: { $case: 'deleted', value: {} } })) },
    ]);
    await eventually(async () => (await sourcesOf(persona)).length === 0, 'the persona’s sources to go');
    const { documents } = await client.retrieveDocuments({ ownerId: owner, personaId: persona, query: 'ferry Port Asterin', topK: 5 });
    assert.deepEqual(documents, []);
  });
});
