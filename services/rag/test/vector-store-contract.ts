import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { hashEmbed } from '../src/domain/hash-embedder.js';
import type { VectorStore } from '../src/domain/ports.js';
import type { ScoredChunk, StoredChunk } from '../src/domain/types.js';

/** A vector store that can also count its chunks (both adapters can). */
export interface CountingVectorStore extends VectorStore {
  count(personaId?: string): Promise<number>;
}

/** StoreUnderTest is one store opened for one test. */
export interface StoreUnderTest {
  store: CountingVectorStore;
  /** Opens the same storage again (the current store is closed first by the suite). */
  reopen(): Promise<CountingVectorStore>;
  /** Closes whatever is open and removes what this test created (if the factory needs to). */
  dispose(): Promise<void>;
}

/**
 * vectorStoreContract defines the behaviour every VectorStore adapter must show. factory opens a
 * store for each test. Stores may be shared between tests (e.g. one Milvus collection per run):
 * every test uses its own persona, source and chunk ids, and counts only its own personas.
 */
export function vectorStoreContract(name: string, factory: () => Promise<StoreUnderTest>): void {
  describe(`${name}: the vector store contract`, function () {
    this.timeout(60_000);
    let sut: StoreUnderTest;
    let store: CountingVectorStore;
    /** Unique per test, so tests never see each other's rows. */
    let u: string;
    const pid = (p: string) => `${p}-${u}`;
    const cid = (c: string) => `${c}-${u}`;
    const chunk = (id: string, personaId: string, sourceId: string, text: string, extra: Partial<StoredChunk> = {}): StoredChunk => ({
      id: cid(id),
      personaId: pid(personaId),
      sourceId: cid(sourceId),
      title: `title ${sourceId}`,
      url: '',
      text,
      vector: hashEmbed(text),
      ...extra,
    });
    const ids = (hits: ScoredChunk[]) => hits.map((h) => h.id.replace(`-${u}`, ''));
    const search = (personaId: string, query: string, topK: number) => store.search(pid(personaId), hashEmbed(query), topK);

    beforeEach(async () => {
      u = randomUUID().slice(0, 8);
      sut = await factory();
      store = sut.store;
    });
    afterEach(async () => {
      await sut?.dispose();
    });

    it('finds nothing for a persona with nothing stored, and deletes nothing without error', async () => {
      assert.deepEqual(await search('p1', 'anything', 5), []);
      await store.deleteBySource(cid('s1'));
      await store.deleteByPersona(pid('p1'));
      assert.deepEqual(await search('p1', 'anything', 5), []);
      assert.equal(await store.count(pid('p1')), 0);
    });

    it('sees upserted chunks in the very next search, closest first with a cosine score', async () => {
      await store.upsert([
        chunk('c1', 'p1', 's1', 'Ada loves lemon cake with icing.'),
        chunk('c2', 'p1', 's1', 'The train leaves at nine.'),
        chunk('c3', 'p1', 's2', 'Lemon trees grow in the south.'),
      ]);
      const hits = await search('p1', 'lemon cake', 3);
      assert.equal(hits.length, 3);
      assert.equal(hits[0]!.id, cid('c1'));
      assert.equal(hits[0]!.sourceId, cid('s1'));
      assert.equal(hits[0]!.title, 'title s1');
      assert.equal(hits[0]!.text, 'Ada loves lemon cake with icing.');
      assert.ok(hits[0]!.score > hits[1]!.score && hits[1]!.score >= hits[2]!.score, `scores not best first: ${hits.map((h) => h.score).join(', ')}`);
      for (const h of hits) assert.ok(h.score >= -1 && h.score <= 1, `score ${h.score} outside [-1, 1]`);
      assert.ok(hits[0]!.score > 0.3);
      const exact = await search('p1', 'The train leaves at nine.', 1);
      assert.equal(exact[0]!.id, cid('c2'));
      assert.ok(Math.abs(exact[0]!.score - 1) < 1e-4, `identical text should score 1, got ${exact[0]!.score}`);
    });

    it('respects top_k', async () => {
      await store.upsert(Array.from({ length: 12 }, (_, i) => chunk(`c${i}`, 'p1', 's1', `note number ${i} about lemons`)));
      assert.equal((await search('p1', 'lemons', 5)).length, 5);
      assert.equal((await search('p1', 'lemons', 1)).length, 1);
      assert.equal((await search('p1', 'lemons', 100)).length, 12);
      assert.deepEqual(await search('p1', 'lemons', 0), []);
      const all = await search('p1', 'lemons', 12);
      for (let i = 1; i < all.length; i++) assert.ok(all[i - 1]!.score >= all[i]!.score, 'scores must be best first');
    });

    it("never returns another persona's chunks, even when they are closer", async () => {
      await store.upsert([
        chunk('mine', 'p1', 's1', 'the weather in spring is mild'),
        chunk('theirs', 'p2', 's2', 'secret lemon cake recipe'),
        chunk('theirs2', 'p2', 's2', 'secret lemon cake recipe with icing'),
      ]);
      const hits = await search('p1', 'secret lemon cake recipe', 10);
      assert.deepEqual(ids(hits), ['mine']);
      assert.deepEqual(ids(await search('p2', 'secret lemon cake recipe', 10)).sort(), ['theirs', 'theirs2']);
    });

    it('keeps personas apart even with quotes and backslashes in the persona id', async () => {
      const evil = [`p2' OR '1'='1`, `p3" || persona_id != "`, `p4\\" or true or "\\`];
      await store.upsert([
        chunk('a', 'p1', 's1', 'secret of persona one'),
        ...evil.map((p, i) => chunk(`e${i}`, p, `se${i}`, `secret of persona ${i + 2}`)),
      ]);
      assert.deepEqual(ids(await search('p1', 'secret persona', 10)), ['a']);
      for (const [i, p] of evil.entries()) assert.deepEqual(ids(await search(p, 'secret persona', 10)), [`e${i}`], `persona ${p}`);
      assert.deepEqual(await search('p9', 'secret persona', 10), []);
    });

    it('replaces a chunk upserted again with the same id (no duplicates)', async () => {
      await store.upsert([chunk('c1', 'p1', 's1', 'old text')]);
      await store.upsert([chunk('c1', 'p1', 's1', 'new text')]);
      await store.upsert([chunk('c1', 'p1', 's1', 'newest text'), chunk('c2', 'p1', 's1', 'other text')]);
      assert.equal(await store.count(pid('p1')), 2);
      const hits = await search('p1', 'newest text', 10);
      assert.deepEqual(ids(hits).sort(), ['c1', 'c2']);
      assert.equal(hits[0]!.id, cid('c1'));
      assert.equal(hits[0]!.text, 'newest text');
    });

    it('deletes by source', async () => {
      await store.upsert([chunk('c1', 'p1', 's1', 'one'), chunk('c2', 'p1', 's2', 'two'), chunk('c3', 'p1', 's1', 'three')]);
      await store.deleteBySource(cid('s1'));
      assert.deepEqual(ids(await search('p1', 'one two three', 10)), ['c2']);
      assert.equal(await store.count(pid('p1')), 1);
    });

    it('deletes by persona and keeps the other personas', async () => {
      await store.upsert([chunk('c1', 'p1', 's1', 'one'), chunk('c2', 'p1', 's2', 'two'), chunk('c3', 'p2', 's3', 'three')]);
      await store.deleteByPersona(pid('p1'));
      assert.deepEqual(await search('p1', 'one two', 10), []);
      assert.equal(await store.count(pid('p1')), 0);
      assert.equal(await store.count(pid('p2')), 1);
      assert.deepEqual(ids(await search('p2', 'three', 10)), ['c3']);
    });

    it('stores long and non-ASCII titles, URLs and texts', async () => {
      const title = 'Ünïcødé title 🍋 '.repeat(400);
      const url = `https://example.com/${'é'.repeat(3000)}`;
      const text = 'Zitronenkuchen mit Zuckerguss 🍰 '.repeat(100);
      await store.upsert([chunk('c1', 'p1', 's1', text, { title, url })]);
      const [hit] = await search('p1', text, 1);
      assert.equal(hit!.text, text);
      assert.ok(hit!.title.length > 0 && title.startsWith(hit!.title), 'the title is kept or cut at a character boundary');
      assert.ok(hit!.url.length > 0 && url.startsWith(hit!.url), 'the URL is kept or cut at a character boundary');
    });

    it('serialises concurrent writes and keeps the data after reopening', async () => {
      await Promise.all(Array.from({ length: 10 }, (_, i) => store.upsert([chunk(`c${i}`, 'p1', `s${i % 3}`, `text number ${i}`)])));
      await Promise.all([store.deleteBySource(cid('s0')), store.upsert([chunk('late', 'p1', 's9', 'late text')])]);
      await store.close();
      store = await sut.reopen();
      assert.equal(await store.count(pid('p1')), 10 - 4 + 1);
      assert.deepEqual(ids(await search('p1', 'late text', 1)), ['late']);
    });
  });
}
