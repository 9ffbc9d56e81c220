import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { Kafka, logLevel } from 'kafkajs';
import { configureLogger } from '@chat/logger';
import { InProcessBus, KafkaBus, type EventRecord } from '../src/index.js';
import { eventually } from './helpers.js';

configureLogger({ silent: true });


/**
 * An ephemeral subscription (a gateway's per-instance live fan-out) deletes its consumer group on
 * the real Kafka when it stops or the bus closes; an ordinary one keeps its group (and offsets).
 */
describe('KafkaBus ephemeral subscriptions', function () {
  this.timeout(90_000);
  const brokers = process.env.KAFKA_BROKERS?.split(',');
  const namespace = `ephemeral-${randomUUID().slice(0, 8)}`;
  const topic = 'test.ephemeral';
  let admin: ReturnType<Kafka['admin']>;

  const groups = async () => new Set((await admin.listGroups()).groups.map((g) => g.groupId));

  before(async function () {
    if (!brokers) throw new Error('KAFKA_BROKERS is not set (npm test starts Kafka; or run scripts/infra up)');
    admin = new Kafka({ clientId: 'ephemeral-test-admin', brokers, logLevel: logLevel.NOTHING }).admin();
    await admin.connect();
  });
  after(async () => {
    // Leave nothing behind: the durable group of the test and the namespaced topic.
    const mine = [...(await groups())].filter((g) => g.startsWith(`${namespace}.`));
    if (mine.length) await admin.deleteGroups(mine).catch(() => undefined);
    await admin.deleteTopics({ topics: [`${namespace}.${topic}`] }).catch(() => undefined);
    await admin.disconnect();
  });

  it('deletes the group of an ephemeral subscription at stop and at close, keeps a durable one', async () => {
    const bus = new KafkaBus({ brokers: brokers!, clientId: 'ephemeral-test', namespace });
    try {
      await bus.ensureTopics([{ name: topic, partitions: 1 }]);
      const got: EventRecord[] = [];
      const live = await bus.subscribe({ topics: [topic], groupId: 'live-1', fromBeginning: false, ephemeral: true, handler: async (r) => void got.push(r) });
      const durable = await bus.subscribe({ topics: [topic], groupId: 'durable', handler: async () => undefined });
      await bus.publish(topic, [{ key: 'k', value: Buffer.from('x') }]);
      await eventually('the event', () => got.length >= 1);
      const before = await groups();
      assert.ok(before.has(`${namespace}.live-1`), 'the ephemeral group exists while subscribed');
      assert.ok(before.has(`${namespace}.durable`));

      await live.stop();
      await durable.stop();
      const afterStop = await groups();
      assert.ok(!afterStop.has(`${namespace}.live-1`), 'the ephemeral group is deleted at stop');
      assert.ok(afterStop.has(`${namespace}.durable`), 'a durable group stays');

      // A subscription still running when the bus closes is cleaned up by close().
      await bus.subscribe({ topics: [topic], groupId: 'live-2', fromBeginning: false, ephemeral: true, handler: async () => undefined });
      assert.ok((await groups()).has(`${namespace}.live-2`));
      await bus.close();
      assert.ok(!(await groups()).has(`${namespace}.live-2`), 'the ephemeral group is deleted at close');
    } finally {
      await bus.close();
    }
  });

  it('a live subscription (fromBeginning: false) gets every event published once subscribe() resolved, and none from before', async () => {
    const bus = new KafkaBus({ brokers: brokers!, clientId: 'ephemeral-test', namespace });
    const liveTopic = 'test.ephemeral.live';
    try {
      await bus.ensureTopics([{ name: liveTopic, partitions: 3 }]);
      await bus.publish(liveTopic, [{ key: 'a', value: Buffer.from('old') }]);
      // Several fresh groups: an event published right after subscribe() resolved used to be lost
      // now and then (the group looked the end of the topic up only at its first fetch).
      for (let i = 0; i < 3; i++) {
        const got: string[] = [];
        // And one on a topic created a moment ago (its partitions may have no leader yet: the
        // lookup of its end is tried again).
        const fresh = `${liveTopic}.fresh-${i}`;
        await bus.ensureTopics([{ name: fresh, partitions: 3 }]);
        const onFresh = await bus.subscribe({ topics: [fresh], groupId: `live-fresh-${i}`, fromBeginning: false, ephemeral: true, handler: async () => undefined });
        await onFresh.stop();
        const sub = await bus.subscribe({ topics: [liveTopic], groupId: `live-start-${i}`, fromBeginning: false, ephemeral: true, handler: async (r) => void got.push(Buffer.from(r.value).toString()) });
        await bus.publish(liveTopic, ['a', 'b', 'c'].map((key) => ({ key, value: Buffer.from(`new-${i}-${key}`) })));
        await eventually(`the three events of round ${i}`, () => got.length >= 3);
        assert.deepEqual(got.sort(), [`new-${i}-a`, `new-${i}-b`, `new-${i}-c`]);
        await sub.stop();
      }
    } finally {
      await bus.close();
      await admin.deleteTopics({ topics: [`${namespace}.${liveTopic}`, ...[0, 1, 2].map((i) => `${namespace}.${liveTopic}.fresh-${i}`)] }).catch(() => undefined);
    }
  });

  it('the in-process bus accepts the flag (no groups to delete)', async () => {
    const bus = new InProcessBus();
    const got: EventRecord[] = [];
    const sub = await bus.subscribe({ topics: [topic], groupId: 'g', ephemeral: true, handler: async (r) => void got.push(r) });
    await bus.publish(topic, [{ key: 'k', value: Buffer.from('y') }]);
    await eventually('the event', () => got.length === 1);
    await sub.stop();
    await bus.close();
  });
});
