import assert from 'node:assert/strict';
import { coalesce } from '../src/domain/generate.js';

/** A source the test drives by hand: push() hands a piece to the reader, end()/fail() finish it. */
function manualSource() {
  const queue: Array<{ value?: string; done?: boolean; err?: unknown }> = [];
  let waiting: (() => void) | undefined;
  const wakeUp = () => {
    const w = waiting;
    waiting = undefined;
    w?.();
  };
  let pulled = 0;
  const source: AsyncIterable<string> = {
    [Symbol.asyncIterator]: () => ({
      async next(): Promise<IteratorResult<string>> {
        while (queue.length === 0) await new Promise<void>((r) => (waiting = r));
        const item = queue.shift()!;
        pulled++;
        if (item.err) throw item.err;
        return item.done ? { value: undefined, done: true } : { value: item.value!, done: false };
      },
    }),
  };
  return {
    source,
    push: (value: string) => (queue.push({ value }), wakeUp()),
    end: () => (queue.push({ done: true }), wakeUp()),
    fail: (err: unknown) => (queue.push({ err }), wakeUp()),
    pulled: () => pulled,
  };
}

async function collect(it: AsyncIterable<string>): Promise<string[]> {
  const out: string[] = [];
  for await (const s of it) out.push(s);
  return out;
}

describe('delta coalescing (rag generate)', () => {
  it('passes the first piece on before the source has produced a second one', async () => {
    const src = manualSource();
    const it = coalesce(src.source, 50)[Symbol.asyncIterator]();
    src.push('Hel');
    const first = await it.next();
    assert.deepEqual(first, { value: 'Hel', done: false });
    assert.equal(src.pulled(), 1, 'nothing beyond the first piece was needed');
    src.push('lo');
    src.end();
    assert.deepEqual(await it.next(), { value: 'lo', done: false });
    assert.deepEqual(await it.next(), { value: undefined, done: true });
  });

  it('joins the pieces that arrive within the window into one, in order, and loses nothing', async () => {
    const src = manualSource();
    const got = collect(coalesce(src.source, 1_000));
    src.push('a');
    // Give the first piece time to go out, then a burst within the window, then the end.
    await new Promise((r) => setImmediate(r));
    for (const p of ['b', 'c', 'd']) src.push(p);
    await new Promise((r) => setImmediate(r));
    src.push('e');
    src.end();
    const pieces = await got;
    assert.equal(pieces.join(''), 'abcde');
    assert.equal(pieces[0], 'a');
    // The end of the stream flushes at once instead of waiting out the (long) window.
    assert.deepEqual(pieces, ['a', 'bcde']);
  });

  it('with a window of one piece per tick, streams every piece when they come slowly', async () => {
    const src = manualSource();
    const got = collect(coalesce(src.source, 1));
    for (const p of ['x', 'y', 'z']) {
      src.push(p);
      await new Promise((r) => setTimeout(r, 15));
    }
    src.end();
    assert.deepEqual(await got, ['x', 'y', 'z']);
  });

  it("hands over the text that came before the source's error, then throws that error", async () => {
    const src = manualSource();
    const pieces: string[] = [];
    const run = (async () => {
      for await (const p of coalesce(src.source, 1_000)) pieces.push(p);
    })();
    src.push('one ');
    await new Promise((r) => setImmediate(r));
    src.push('two');
    src.fail(new Error('model went away'));
    await assert.rejects(run, /model went away/);
    assert.equal(pieces.join(''), 'one two');
  });
});
