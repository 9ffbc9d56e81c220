import assert from 'node:assert/strict';
import { KnownPersonas } from '../src/domain/known-personas.js';

describe('KnownPersonas (the session service remembers whose personas exist)', () => {
  it('remembers a persona per owner for its TTL, with the persona service’s spelling of the id', async () => {
    let now = 1_000;
    const known = new KnownPersonas(5_000, 100, () => now);
    let reads = 0;
    const read = async () => {
      reads++;
      return 'aaaaaaaa-0000-0000-0000-000000000001';
    };
    assert.equal(await known.lookup('o', 'AAAAAAAA-0000-0000-0000-000000000001', read), 'aaaaaaaa-0000-0000-0000-000000000001');
    assert.equal(await known.lookup('o', 'aaaaaaaa-0000-0000-0000-000000000001', read), 'aaaaaaaa-0000-0000-0000-000000000001');
    assert.equal(reads, 1);
    assert.equal(known.idOf('someone-else', 'aaaaaaaa-0000-0000-0000-000000000001'), undefined, 'another owner is not known');
    now += 5_000;
    await known.lookup('o', 'aaaaaaaa-0000-0000-0000-000000000001', read);
    assert.equal(reads, 2, 'read again after the TTL');
  });

  it('never remembers a refusal, and 0 turns it off', async () => {
    const known = new KnownPersonas(5_000);
    await assert.rejects(known.lookup('o', 'p', async () => Promise.reject(new Error('NOT_FOUND'))), /NOT_FOUND/);
    assert.equal(known.idOf('o', 'p'), undefined);
    const off = new KnownPersonas(0);
    let reads = 0;
    for (let i = 0; i < 3; i++) await off.lookup('o', 'p', async () => String(++reads));
    assert.equal(reads, 3);
  });

  it('forgets a deleted persona for every owner, and does not keep a read that a deletion overtook', async () => {
    const known = new KnownPersonas(60_000);
    await known.lookup('o1', 'p', async () => 'p');
    await known.lookup('o2', 'p', async () => 'p');
    await known.lookup('o1', 'q', async () => 'q');
    known.forget('P');
    assert.equal(known.idOf('o1', 'p'), undefined);
    assert.equal(known.idOf('o2', 'p'), undefined);
    assert.equal(known.idOf('o1', 'q'), 'q');
    // A read in flight when the deletion arrives answers its caller but is not remembered.
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const pending = known.lookup('o1', 'r', async () => {
      await gate;
      return 'r';
    });
    known.forget('r');
    release();
    assert.equal(await pending, 'r');
    assert.equal(known.idOf('o1', 'r'), undefined);
  });

  it('keeps at most max entries (the oldest go first)', async () => {
    const known = new KnownPersonas(60_000, 3);
    for (const p of ['a', 'b', 'c', 'd']) await known.lookup('o', p, async () => p);
    assert.equal(known.idOf('o', 'a'), undefined);
    assert.deepEqual(['b', 'c', 'd'].map((p) => known.idOf('o', p)), ['b', 'c', 'd']);
  });
});
