import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { configureLogger, getLogger } from '@chat/logger';
import { type EventRecord } from '../src/index.js';
import { eventually, kafkaBuses } from './helpers.js';
import { PartitionDispatcher } from '../src/partition-dispatch.js';

configureLogger({ silent: true });


function gate(): { wait: Promise<void>; open: () => void; fail: (e: Error) => void } {
  let open!: () => void;
  let fail!: (e: Error) => void;
  const wait = new Promise<void>((res, rej) => {
    open = res;
    fail = rej;
  });
  return { wait, open, fail };
}

describe('partition dispatcher (concurrent keys, ordered commits)', () => {
  const logger = getLogger('test');

  it('runs keys concurrently, one key in order, and commits only up to the oldest unhandled event', async () => {
    const commits: string[] = [];
    const d = new PartitionDispatcher(10, async (_t, _p, offset) => void commits.push(offset), logger);
    const slow = gate();
    const order: string[] = [];
    await d.dispatch('t', 0, '0', 'a', async () => {
      await slow.wait;
      order.push('a0');
    }, () => {});
    await d.dispatch('t', 0, '1', 'b', async () => void order.push('b1'), () => {});
    await d.dispatch('t', 0, '2', 'a', async () => void order.push('a2'), () => {});
    await eventually('b handled', () => order.includes('b1'));
    assert.deepEqual(order, ['b1'], 'b is not held by a; a2 waits for a0');
    assert.deepEqual(commits, [], 'nothing committed past the unhandled offset 0');
    // A refetch of an offset handled but not committed (after a rejoin) is skipped: nothing runs twice.
    await d.dispatch('t', 0, '1', 'b', async () => void order.push('again'), () => {});
    slow.open();
    await d.drain();
    assert.deepEqual(order, ['b1', 'a0', 'a2']);
    assert.equal(commits.at(-1), '3');
    assert.ok(!order.includes('again'));
  });

  it('applies backpressure at the limit per partition', async () => {
    const d = new PartitionDispatcher(2, async () => {}, logger);
    const g = gate();
    let started = 0;
    const run = async () => {
      started++;
      await g.wait;
    };
    await d.dispatch('t', 0, '0', 'a', run, () => {});
    await d.dispatch('t', 0, '1', 'b', run, () => {});
    let third = false;
    const p = d.dispatch('t', 0, '2', 'c', run, () => {}).then(() => (third = true));
    await new Promise((r) => setTimeout(r, 30));
    assert.equal(third, false, 'the third waits for a free slot');
    assert.equal(d.inFlight, 2);
    g.open();
    await p;
    await d.drain();
    assert.equal(started, 3);
  });

  it('runs again an event left unacknowledged when it is fetched again; an event waiting for a slot of a revoked partition never runs', async () => {
    const commits: string[] = [];
    const d = new PartitionDispatcher(1, async (_t, _p, o) => void commits.push(o), logger);
    const runs: string[] = [];
    await d.dispatch('t', 0, '0', 'a', async () => {
      runs.push('0');
      throw new Error('left unacknowledged');
    }, () => {});
    await d.drain();
    assert.deepEqual(commits, [], 'nothing committed past it');
    await d.dispatch('t', 0, '0', 'a', async () => void runs.push('0 again'), () => {});
    await d.drain();
    assert.deepEqual(runs, ['0', '0 again']);
    assert.equal(commits.at(-1), '1');
    // At the limit: the next event waits for a slot; the partition is revoked meanwhile.
    const g = gate();
    await d.dispatch('t', 0, '1', 'a', (signal) => Promise.race([g.wait, new Promise<void>((_r, rej) => signal.addEventListener('abort', () => rej(new Error('revoked'))))]), () => {});
    const waiting = d.dispatch('t', 0, '2', 'b', async () => void runs.push('2'), () => {});
    d.assigned({ t: [] });
    await waiting;
    await d.drain();
    assert.ok(!runs.includes('2'), 'not run by a member that no longer owns its partition');
  });

  it('aborts the events of a revoked partition and commits nothing more for it', async () => {
    const commits: Array<[number, string]> = [];
    const d = new PartitionDispatcher(10, async (_t, p, o) => void commits.push([p, o]), logger);
    let aborted = false;
    await d.dispatch('t', 0, '5', 'a', (signal) => new Promise<void>((_res, rej) => signal.addEventListener('abort', () => ((aborted = true), rej(new Error('revoked'))))), () => {});
    await d.dispatch('t', 1, '7', 'b', async () => {}, () => {});
    d.assigned({ t: [1] });
    await d.drain();
    assert.ok(aborted);
    assert.deepEqual(commits, [[1, '8']]);
  });
});

describe('KafkaBus with concurrency above 1', function () {
  this.timeout(90_000);
  const make = kafkaBuses('conc-test');

  it('handles other keys while one key’s handler runs long, keeps each key in order, and redelivers only what was not handled', async () => {
    const ns = `conc-${randomUUID().slice(0, 8)}`;
    const bus = make(ns);
    const topic = 'test.concurrent';
    await bus.ensureTopics([{ name: topic, partitions: 1 }]);
    const slow = gate();
    const seen: string[] = [];
    const text = (r: EventRecord) => Buffer.from(r.value).toString();
    const sub = await bus.subscribe({
      topics: [topic],
      groupId: 'g',
      concurrency: 8,
      handler: async (r) => {
        if (text(r) === 'slow-1') await slow.wait;
        seen.push(text(r));
      },
    });
    await bus.publish(topic, [{ key: 'slow', value: Buffer.from('slow-1') }]);
    await bus.publish(topic, [
      { key: 'slow', value: Buffer.from('slow-2') },
      { key: 'x', value: Buffer.from('x-1') },
      { key: 'y', value: Buffer.from('y-1') },
      { key: 'x', value: Buffer.from('x-2') },
    ]);
    await eventually('the other keys', () => ['x-1', 'x-2', 'y-1'].every((v) => seen.includes(v)));
    assert.ok(!seen.includes('slow-2'), 'the slow key keeps its order');
    assert.ok(seen.indexOf('x-1') < seen.indexOf('x-2'));
    // Stop while slow-1 still runs, and make it fail as a stopping handler: it stays unacknowledged.
    const stopped = sub.stop();
    slow.fail(new Error('stopping'));
    await stopped;
    // A new member of the same group gets slow-1 again (and what followed it), never lost.
    const again: string[] = [];
    const sub2 = await bus.subscribe({ topics: [topic], groupId: 'g', concurrency: 8, handler: async (r) => void again.push(text(r)) });
    await eventually('slow-1 redelivered', () => again.includes('slow-1') && again.includes('slow-2'));
    assert.ok(again.indexOf('slow-1') < again.indexOf('slow-2'));
    await new Promise((r) => setTimeout(r, 300));
    await sub2.stop();
    // After a clean stop everything is committed: a third member gets nothing old.
    const third: string[] = [];
    const sub3 = await bus.subscribe({ topics: [topic], groupId: 'g', concurrency: 8, handler: async (r) => void third.push(text(r)) });
    await bus.publish(topic, [{ key: 'z', value: Buffer.from('z-1') }]);
    await eventually('the new event', () => third.includes('z-1'));
    assert.deepEqual(third, ['z-1']);
    await sub3.stop();
  });
});
