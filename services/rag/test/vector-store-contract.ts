import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { hashEmbed } from '../src/domain/hash-embedder.js';
import { stableUuid } from '../src/domain/validate.js';
import type { VectorStore } from '../src/domain/ports.js';
import type { ScoredChunk, SpaceRef, StoredChunk } from '../src/domain/types.js';

/** A vector store that can also count a persona's chunks in every space (both adapters can). */
export interface CountingVectorStore extends VectorStore {
  countPersona(personaId: string): Promise<number>;
}

/** StoreUnderTest is one store opened for one test. */
export interface StoreUnderTest {
  store: CountingVectorStore;
  /** Opens the same storage again (the current store is closed first by the suite). */
  reopen(): Promise<CountingVectorStore>;
  /** Closes whatever is open and removes what this test created (if the factory needs to). */
  dispose(): Promise<void>;
}

/** A deterministic 8-dimensional vector of a text (a second embedding model, of another size). */
function smallEmbed(text: string): number[] {
  const v = hashEmbed(text, 64);
  const out = new Array<number>(8).fill(0);
  v.forEach((x, i) => (out[i % 8]! += x));
  const n = Math.sqrt(out.reduce((s, x) => s + x * x, 0)) || 1;
  return out.map((x) => x / n);
}

/**
 * vectorStoreContract defines the behaviour every VectorStore adapter must show. factory opens a
 * store for each test. Stores may be shared between tests (e.g. one Milvus collection per run):
 * every test uses its own persona, space, source and chunk ids, and counts only its own personas.
 */
