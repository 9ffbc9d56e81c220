import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { RagClient } from '@chat/clients';
import { loadConfig } from '@chat/config';
import { eventsV1, personaV1 } from '@chat/contracts';
import { connectDatabase, eventually, isolatedDatabase, QueryTypes, type Database, type IsolatedDatabase } from '@chat/db';
import { startDevModel, type DevModel } from '@chat/devmodel';
import { encodeEvent, KafkaBus, Topics } from '@chat/events';
import { closeClients } from '@chat/grpc';
import { configureLogger } from '@chat/logger';
import { generateKeySpec, Keyring } from '@chat/secrets';
import { dropSpaceCollections } from './milvus-cleanup.js';
import { Kafka, logLevel } from 'kafkajs';
import pg from 'pg';
import { ragConfig } from '../src/config.js';
import { PERSONA_EVENTS_GROUP, startRagServer, type RagServer } from '../src/server.js';

const logger = configureLogger({ silent: true });

/**
 * Two rag replicas on one PostgreSQL database, one Kafka namespace and one Milvus: persona and
 * profile events invalidate the caches of BOTH (each replica reads them in a group of its own),
 * while a persona's background is still ingested once (the shared group); knowledge one replica
 * ingests reaches the other's next reply through PostgreSQL's notifications. docs/decisions/0022.
 */
