import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { configureLogger } from '@chat/logger';
import { LanceVectorStore } from '../src/adapters/lancedb/store.js';
import { hashEmbed, LocalHashEmbedder } from '../src/domain/hash-embedder.js';
import { KnowledgeStateCache } from '../src/domain/knowledge-state.js';
import type { SourceRepository, SpaceRepository } from '../src/domain/ports.js';
import { Retriever } from '../src/domain/retrieval.js';
import { KnowledgeIndex } from '../src/domain/spaces.js';
import type { EmbeddingSpace } from '../src/domain/types.js';

const logger = configureLogger({ silent: true });

const space = (id: string, personaId = 'p1'): EmbeddingSpace => ({
  id,
  personaId,
  ownerId: 'o1',
  provider: 'local',
  model: 'local-hash-384',
  baseUrl: '',
  dimensions: 384,
  state: 'active',
  createdAt: new Date(),
});

/** Repositories answering from mutable tables, counting reads; a read can be held open. */
class FakeRepos {
  owners = new Map<string, string[]>();
  spaces = new Map<string, EmbeddingSpace>();
  reads = 0;
  fail = false;
  private gate: Promise<void> | undefined;
  private openGate: (() => void) | undefined;

  hold(): void {
    this.gate = new Promise((r) => (this.openGate = r));
  }
  release(): void {
    this.openGate?.();
    this.gate = undefined;
  }

  readonly sourceRepo: Pick<SourceRepository, 'ownersOfPersona'> = {
    ownersOfPersona: async (p) => {
      this.reads++;
      const owners = [...(this.owners.get(p) ?? [])];
      await this.gate;
      if (this.fail) throw new Error('database down');
      return owners;
    },
  };
  readonly spaceRepo: Pick<SpaceRepository, 'active'> = {
    active: async (p) => {
      const s = this.spaces.get(p);
      await this.gate;
      if (this.fail) throw new Error('database down');
      return s;
    },
  };
}