export function vectorStoreContract(name: string, factory: () => Promise<StoreUnderTest>): void {
  describe(`${name}: the vector store contract`, function () {
    this.timeout(120_000);
    let sut: StoreUnderTest;
    let store: CountingVectorStore;
    /** Unique per test, so tests never see each other's rows. */
    let u: string;
    const pid = (p: string) => `${p}-${u}`;
    const cid = (c: string) => `${c}-${u}`;
    /** The space of a persona in this test (one per persona unless a generation is given). */
    const space = (personaId: string, generation = 1, dimensions = 384): SpaceRef => ({ id: `${u}${personaId}g${generation}`.replace(/[^a-z0-9]/gi, ''), personaId: pid(personaId), dimensions });
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
    const put = (personaId: string, chunks: StoredChunk[], generation = 1) => store.upsert(space(personaId, generation), chunks);
    const ids = (hits: ScoredChunk[]) => hits.map((h) => h.id.replace(`-${u}`, ''));
    const search = (personaId: string, query: string, topK: number, generation = 1) => store.search(space(personaId, generation), hashEmbed(query), topK);
    const lexical = (personaId: string, query: string, topK: number, generation = 1) => store.lexicalSearch(space(personaId, generation), query, topK);

    beforeEach(async () => {
      u = randomUUID().replace(/-/g, '').slice(0, 10);
      sut = await factory();
      store = sut.store;
    });
    afterEach(async () => {
      await sut?.dispose();
    });

    it('finds nothing for a persona with nothing stored, and deletes nothing without error', async () => {
      assert.deepEqual(await search('p1', 'anything', 5), []);
      assert.deepEqual(await lexical('p1', 'anything', 5), []);
      await store.deleteBySource(cid('s1'));
      await store.deleteByPersona(pid('p1'));
      await store.deleteSpace(space('p1'));
      assert.deepEqual(await search('p1', 'anything', 5), []);
      assert.equal(await store.countPersona(pid('p1')), 0);
      assert.equal(await store.count(space('p1')), 0);
    });

    it('sees upserted chunks in the very next search, closest first with a cosine score', async () => {
      await put('p1', [
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
      assert.equal(await store.count(space('p1')), 3);
    });

    it('respects top_k', async () => {
      await put('p1', Array.from({ length: 12 }, (_, i) => chunk(`c${i}`, 'p1', 's1', `note number ${i} about lemons`)));
      assert.equal((await search('p1', 'lemons', 5)).length, 5);
      assert.equal((await search('p1', 'lemons', 1)).length, 1);
      assert.equal((await search('p1', 'lemons', 100)).length, 12);
      assert.deepEqual(await search('p1', 'lemons', 0), []);
      const all = await search('p1', 'lemons', 12);
      for (let i = 1; i < all.length; i++) assert.ok(all[i - 1]!.score >= all[i]!.score, 'scores must be best first');
      assert.equal((await lexical('p1', 'lemons', 3)).length, 3);
      assert.deepEqual(await lexical('p1', 'lemons', 0), []);
    });

    it("never returns another persona's chunks, even when they are closer", async () => {
      await put('p1', [chunk('mine', 'p1', 's1', 'the weather in spring is mild')]);
      await put('p2', [chunk('theirs', 'p2', 's2', 'secret lemon cake recipe'), chunk('theirs2', 'p2', 's2', 'secret lemon cake recipe with icing')]);
      const hits = await search('p1', 'secret lemon cake recipe', 10);
      assert.deepEqual(ids(hits), ['mine']);
      assert.deepEqual(ids(await search('p2', 'secret lemon cake recipe', 10)).sort(), ['theirs', 'theirs2']);
      assert.deepEqual(await lexical('p1', 'secret lemon cake recipe', 10), []);
      assert.deepEqual(ids(await lexical('p2', 'secret lemon cake recipe', 10)).sort(), ['theirs', 'theirs2']);
    });

    it('refuses chunks of another persona than the space', async () => {
      await assert.rejects(store.upsert(space('p1'), [chunk('c1', 'p2', 's1', 'stray')]), /another persona/);
      assert.equal(await store.countPersona(pid('p2')), 0);
    });

    it('keeps personas apart even with quotes and backslashes in the persona id', async () => {
      const evil = [`p2' OR '1'='1`, `p3" || persona_id != "`, `p4\\" or true or "\\`];
      await put('p1', [chunk('a', 'p1', 's1', 'secret of persona one')]);
      for (const [i, p] of evil.entries()) await store.upsert({ id: `${u}evil${i}`, personaId: pid(p), dimensions: 384 }, [chunk(`e${i}`, p, `se${i}`, `secret of persona ${i + 2}`)]);
      assert.deepEqual(ids(await search('p1', 'secret persona', 10)), ['a']);
      assert.deepEqual(ids(await lexical('p1', 'secret persona', 10)), ['a']);
      for (const [i, p] of evil.entries()) {
        const sp = { id: `${u}evil${i}`, personaId: pid(p), dimensions: 384 };
        assert.deepEqual(ids(await store.search(sp, hashEmbed('secret persona'), 10)), [`e${i}`], `persona ${p}`);
        assert.deepEqual(ids(await store.lexicalSearch(sp, 'secret persona', 10)), [`e${i}`], `persona ${p}`);
      }
      assert.deepEqual(await search('p9', 'secret persona', 10), []);
    });

    it('replaces a chunk upserted again with the same id (no duplicates)', async () => {
      await put('p1', [chunk('c1', 'p1', 's1', 'old text')]);
      await put('p1', [chunk('c1', 'p1', 's1', 'new text')]);
      await put('p1', [chunk('c1', 'p1', 's1', 'newest text'), chunk('c2', 'p1', 's1', 'other text')]);
      assert.equal(await store.countPersona(pid('p1')), 2);
      const hits = await search('p1', 'newest text', 10);
      assert.deepEqual(ids(hits).sort(), ['c1', 'c2']);
      assert.equal(hits[0]!.id, cid('c1'));
      assert.equal(hits[0]!.text, 'newest text');
      assert.deepEqual(ids(await lexical('p1', 'old', 10)), [], 'the replaced text is not found by its words any more');
    });

    it('finds chunks by their words (BM25): best match first, with positive scores and the vector', async () => {
      await put('p1', [
        chunk('c1', 'p1', 's1', 'The lighthouse keeper of Velmora is Captain Orla Brennick.'),
        chunk('c2', 'p1', 's1', 'Velmora exports smoked seaweed and wool.'),
        chunk('c3', 'p1', 's2', 'Trains to Portmouth leave at nine every morning.'),
        chunk('c4', 'p1', 's2', 'Brennick Brennick Brennick: a family name common on the island of Velmora, where the keeper Orla lives.'),
      ]);
      const hits = await lexical('p1', 'Who is the keeper Orla Brennick?', 10);
      assert.ok(hits.length >= 2, `expected the Brennick chunks, got ${ids(hits).join(', ')}`);
      assert.deepEqual(ids(hits).slice(0, 2).sort(), ['c1', 'c4']);
      assert.ok(!ids(hits).includes('c3'), 'a chunk sharing no word with the query is not a lexical hit');
      for (let i = 1; i < hits.length; i++) assert.ok(hits[i - 1]!.score >= hits[i]!.score, 'best first');
      for (const h of hits) {
        assert.ok(h.score > 0, `BM25 scores are positive, got ${h.score}`);
        assert.equal(h.vector?.length, 384, 'lexical hits carry their vector');
      }
      const c1 = hits.find((h) => h.id === cid('c1'))!;
      const expected = hashEmbed('The lighthouse keeper of Velmora is Captain Orla Brennick.');
      assert.ok(c1.vector!.every((x, i) => Math.abs(x - expected[i]!) < 1e-5), 'the vector is the stored one');
      // A rare word ranks its only chunk first.
      assert.deepEqual(ids(await lexical('p1', 'seaweed', 10)), ['c2']);
      // Query syntax is not interpreted: operators and quotes are just (ignored) characters.
      assert.deepEqual(ids(await lexical('p1', '"seaweed" AND OR NOT text:( ) * ~ ^2', 10))[0], 'c2');
      assert.deepEqual(await lexical('p1', ' ?! ', 10), []);
    });

    it('returns every chunk of a source, and nothing of other sources or spaces', async () => {
      // Ids are UUIDs in this system (stableUuid); the contract uses UUID-shaped ones here.
      const many = Array.from({ length: 1_250 }, (_, i) => chunk(`m${i}`, 'p1', 's1', `chunk number ${i}`, { id: stableUuid(`${u}:m${i}`) }));
      await put('p1', [...many, chunk('x', 'p1', 's2', 'another source')]);
      await put('p1', [chunk('m0', 'p1', 's1', 'same chunk in generation two', { id: stableUuid(`${u}:m0`) })], 2);
      const got = await store.chunksOfSource(space('p1'), cid('s1'));
      assert.equal(got.length, 1_250);
      assert.deepEqual(new Set(got.map((c) => c.id)), new Set(many.map((c) => c.id)));
      const m7 = got.find((c) => c.id === stableUuid(`${u}:m7`))!;
      assert.equal(m7.text, 'chunk number 7');
      assert.equal(m7.title, 'title s1');
      assert.equal(m7.sourceId, cid('s1'));
      assert.equal(m7.personaId, pid('p1'));
      assert.deepEqual(await store.chunksOfSource(space('p2'), cid('s1')), []);
      assert.deepEqual(
        (await store.chunksOfSource(space('p1', 2), cid('s1'))).map((c) => c.text),
        ['same chunk in generation two'],
      );
    });

    it('keeps two generations of a persona apart, each readable alone, and drops one without the other', async () => {
      await put('p1', [chunk('c1', 'p1', 's1', 'lemon cake'), chunk('c2', 'p1', 's1', 'train times')], 1);
      // The same chunk ids, re-embedded into a second space (of another vector size).
      const second: SpaceRef = { ...space('p1', 2, 8) };
      await store.upsert(second, [chunk('c1', 'p1', 's1', 'lemon cake', { vector: smallEmbed('lemon cake') }), chunk('c2', 'p1', 's1', 'train times', { vector: smallEmbed('train times') })]);
      assert.equal(await store.count(space('p1', 1)), 2);
      assert.equal(await store.count(second), 2);
      assert.equal(await store.countPersona(pid('p1')), 4);
      assert.equal(ids(await search('p1', 'lemon cake', 10, 1)).length, 2);
      const hits = await store.search(second, smallEmbed('lemon cake'), 10);
      assert.deepEqual(ids(hits).sort(), ['c1', 'c2']);
      assert.equal(hits[0]!.id, cid('c1'));
      assert.equal((await store.lexicalSearch(second, 'lemon', 10)).length, 1);
      await store.deleteSpace(space('p1', 1));
      assert.deepEqual(await search('p1', 'lemon cake', 10, 1), []);
      assert.equal(await store.count(second), 2, 'the other generation stays');
      await assert.rejects(store.search(second, hashEmbed('lemon'), 3), /dimension/);
    });

    it('deletes by source in every space', async () => {
      await put('p1', [chunk('c1', 'p1', 's1', 'one'), chunk('c2', 'p1', 's2', 'two'), chunk('c3', 'p1', 's1', 'three')]);
      await put('p1', [chunk('c1', 'p1', 's1', 'one')], 2);
      await store.deleteBySource(cid('s1'));
      assert.deepEqual(ids(await search('p1', 'one two three', 10)), ['c2']);
      assert.deepEqual(await search('p1', 'one', 10, 2), []);
      assert.deepEqual(ids(await lexical('p1', 'one two three', 10)), ['c2']);
      assert.equal(await store.countPersona(pid('p1')), 1);
    });

    it('deletes by persona in every space and keeps the other personas', async () => {
      await put('p1', [chunk('c1', 'p1', 's1', 'one'), chunk('c2', 'p1', 's2', 'two')]);
      await store.upsert(space('p1', 2, 8), [chunk('c1', 'p1', 's1', 'one', { vector: smallEmbed('one') })]);
      await put('p2', [chunk('c3', 'p2', 's3', 'three')]);
      await store.deleteByPersona(pid('p1'));
      assert.deepEqual(await search('p1', 'one two', 10), []);
      assert.equal(await store.countPersona(pid('p1')), 0);
      assert.equal(await store.countPersona(pid('p2')), 1);
      assert.deepEqual(ids(await search('p2', 'three', 10)), ['c3']);
    });

    it('stores long and non-ASCII titles, URLs and texts', async () => {
      const title = 'Ünïcødé title 🍋 '.repeat(400);
      const url = `https://example.com/${'é'.repeat(3000)}`;
      const text = 'Zitronenkuchen mit Zuckerguss 🍰 '.repeat(100);
      await put('p1', [chunk('c1', 'p1', 's1', text, { title, url })]);
      const [hit] = await search('p1', text, 1);
      assert.equal(hit!.text, text);
      assert.ok(hit!.title.length > 0 && title.startsWith(hit!.title), 'the title is kept or cut at a character boundary');
      assert.ok(hit!.url.length > 0 && url.startsWith(hit!.url), 'the URL is kept or cut at a character boundary');
      assert.deepEqual(ids(await lexical('p1', 'zitronenkuchen', 1)), ['c1']);
    });

    it('serialises concurrent writes and keeps the data after reopening', async () => {
      await Promise.all(Array.from({ length: 10 }, (_, i) => put('p1', [chunk(`c${i}`, 'p1', `s${i % 3}`, `text number ${i}`)])));
      await Promise.all([store.deleteBySource(cid('s0')), put('p1', [chunk('late', 'p1', 's9', 'late text')])]);
      await store.close();
      store = await sut.reopen();
      assert.equal(await store.countPersona(pid('p1')), 10 - 4 + 1);
      assert.deepEqual(ids(await search('p1', 'late text', 1)), ['late']);
      assert.deepEqual(ids(await lexical('p1', 'late', 1)), ['late']);
    });
  });
}
