import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { connectDatabase, eventually, isolatedDatabase, migrate, QueryTypes, type Database, type IsolatedDatabase } from '@chat/db';
import { configureLogger } from '@chat/logger';
import { KNOWLEDGE_CHANNEL, PgKnowledgeListener } from '../src/adapters/postgres/knowledge-listener.js';
import { PgSpaceRepository } from '../src/adapters/postgres/knowledge-repositories.js';
import { ragMigrations } from '../src/adapters/postgres/migrations.js';
import { PgSourceRepository } from '../src/adapters/postgres/repositories.js';
import { KnowledgeStateCache } from '../src/domain/knowledge-state.js';

const logger = configureLogger({ silent: true });

/** One rag replica's part of it: its own pool, repositories, cache and listener. */
interface Replica {
  db: Database;
  sources: PgSourceRepository;
  spaces: PgSpaceRepository;
  cache: KnowledgeStateCache;
  listener: PgKnowledgeListener;
  /** Persona ids its own writes reported (onChange). */
  local: string[];
}

/**
 * Cross-replica invalidation of the knowledge state cache through PostgreSQL notifications, on the
 * real server: two pools stand for two rag replicas; what one writes drops the other's entry.
 */
describe('knowledge state invalidation across replicas (PostgreSQL LISTEN/NOTIFY)', function () {
  this.timeout(60_000);
  let isolated: IsolatedDatabase;
  const replicas: Replica[] = [];

  const replica = async (): Promise<Replica> => {
    const db = await connectDatabase(isolated.url, logger, 3);
    const local: string[] = [];
    const sources = new PgSourceRepository(db.sequelize, (p) => local.push(p));
    const spaces = new PgSpaceRepository(db.sequelize, (p) => local.push(p));
    const cache = new KnowledgeStateCache({ sources, spaces }, { ttlMs: 600_000 });
    const listener = new PgKnowledgeListener(db.sequelize, { changed: (p) => cache.invalidate(p), live: (l) => cache.setLive(l) }, logger);
    await listener.start();
    const r = { db, sources, spaces, cache, listener, local };
    replicas.push(r);
    return r;
  };

  before(async () => {
    const url = process.env.DATABASE_URL;
    if (!url) throw new Error('DATABASE_URL is not set (npm test starts PostgreSQL; or run scripts/infra up postgres)');
    isolated = await isolatedDatabase(url, 'rag_knowledge_listener_test', logger);
    const db = await connectDatabase(isolated.url, logger, 1);
    await migrate(db.sequelize, 'rag', ragMigrations, logger);
    await db.close();
  });

  after(async () => {
    for (const r of replicas) {
      await r.listener.stop();
      await r.db.close();
    }
    await isolated?.drop();
  });

  const newSpace = (personaId: string, state: 'active' | 'building') => ({
    id: randomUUID().replace(/-/g, ''),
    personaId,
    ownerId: 'owner-1',
    provider: 'local' as const,
    model: 'local-hash-384',
    baseUrl: '',
    dimensions: 384,
    state,
  });
  const source = (personaId: string) => ({
    id: randomUUID(),
    personaId,
    ownerId: 'owner-1',
    kind: 'TEXT' as const,
    title: 't',
    url: '',
    contentHash: 'h',
    chunkCount: 1,
    bytes: 1,
  });

  it('drops a replica’s cached state when another replica gives the persona knowledge, switches its space or purges it', async () => {
    const one = await replica();
    const two = await replica();
    assert.equal(one.cache.enabled, true, 'the cache is on once LISTEN is in effect');
    const persona = randomUUID();

    // Replica one caches "no knowledge".
    assert.equal((await one.cache.get(persona)).space, undefined);
    assert.equal((await one.cache.get(persona)).cached, true);

    // Replica two ingests the first chunk of the persona: a space and a source.
    const first = (await two.spaces.create(newSpace(persona, 'active')))!;
    await two.sources.save(source(persona));
    assert.deepEqual([...new Set(two.local)], [persona], 'the writer’s own cache is told synchronously');
    const got = await eventually(async () => {
      const s = await one.cache.get(persona);
      return s.space ? s : undefined;
    }, 'replica one to see the new knowledge');
    assert.equal(got.space?.id, first.id);
    assert.deepEqual(got.owners, ['owner-1']);
    // Both writes' notifications in, it is cached again.
    await eventually(async () => ((await one.cache.get(persona)).cached ? true : undefined), 'replica one to cache the new state');

    // A re-embed switch on replica two.
    const building = (await two.spaces.create(newSpace(persona, 'building')))!;
    await two.spaces.activate(building.id);
    await eventually(async () => ((await one.cache.get(persona)).space?.id === building.id ? true : undefined), 'replica one to see the switch');

    // A purge on replica two.
    await two.spaces.deleteByPersona(persona);
    await two.sources.deleteByPersona(persona);
    await eventually(async () => {
      const s = await one.cache.get(persona);
      return s.space === undefined && s.owners.length === 0 ? true : undefined;
    }, 'replica one to see the purge');
  });

  it('turns the cache off while the listening connection is gone, and on again once it listens anew', async () => {
    const one = replicas[0] ?? (await replica());
    const persona = randomUUID();
    await one.cache.get(persona);
    assert.equal((await one.cache.get(persona)).cached, true);

    // Kill the listening backend (as a server restart or a network cut would).
    const admin = await connectDatabase(isolated.url, logger, 1);
    try {
      const killed = await admin.sequelize.query<{ ok: boolean }>(
        `select pg_terminate_backend(pid) as ok from pg_stat_activity where datname = current_database() and query = $1`,
        { bind: [`LISTEN ${KNOWLEDGE_CHANNEL}`], type: QueryTypes.SELECT },
      );
      assert.ok(killed.length >= 1, 'found the listening connections');
    } finally {
      await admin.close();
    }
    // Either the loss was seen (off), or it was already seen and LISTEN is back (on, with the cache emptied).
    await eventually(async () => (one.cache.stats.entries === 0 ? true : undefined), 'the cache to be emptied when the connection went');
    await eventually(async () => (one.listener.listening && one.cache.enabled ? true : undefined), 'the listener to listen again');

    // Listening again: a change elsewhere reaches the cache.
    const two = replicas[1] ?? (await replica());
    await one.cache.get(persona);
    assert.equal((await one.cache.get(persona)).cached, true);
    await two.sources.save(source(persona));
    await eventually(async () => ((await one.cache.get(persona)).owners.length === 1 ? true : undefined), 'replica one to see the new source after the reconnect');
  });
});
