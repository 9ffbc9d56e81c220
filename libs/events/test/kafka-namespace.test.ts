import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { Kafka, logLevel } from 'kafkajs';
import { configureLogger } from '@chat/logger';
import { KafkaBus, PermanentError, type EventRecord } from '../src/index.js';
import { eventually, kafkaBuses } from './helpers.js';

configureLogger({ silent: true });


describe('KafkaBus namespaces', function () {
  this.timeout(60_000);
  const make = kafkaBuses('ns-test');

  it('refuses a namespace that is not a plain name', () => {
    assert.throws(() => new KafkaBus({ brokers: ['127.0.0.1:1'], clientId: 'x', namespace: 'a b' }), /invalid Kafka namespace/);
    assert.throws(() => new KafkaBus({ brokers: ['127.0.0.1:1'], clientId: 'x', namespace: '.lead' }), /invalid Kafka namespace/);
  });

  it('keeps two namespaces apart on one cluster, with the same topic and group names', async () => {
    const a = make(`ns-a-${randomUUID().slice(0, 8)}`);
    const b = make(`ns-b-${randomUUID().slice(0, 8)}`);
    const topic = 'test.namespaced';
    await a.ensureTopics([{ name: topic, partitions: 1 }]);
    await b.ensureTopics([{ name: topic, partitions: 1 }]);
    const gotA: EventRecord[] = [];
    const gotB: EventRecord[] = [];
    const subA = await a.subscribe({ topics: [topic], groupId: 'same-group', handler: async (r) => void gotA.push(r) });
    const subB = await b.subscribe({ topics: [topic], groupId: 'same-group', handler: async (r) => void gotB.push(r) });
    await a.publish(topic, [{ key: 'k', value: Buffer.from('for-a') }]);
    await b.publish(topic, [{ key: 'k', value: Buffer.from('for-b') }]);
    await eventually('both events', () => gotA.length >= 1 && gotB.length >= 1);
    await new Promise((r) => setTimeout(r, 300));
    assert.deepEqual(gotA.map((r) => Buffer.from(r.value).toString()), ['for-a']);
    assert.deepEqual(gotB.map((r) => Buffer.from(r.value).toString()), ['for-b']);
    // Handlers see the plain topic name.
    assert.equal(gotA[0]!.topic, topic);
    await subA.stop();
    await subB.stop();
  });

  it('puts the topics, and the dead letters, under the prefix on the cluster', async () => {
    const ns = `ns-c-${randomUUID().slice(0, 8)}`;
    const bus = make(ns);
    const topic = 'test.namespaced.dlt';
    await bus.ensureTopics([{ name: topic, partitions: 1 }]);
    const dead: EventRecord[] = [];
    const sub = await bus.subscribe({ topics: [topic], groupId: 'g', handler: async () => { throw new PermanentError('bad event'); } });
    const dlt = await bus.subscribe({ topics: [`${topic}.DLT`], groupId: 'g-dlt', handler: async (r) => void dead.push(r) });
    await bus.publish(topic, [{ key: 'k', value: Buffer.from('poison') }]);
    await eventually('the dead letter', () => dead.length === 1);
    assert.equal(dead[0]!.topic, `${topic}.DLT`);
    const admin = new Kafka({ brokers: process.env.KAFKA_BROKERS!.split(','), logLevel: logLevel.NOTHING }).admin();
    await admin.connect();
    try {
      const names = await admin.listTopics();
      assert.ok(names.includes(`${ns}.${topic}`), 'the topic carries the prefix');
      assert.ok(names.includes(`${ns}.${topic}.DLT`), 'its dead-letter topic carries the prefix');
      assert.ok(!names.includes(topic), 'no unprefixed topic was created');
      const groups = (await admin.listGroups()).groups.map((g) => g.groupId);
      assert.ok(groups.includes(`${ns}.g`), 'the consumer group carries the prefix');
    } finally {
      await admin.disconnect();
    }
    await sub.stop();
    await dlt.stop();
  });
});
