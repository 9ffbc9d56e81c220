import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { configureLogger } from '@chat/logger';
import { AppError } from '@chat/errors';
import { busStats, dltTopic, InProcessBus, KafkaBus, PermanentError, type EventBus, type EventRecord } from '../src/index.js';

configureLogger({ silent: true });

const text = (r: EventRecord) => Buffer.from(r.value).toString();
const enc = (s: string) => new TextEncoder().encode(s);

async function eventually(what: string, fn: () => boolean, timeoutMs = 20_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!fn()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** The behaviour every EventBus adapter must have. */
function busContract(name: string, make: () => EventBus | undefined) {
  describe(`EventBus contract: ${name}`, function () {
    this.timeout(60_000);
    let bus: EventBus;

    before(function () {
      const b = make();
      if (!b) {
        // npm test starts Kafka itself (scripts/test.mjs); running mocha by hand needs scripts/infra up.
        throw new Error(`${name}: KAFKA_BROKERS is not set (npm test starts Kafka; or run scripts/infra up)`);
      }
      bus = b!;
    });
    after(async () => {
      await bus?.close();
    });

    const topic = () => `test.contract.${randomUUID().slice(0, 8)}`;

    it('delivers the events of one key in the order they were published', async () => {
      const t = topic();
      await bus.ensureTopics([{ name: t, partitions: 3 }]);
      const seen = new Map<string, string[]>();
      const sub = await bus.subscribe({
        topics: [t],
        groupId: `g-${randomUUID()}`,
        handler: async (r) => {
          // Uneven handler times must not reorder a key.
          await new Promise((res) => setTimeout(res, Math.random() * 5));
          seen.set(r.key, [...(seen.get(r.key) ?? []), text(r)]);
        },
      });
      for (let i = 0; i < 20; i++) await bus.publish(t, ['a', 'b', 'c'].map((k) => ({ key: k, value: enc(`${k}${i}`) })));
      await eventually('all 60 events', () => [...seen.values()].reduce((n, l) => n + l.length, 0) === 60);
      for (const k of ['a', 'b', 'c']) assert.deepEqual(seen.get(k), Array.from({ length: 20 }, (_, i) => `${k}${i}`));
      await sub.stop();
    });

    it('gives every group each event once, and shares a group between its members', async () => {
      const t = topic();
      await bus.ensureTopics([{ name: t, partitions: 4 }]);
      const g1 = `g1-${randomUUID()}`;
      const g2 = `g2-${randomUUID()}`;
      const byMember = { m1: [] as string[], m2: [] as string[], other: [] as string[] };
      const s1 = await bus.subscribe({ topics: [t], groupId: g1, handler: async (r) => void byMember.m1.push(text(r)) });
      const s2 = await bus.subscribe({ topics: [t], groupId: g1, handler: async (r) => void byMember.m2.push(text(r)) });
      const s3 = await bus.subscribe({ topics: [t], groupId: g2, handler: async (r) => void byMember.other.push(text(r)) });
      const values = Array.from({ length: 40 }, (_, i) => `v${i}`);
      await bus.publish(t, values.map((v, i) => ({ key: `k${i % 8}`, value: enc(v) })));
      await eventually('both groups to see every event', () => byMember.other.length === 40 && byMember.m1.length + byMember.m2.length === 40);
      assert.deepEqual([...byMember.m1, ...byMember.m2].sort(), [...values].sort(), 'the shared group saw each event exactly once');
      assert.deepEqual([...byMember.other].sort(), [...values].sort());
      await Promise.all([s1.stop(), s2.stop(), s3.stop()]);
    });

    it('redelivers an event whose handler failed, without skipping ahead on that key', async () => {
      const t = topic();
      await bus.ensureTopics([{ name: t, partitions: 1 }]);
      let failures = 0;
      const seen: string[] = [];
      const sub = await bus.subscribe({
        topics: [t],
        groupId: `g-${randomUUID()}`,
        maxAttempts: 5,
        handler: async (r) => {
          if (text(r) === 'first' && failures < 2) {
            failures++;
            throw new Error('transient');
          }
          seen.push(text(r));
        },
      });
      await bus.publish(t, [
        { key: 'k', value: enc('first') },
        { key: 'k', value: enc('second') },
      ]);
      await eventually('both events', () => seen.length === 2);
      assert.equal(failures, 2);
      assert.deepEqual(seen, ['first', 'second']);
      await sub.stop();
    });

    it('dead-letters an event after maxAttempts failures, with the cause in headers, and moves on', async () => {
      const t = topic();
      await bus.ensureTopics([{ name: t, partitions: 2 }]);
      const dead: EventRecord[] = [];
      const dlt = await bus.subscribe({ topics: [dltTopic(t)], groupId: `dlt-${randomUUID()}`, handler: async (r) => void dead.push(r) });
      const attempts = new Map<string, number>();
      const seen: string[] = [];
      const group = `g-${randomUUID()}`;
      const sub = await bus.subscribe({
        topics: [t],
        groupId: group,
        maxAttempts: 3,
        handler: async (r) => {
          attempts.set(text(r), (attempts.get(text(r)) ?? 0) + 1);
          if (text(r) === 'poison') throw new Error('boom: Bearer abc.def.ghi ' + 'x'.repeat(1_000));
          seen.push(text(r));
        },
      });
      const before = Date.now();
      await bus.publish(t, [
        { key: 'k', value: enc('poison'), headers: { 'x-trace-id': 'trace-1', 'event-type': 'test' } },
        { key: 'k', value: enc('after') },
      ]);
      await eventually('the dead letter and the later event', () => dead.length === 1 && seen.length === 1);
      assert.deepEqual(seen, ['after'], 'a later event of the same key is delivered after the dead-lettered one');
      assert.equal(attempts.get('poison'), 3, 'exactly maxAttempts attempts');
      const d = dead[0]!;
      assert.equal(d.topic, dltTopic(t));
      assert.equal(d.key, 'k');
      assert.equal(text(d), 'poison');
      assert.equal(d.headers['x-trace-id'], 'trace-1', 'original headers are kept');
      assert.equal(d.headers['event-type'], 'test');
      assert.match(d.headers['dlt-cause']!, /^boom: Bearer \[REDACTED\] x+/);
      assert.ok(d.headers['dlt-cause']!.length <= 500, 'the cause is truncated');
      assert.equal(d.headers['dlt-code'], 'internal');
      assert.equal(d.headers['dlt-attempts'], '3');
      assert.equal(d.headers['dlt-group'], group);
      assert.equal(d.headers['dlt-original-topic'], t);
      const failedAt = Date.parse(d.headers['dlt-failed-at']!);
      assert.ok(failedAt >= before - 1_000 && failedAt <= Date.now() + 1_000, 'dlt-failed-at is an ISO time of the failure');
      const stats = busStats(bus);
      assert.equal(stats.deadLettered[t], 1);
      assert.equal(stats.retries[t], 2, 'two failed attempts were retried');
      await Promise.all([sub.stop(), dlt.stop()]);
    });

    it('dead-letters a permanent failure after one attempt', async () => {
      const t = topic();
      await bus.ensureTopics([{ name: t, partitions: 1 }]);
      const dead: EventRecord[] = [];
      const dlt = await bus.subscribe({ topics: [dltTopic(t)], groupId: `dlt-${randomUUID()}`, handler: async (r) => void dead.push(r) });
      const attempts = new Map<string, number>();
      const seen: string[] = [];
      const sub = await bus.subscribe({
        topics: [t],
        groupId: `g-${randomUUID()}`,
        maxAttempts: 5,
        handler: async (r) => {
          attempts.set(text(r), (attempts.get(text(r)) ?? 0) + 1);
          if (text(r) === 'garbled') throw new PermanentError('the event does not decode', { reason: 'undecodable' });
          if (text(r) === 'gone') throw AppError.notFound('persona', 'p1');
          seen.push(text(r));
        },
      });
      await bus.publish(t, [
        { key: 'k', value: enc('garbled') },
        { key: 'k', value: enc('gone') },
        { key: 'k', value: enc('fine') },
      ]);
      await eventually('two dead letters and the good event', () => dead.length === 2 && seen.length === 1);
      assert.deepEqual(seen, ['fine']);
      assert.equal(attempts.get('garbled'), 1);
      assert.equal(attempts.get('gone'), 1);
      assert.deepEqual(dead.map(text), ['garbled', 'gone']);
      assert.deepEqual(dead.map((d) => [d.headers['dlt-code'], d.headers['dlt-attempts']]), [['undecodable', '1'], ['not_found', '1']]);
      assert.equal(dead[0]!.headers['dlt-cause'], 'the event does not decode');
      assert.equal(busStats(bus).deadLettered[t], 2);
      assert.equal(busStats(bus).retries[t], undefined, 'nothing was retried');
      await Promise.all([sub.stop(), dlt.stop()]);
    });

    it('refuses a consumer group that this process already uses for other topics', async () => {
      const g = `g-${randomUUID()}`;
      const [a, b] = [topic(), topic()];
      await bus.ensureTopics([{ name: a, partitions: 1 }, { name: b, partitions: 1 }]);
      const sub = await bus.subscribe({ topics: [a], groupId: g, handler: async () => {} });
      await assert.rejects(bus.subscribe({ topics: [b], groupId: g, handler: async () => {} }), /already reads/);
      await sub.stop();
    });

    it('carries headers', async () => {
      const t = topic();
      await bus.ensureTopics([{ name: t, partitions: 1 }]);
      let got: Record<string, string> | undefined;
      const sub = await bus.subscribe({ topics: [t], groupId: `g-${randomUUID()}`, handler: async (r) => void (got = r.headers) });
      await bus.publish(t, [{ key: 'k', value: enc('x'), headers: { 'x-trace-id': 'abc', 'event-type': 'test' } }]);
      await eventually('the event', () => got !== undefined);
      assert.equal(got!['x-trace-id'], 'abc');
      assert.equal(got!['event-type'], 'test');
      await sub.stop();
    });
  });
}

busContract('in-process', () => new InProcessBus());
busContract('kafka', () => {
  const brokers = process.env.KAFKA_BROKERS;
  return brokers ? new KafkaBus({ brokers: brokers.split(','), clientId: `contract-${process.pid}` }) : undefined;
});