describe('KnowledgeStateCache', () => {
  let repos: FakeRepos;
  let now: number;
  let cache: KnowledgeStateCache;

  beforeEach(() => {
    repos = new FakeRepos();
    now = 1_000_000;
    cache = new KnowledgeStateCache({ sources: repos.sourceRepo, spaces: repos.spaceRepo }, { ttlMs: 30_000, now: () => now });
    cache.setLive(true);
  });

  it('keeps a persona’s owners and active space, and the absence of knowledge, without reading again', async () => {
    repos.owners.set('p1', ['o1']);
    repos.spaces.set('p1', space('s1'));
    const first = await cache.get('p1');
    assert.deepEqual([first.owners, first.space?.id, first.cached], [['o1'], 's1', false]);
    const second = await cache.get('p1');
    assert.deepEqual([second.owners, second.space?.id, second.cached], [['o1'], 's1', true]);
    // A persona without knowledge is cached too: its replies stop before any search.
    assert.equal((await cache.get('p2')).space, undefined);
    assert.equal((await cache.get('p2')).cached, true);
    assert.equal(repos.reads, 2);
  });

  it('reads again after the persona’s entry is invalidated, and only that persona’s', async () => {
    await cache.get('p1');
    await cache.get('p2');
    repos.spaces.set('p1', space('s9'));
    cache.invalidate('p1');
    const p1 = await cache.get('p1');
    assert.equal(p1.space?.id, 's9');
    assert.equal(p1.cached, false);
    assert.equal((await cache.get('p2')).cached, true);
    assert.equal(repos.reads, 3);
  });

  it('does not cache a read that an invalidation overtook (its callers still get it)', async () => {
    repos.hold();
    // The read's snapshot is taken before the change…
    const inFlight = cache.get('p1');
    repos.spaces.set('p1', space('s2'));
    // …whose notification arrives before the read's answer.
    cache.invalidate('p1');
    repos.release();
    assert.equal((await inFlight).space, undefined, 'the caller gets what it read');
    const next = await cache.get('p1');
    assert.equal(next.cached, false, 'the overtaken read was not kept');
    assert.equal(next.space?.id, 's2');
    assert.equal(repos.reads, 2);
  });

  it('shares one read between concurrent misses of a persona', async () => {
    repos.hold();
    const all = Promise.all([cache.get('p1'), cache.get('p1'), cache.get('p1')]);
    repos.release();
    await all;
    assert.equal(repos.reads, 1);
  });

  it('caches nothing while not live, and forgets everything when it goes live or down', async () => {
    await cache.get('p1');
    cache.setLive(false);
    assert.equal(cache.stats.entries, 0);
    await cache.get('p1');
    await cache.get('p1');
    assert.equal(repos.reads, 3, 'every read goes to the database while notifications may be missed');
    assert.equal((await cache.get('p1')).cached, false);
    cache.setLive(true);
    await cache.get('p1');
    assert.equal((await cache.get('p1')).cached, true);
  });

  it('a read that started before the cache went down is not kept', async () => {
    repos.hold();
    const inFlight = cache.get('p1');
    cache.setLive(false);
    cache.setLive(true);
    repos.release();
    await inFlight;
    assert.equal((await cache.get('p1')).cached, false);
  });

  it('reads again after the TTL', async () => {
    await cache.get('p1');
    now += 29_999;
    assert.equal((await cache.get('p1')).cached, true);
    now += 2;
    assert.equal((await cache.get('p1')).cached, false);
  });

  it('never caches with a TTL of 0', async () => {
    const off = new KnowledgeStateCache({ sources: repos.sourceRepo, spaces: repos.spaceRepo }, { ttlMs: 0 });
    off.setLive(true);
    assert.equal(off.enabled, false);
    await off.get('p1');
    assert.equal((await off.get('p1')).cached, false);
    assert.equal(repos.reads, 2);
  });

  it('does not cache a failed read', async () => {
    repos.fail = true;
    await assert.rejects(cache.get('p1'), /database down/);
    repos.fail = false;
    assert.equal((await cache.get('p1')).cached, false);
    assert.equal((await cache.get('p1')).cached, true);
  });

  it('keeps at most maxEntries personas, dropping the oldest', async () => {
    const small = new KnowledgeStateCache({ sources: repos.sourceRepo, spaces: repos.spaceRepo }, { ttlMs: 30_000, maxEntries: 2 });
    small.setLive(true);
    await small.get('a');
    await small.get('b');
    await small.get('c');
    assert.equal(small.stats.entries, 2);
    assert.equal((await small.get('c')).cached, true);
    assert.equal((await small.get('a')).cached, false, 'the oldest went');
  });

  it('revalidate reads fresh state and marks a still-current space confirmed', async () => {
    repos.spaces.set('p1', space('s1'));
    await cache.get('p1');
    assert.equal(cache.confirmed('p1', 's1'), false);
    const fresh = await cache.revalidate('p1', 's1');
    assert.equal(fresh.space?.id, 's1');
    assert.equal(cache.confirmed('p1', 's1'), true);
    cache.invalidate('p1');
    assert.equal(cache.confirmed('p1', 's1'), false, 'a change clears the confirmation');
  });
});

