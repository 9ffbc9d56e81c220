import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { configureLogger } from '@chat/logger';
import { InProcessBus } from '../src/index.js';
import { eventually, kafkaBuses } from './helpers.js';

configureLogger({ silent: true });

describe('onAssignment (a member learns that its partitions may have changed)', function () {
  this.timeout(90_000);
  const make = kafkaBuses('assign-test');

  it('Kafka: is called at the first join, and again on the first member when a second member joins and leaves', async () => {
    const namespace = `assign-${randomUUID().slice(0, 8)}`;
    const a = make(namespace);
    const b = make(namespace);
    const topic = 'test.assignment';
    await a.ensureTopics([{ name: topic, partitions: 4 }]);
    let callsA = 0;
    let callsB = 0;
    const subA = await a.subscribe({ topics: [topic], groupId: 'g', handler: async () => undefined, onAssignment: () => void callsA++ });
    assert.ok(callsA >= 1, 'called at the first join (subscribe resolves after it)');
    const afterFirstJoin = callsA;
    const subB = await b.subscribe({ topics: [topic], groupId: 'g', handler: async () => undefined, onAssignment: () => void callsB++ });
    assert.ok(callsB >= 1);
    // The first member rejoins for the rebalance the second one caused.
    await eventually('the first member told of the rebalance', () => callsA > afterFirstJoin, 60_000);
    const beforeLeave = callsA;
    await subB.stop();
    await eventually('the first member told again when the second left', () => callsA > beforeLeave, 60_000);
    await subA.stop();
  });

  it('a throwing callback does not stop the consumer', async () => {
    const bus = make(`assign-${randomUUID().slice(0, 8)}`);
    const topic = 'test.assignment.throws';
    await bus.ensureTopics([{ name: topic, partitions: 1 }]);
    const got: string[] = [];
    const sub = await bus.subscribe({
      topics: [topic],
      groupId: 'g',
      handler: async (r) => void got.push(Buffer.from(r.value).toString()),
      onAssignment: () => {
        throw new Error('boom');
      },
    });
    await bus.publish(topic, [{ key: 'k', value: Buffer.from('still delivered') }]);
    await eventually('the event', () => got.length === 1);
    assert.deepEqual(got, ['still delivered']);
    await sub.stop();
  });

  it('in-process: a single member, never called', async () => {
    const bus = new InProcessBus();
    let calls = 0;
    const got: string[] = [];
    const sub = await bus.subscribe({ topics: ['t'], groupId: 'g', handler: async (r) => void got.push(Buffer.from(r.value).toString()), onAssignment: () => void calls++ });
    await bus.publish('t', [{ key: 'k', value: Buffer.from('x') }]);
    await eventually('the event', () => got.length === 1);
    assert.equal(calls, 0);
    await sub.stop();
    await bus.close();
  });
});
