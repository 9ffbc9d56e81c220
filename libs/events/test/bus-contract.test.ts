import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { configureLogger } from '@chat/logger';
import { InProcessBus, KafkaBus, type EventBus, type EventRecord } from '../src/index.js';

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
        if (process.env.CI === 'true') throw new Error(`${name}: KAFKA_BROKERS must be set in CI (run scripts/infra up)`);
        this.skip();
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