describe('retrieval with a cached knowledge state', () => {
  let dir: string;
  let store: LanceVectorStore;
  const texts = ['Captain Orla Brennick keeps the lighthouse of Velmora.', 'The island soup is made with smoked seaweed.'];
  const chunks = (s: EmbeddingSpace) => texts.map((text, i) => ({ id: `${s.id}-c${i}`, personaId: s.personaId, sourceId: 'src', title: '', url: '', text, vector: hashEmbed(text) }));

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'rag-state-'));
    store = await LanceVectorStore.open(dir, logger);
  });
  after(async () => {
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const setup = () => {
    const repos = new FakeRepos();
    const cache = new KnowledgeStateCache({ sources: repos.sourceRepo, spaces: repos.spaceRepo }, { ttlMs: 60_000 });
    cache.setLive(true);
    const embedder = new LocalHashEmbedder();
    const index = new KnowledgeIndex({
      store,
      spaces: repos.spaceRepo as SpaceRepository,
      profiles: { configured: async () => ({ spec: { provider: 'local', model: embedder.name, baseUrl: '' }, apiKey: '' }) },
      makeEmbedder: () => embedder,
      logger,
    });
    const retriever = new Retriever({ index, sources: repos.sourceRepo as SourceRepository, state: cache });
    return { repos, cache, retriever };
  };

  it('answers a persona without knowledge from the cache, with no read', async () => {
    const { repos, retriever } = setup();
    assert.deepEqual(await retriever.retrieve({ ownerId: 'o1', personaId: 'nobody', query: 'lighthouse' }), []);
    const reads = repos.reads;
    assert.deepEqual(await retriever.retrieve({ ownerId: 'o1', personaId: 'nobody', query: 'lighthouse' }), []);
    assert.equal(repos.reads, reads);
  });

  it('searches the space the database names now when a cached space was switched and dropped before its notification came', async () => {
    const { repos, cache, retriever } = setup();
    const old = space('old-space', 'p-switch');
    const next = space('new-space', 'p-switch');
    await store.upsert(old, chunks(old));
    repos.owners.set('p-switch', ['o1']);
    repos.spaces.set('p-switch', old);
    const before = await retriever.retrieve({ ownerId: 'o1', personaId: 'p-switch', query: 'Who keeps the lighthouse?', topK: 1 });
    assert.equal(before[0]?.id, 'old-space-c0');
    // A re-embed on another replica: the new space is active, the old one dropped; no invalidation reached this cache.
    await store.upsert(next, chunks(next));
    repos.spaces.set('p-switch', next);
    await store.deleteSpace(old);
    const after = await retriever.retrieve({ ownerId: 'o1', personaId: 'p-switch', query: 'Who keeps the lighthouse?', topK: 1 });
    assert.equal(after[0]?.id, 'new-space-c0', 'never an empty answer from a dropped space');
    assert.equal((await cache.get('p-switch')).space?.id, 'new-space', 'the cache holds the current space now');
  });

  it('checks an empty space against the database once, not on every reply, until the next change', async () => {
    const { repos, cache, retriever } = setup();
    repos.owners.set('p-empty', ['o1']);
    repos.spaces.set('p-empty', space('empty-space', 'p-empty'));
    await retriever.retrieve({ ownerId: 'o1', personaId: 'p-empty', query: 'lighthouse' });
    assert.equal(repos.reads, 2, 'the state, then the check of the empty space');
    await retriever.retrieve({ ownerId: 'o1', personaId: 'p-empty', query: 'lighthouse' });
    await retriever.retrieve({ ownerId: 'o1', personaId: 'p-empty', query: 'lighthouse' });
    assert.equal(repos.reads, 2, 'not again');
    cache.invalidate('p-empty');
    await retriever.retrieve({ ownerId: 'o1', personaId: 'p-empty', query: 'lighthouse' });
    assert.equal(repos.reads, 4, 'a change makes it check again');
  });

  it('searches the current space when a space read just before a switch was dropped before the search (no cache)', async () => {
    const repos = new FakeRepos();
    const embedder = new LocalHashEmbedder();
    const old = space('race-old', 'p-race');
    const next = space('race-new', 'p-race');
    await store.upsert(next, chunks(next));
    repos.owners.set('p-race', ['o1']);
    // The first read of the active space answers the old one; by the search it is gone.
    let first = true;
    const spaces = {
      active: async (p: string) => {
        if (first) {
          first = false;
          return old;
        }
        return repos.spaces.get(p);
      },
    };
    repos.spaces.set('p-race', next);
    const index = new KnowledgeIndex({
      store,
      spaces: spaces as SpaceRepository,
      profiles: { configured: async () => ({ spec: { provider: 'local', model: embedder.name, baseUrl: '' }, apiKey: '' }) },
      makeEmbedder: () => embedder,
      logger,
    });
    const retriever = new Retriever({ index, sources: repos.sourceRepo as SourceRepository });
    const found = await retriever.retrieve({ ownerId: 'o1', personaId: 'p-race', query: 'Who keeps the lighthouse?', topK: 1 });
    assert.equal(found[0]?.id, 'race-new-c0');
  });

  it('checks ownership on the cached owners', async () => {
    const { repos, retriever } = setup();
    repos.owners.set('p-owned', ['o1']);
    await retriever.retrieve({ ownerId: 'o1', personaId: 'p-owned', query: 'q' });
    await assert.rejects(retriever.retrieve({ ownerId: 'o2', personaId: 'p-owned', query: 'q' }), /persona/);
  });
});