describe('two rag replicas on Kafka: every replica’s caches are invalidated', function () {
  this.timeout(180_000);
  const brokers = process.env.KAFKA_BROKERS?.split(',');
  const milvusAddress = process.env.MILVUS_ADDRESS;
  const namespace = `rag-replicas-${randomUUID().slice(0, 8)}`;
  const collection = `test_replicas_${randomUUID().replace(/-/g, '').slice(0, 12)}`;
  const owner = `owner-${randomUUID()}`;
  let isolated: IsolatedDatabase;
  let tmp: string;
  let model: DevModel;
  let db: Database;
  const buses: KafkaBus[] = [];
  const replicas: RagServer[] = [];
  /** resolvePersona calls per replica and persona. */
  const resolves = [new Map<string, number>(), new Map<string, number>()];
  const resolved = (i: number, personaId: string) => resolves[i]!.get(personaId) ?? 0;
  /** The API profile a persona names (else the default profile): what the persona service would answer. */
  const profileOf = new Map<string, string>();
  /** The embedding model a persona's profile names (the development model's /v1/embeddings). */
  const embeddingOf = new Map<string, string>();
  const databases: Database[] = [];

  // The persona service's ResolvePersona, as each replica calls it.
  function personaEvent(personaId: string, background: string): Uint8Array {
    return encodeEvent(eventsV1.PersonaEvent, eventsV1.PersonaEvent.fromPartial({ personaId, ownerId: owner, kind: { $case: 'upserted', value: { name: 'Guide', background } } }));
  }

  const resolveFor = (i: number) => async (req: { ownerId: string; personaId: string }) => {
    resolves[i]!.set(req.personaId, resolved(i, req.personaId) + 1);
    const profileId = profileOf.get(req.personaId);
    if (!profileId) return personaV1.ResolvePersonaResponse.fromPartial({ persona: { id: req.personaId, ownerId: req.ownerId }, usesDefaultProfile: true });
    return personaV1.ResolvePersonaResponse.fromPartial({
      persona: { id: req.personaId, ownerId: req.ownerId, apiProfileId: profileId },
      profile: { profile: { id: profileId, baseUrl: model.endpoint.baseUrl, model: 'dev-echo', embeddingModel: embeddingOf.get(req.personaId) ?? '' } },
    });
  };

  before(async () => {
    if (!brokers) throw new Error('KAFKA_BROKERS is not set (npm test starts Kafka; or run scripts/infra up kafka)');
    if (!milvusAddress) throw new Error('MILVUS_ADDRESS is not set (npm test starts Milvus; or run scripts/infra up milvus)');
    const url = process.env.DATABASE_URL;
    if (!url) throw new Error('DATABASE_URL is not set (npm test starts PostgreSQL; or run scripts/infra up postgres)');
    isolated = await isolatedDatabase(url, 'rag_replicas_test', logger);
    db = await connectDatabase(isolated.url, logger, 2);
    tmp = mkdtempSync(join(tmpdir(), 'rag-replicas-'));
    model = await startDevModel({ logger });
    const keyring = Keyring.parse(generateKeySpec());
    for (let i = 0; i < 2; i++) {
      const bus = new KafkaBus({ brokers, clientId: `rag-replica-${i}`, namespace });
      buses.push(bus);
      if (i === 0) await bus.ensureTopics([Topics.personaEvents, Topics.profileEvents].map((name) => ({ name, partitions: 2 })));
      const database = await connectDatabase(isolated.url, logger, 5);
      databases.push(database);
      const config = loadConfig([ragConfig], {
        MILVUS_ADDRESS: milvusAddress,
        MILVUS_COLLECTION: collection,
        DATA_DIR: join(tmp, `replica-${i}`),
        // No periodic job sweep: the query count below sees only the reply's own queries.
        RAG_INGEST_SWEEP_MS: '3600000',
      }).get(ragConfig)!;
      replicas.push(await startRagServer({ config, database, bus, llm: model.endpoint, resolvePersona: resolveFor(i), keyring, logger }));
    }
    // A fresh group starting at the end may miss what is published while it first looks up its
    // offsets: wait (bounded) until both replicas' cache groups receive live persona events.
    const warmup = randomUUID();
    const base = replicas.map((r) => r.knowledgeState.stats.invalidations);
    let live = false;
    for (let attempt = 0; attempt < 60 && !live; attempt++) {
      await buses[0]!.publish(Topics.personaEvents, [{ key: warmup, value: personaEvent(warmup, '') }]);
      for (let wait = 0; wait < 20 && !live; wait++) {
        await new Promise((r) => setTimeout(r, 50));
        live = replicas.every((r, i) => r.knowledgeState.stats.invalidations > base[i]!);
      }
    }
    assert.ok(live, 'both replicas receive live persona events');
  });

  after(async () => {
    for (const r of replicas) await r.stop().catch(() => undefined);
    for (const b of buses) await b.close().catch(() => undefined);
    for (const d of databases) await d.close().catch(() => undefined);
    closeClients();
    await model?.stop();
    await db?.close();
    await isolated?.drop();
    if (tmp) rmSync(tmp, { recursive: true, force: true });
    if (brokers) {
      const admin = new Kafka({ clientId: 'rag-replicas-admin', brokers, logLevel: logLevel.NOTHING }).admin();
      await admin.connect();
      const groups = (await admin.listGroups()).groups.map((g) => g.groupId).filter((g) => g.startsWith(`${namespace}.`));
      if (groups.length) await admin.deleteGroups(groups).catch(() => undefined);
      await admin.deleteTopics({ topics: [Topics.personaEvents, Topics.profileEvents].map((t) => `${namespace}.${t}`) }).catch(() => undefined);
      await admin.disconnect();
    }
    if (milvusAddress) await dropSpaceCollections(milvusAddress, collection);
  });

  const client = (i: number) => new RagClient(replicas[i]!.address);
  /** The persona the knowledge test gives knowledge (the re-embed test goes on with it). */
  let knowing: string | undefined;

  it('each replica reads persona and profile events in a consumer group of its own, and the persona topic in the shared one', () => {
    const [a, b] = replicas;
    assert.notEqual(a!.cacheGroup, b!.cacheGroup);
    assert.notEqual(a!.cacheGroup, PERSONA_EVENTS_GROUP);
  });

  it('a persona event drops the persona’s cached profile on both replicas; its background is ingested once', async () => {
    const persona = randomUUID();
    // Both replicas resolve (and cache) the persona.
    for (const i of [0, 1]) await replicas[i]!.profiles.resolve(owner, persona);
    for (const i of [0, 1]) await replicas[i]!.profiles.resolve(owner, persona);
    assert.deepEqual([resolved(0, persona), resolved(1, persona)], [1, 1], 'served from each replica’s cache');

    await buses[0]!.publish(Topics.personaEvents, [{ key: persona, value: personaEvent(persona, 'The lighthouse keeper of Velmora is Captain Orla Brennick.') }]);
    // Both caches were dropped: each replica asks the persona service again.
    await eventually(async () => {
      for (const i of [0, 1]) await replicas[i]!.profiles.resolve(owner, persona);
      return resolved(0, persona) > 1 && resolved(1, persona) > 1 ? true : undefined;
    }, 'both replicas to resolve the persona again');

    // The background became knowledge exactly once (one job, one source), whichever replica took the event.
    await eventually(async () => {
      const [row] = await db.sequelize.query<{ n: number }>(`select count(*)::int as n from rag.sources where persona_id = $1 and kind = 'BACKGROUND'`, { bind: [persona], type: QueryTypes.SELECT });
      return row!.n === 1 ? true : undefined;
    }, 'the background source');
    const jobs = await db.sequelize.query<{ n: number }>(`select count(*)::int as n from rag.ingest_jobs where persona_id = $1`, { bind: [persona], type: QueryTypes.SELECT });
    assert.equal(jobs[0]!.n, 1, 'one ingestion of the background, not one per replica');
  });

  it('a profile event drops the profile’s cached resolutions on both replicas', async () => {
    const persona = randomUUID();
    const profileId = randomUUID();
    profileOf.set(persona, profileId);
    // Both replicas hold a resolution naming the profile.
    for (const i of [0, 1]) assert.equal((await replicas[i]!.profiles.resolve(owner, persona)).profileId, profileId);
    for (const i of [0, 1]) assert.deepEqual(replicas[i]!.profiles.personasOf(profileId), [persona]);
    await buses[1]!.publish(Topics.profileEvents, [{ key: profileId, value: encodeEvent(eventsV1.ApiProfileChanged, eventsV1.ApiProfileChanged.fromPartial({ profileId })) }]);
    await eventually(async () => (replicas.every((r) => r.profiles.personasOf(profileId).length === 0) ? true : undefined), 'both replicas to drop the profile');
    for (const i of [0, 1]) await replicas[i]!.profiles.resolve(owner, persona);
    assert.deepEqual([resolved(0, persona), resolved(1, persona)], [2, 2], 'each replica resolved the persona again after the event');
  });

  const question = 'Who keeps the lighthouse of Velmora?';

  it('knowledge ingested on one replica is searched by the other’s next reply; a cached reply reads nothing from PostgreSQL', async () => {
    const persona = randomUUID();
    knowing = persona;
    // Replica 0 answers before the persona has knowledge: it caches "no knowledge".
    const none = await client(0).retrieveDocuments({ ownerId: owner, personaId: persona, query: question, topK: 3 });
    assert.equal(none.documents.length, 0);
    assert.equal((await replicas[0]!.knowledgeState.get(persona)).cached, true);

    // Replica 1 ingests the persona's first knowledge.
    const jobId = await replicas[1]!.ingest.submit({ ownerId: owner, personaId: persona, text: 'Captain Orla Brennick keeps the lighthouse of Velmora.', title: 'Velmora', source: '', kind: 'TEXT' });
    await eventually(async () => ((await replicas[1]!.ingest.getJob(owner, jobId)).status === 'succeeded' ? true : undefined), 'the ingestion on replica 1');
    // Replica 0's cache entry was dropped by the notification (within its latency, milliseconds).
    const found = await eventually(async () => {
      const { documents } = await client(0).retrieveDocuments({ ownerId: owner, personaId: persona, query: question, topK: 3 });
      return documents.length > 0 ? documents : undefined;
    }, 'replica 0 to search the new knowledge');
    assert.match(found[0]!.text, /Orla Brennick/);

    // Queries per reply on replica 0: with the cache, and with it off (the reads every reply made before).
    const count = async (personaId: string, quotes: RegExp): Promise<number> => {
      let n = 0;
      const original = pg.Client.prototype.query;
      pg.Client.prototype.query = function (this: pg.Client, ...args: unknown[]) {
        n++;
        return (original as (...a: unknown[]) => unknown).apply(this, args);
      } as typeof original;
      try {
        const chunks: string[] = [];
        for await (const r of client(0).generate({ ownerId: owner, personaId, systemPrompt: 'You are a guide.', userMessage: question })) {
          if (r.item?.$case === 'completed') chunks.push(r.item.value.content);
        }
        assert.match(chunks.join(''), quotes);
      } finally {
        pg.Client.prototype.query = original;
      }
      return n;
    };
    await replicas[1]!.ingest.idle();
    await replicas[0]!.ingest.idle();
    const withoutKnowledge = randomUUID();
    const measured: Record<string, { cached: number; uncached: number }> = {};
    for (const [name, personaId, quotes] of [
      ['with knowledge', persona, /Orla Brennick/],
      ['without knowledge', withoutKnowledge, /development model/i],
    ] as const) {
      await count(personaId, quotes); // warms the cache
      const cached = await count(personaId, quotes);
      replicas[0]!.knowledgeState.setLive(false);
      let uncached: number;
      try {
        uncached = await count(personaId, quotes);
      } finally {
        // Its listener is still listening: back on.
        replicas[0]!.knowledgeState.setLive(true);
      }
      measured[name] = { cached, uncached };
      console.log(`      PostgreSQL queries per Generate (persona ${name}): ${uncached} without the cache, ${cached} with it`);
    }
    for (const [name, m] of Object.entries(measured)) {
      assert.equal(m.cached, 0, `a reply of a cached persona (${name}) reads nothing from PostgreSQL`);
      assert.ok(m.uncached > 0, `without the cache the reply (${name}) reads its knowledge state`);
    }
  });

  it('a re-embed on one replica never makes the other’s searches come back empty, and the other then searches the new space', async () => {
    const persona = knowing;
    assert.ok(persona, 'the knowledge test ran first');
    // The persona's profile now names a remote embedding model; both replicas forget the old answer.
    profileOf.set(persona, randomUUID());
    embeddingOf.set(persona, 'dev-embed-64');
    for (const r of replicas) r.profiles.invalidatePersona(persona);
    // Replica 0 has the current (local) space cached.
    assert.ok((await client(0).retrieveDocuments({ ownerId: owner, personaId: persona, query: question, topK: 1 })).documents.length > 0);
    const before = (await replicas[0]!.knowledgeState.get(persona)).space!;
    assert.equal(before.model, 'local-hash-384');

    const jobId = await replicas[1]!.knowledge.reembed(owner, persona);
    let searches = 0;
    let status = '';
    for (let i = 0; i < 5_000 && status !== 'succeeded' && status !== 'failed'; i++) {
      const { documents } = await client(0).retrieveDocuments({ ownerId: owner, personaId: persona, query: question, topK: 1 });
      searches++;
      assert.ok(documents.length > 0, `replica 0's search ${searches} came back empty during the re-embed on replica 1`);
      assert.match(documents[0]!.text, /Orla Brennick/);
      status = (await replicas[1]!.knowledge.getJob(owner, jobId)).status;
    }
    assert.equal(status, 'succeeded');
    // After the switch (and the drop of the old space), replica 0 answers from the new space.
    const after = await eventually(async () => {
      const s = (await replicas[0]!.knowledgeState.get(persona)).space;
      return s && s.id !== before.id ? s : undefined;
    }, 'replica 0 to know the new space');
    assert.equal(after.model, 'dev-embed-64');
    const { documents } = await client(0).retrieveDocuments({ ownerId: owner, personaId: persona, query: question, topK: 1 });
    assert.match(documents[0]!.text, /Orla Brennick/);
    assert.ok(searches >= 3, `expected several searches during the re-embed, got ${searches}`);
  });
});
