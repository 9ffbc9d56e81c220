import assert from 'node:assert/strict';
import { configureLogger, getLogger } from '@chat/logger';
import { deadLetterEvent, deliver, DltHeaders, PermanentError, StatsCounter } from '../src/dead-letter.js';
import type { EventRecord, OutgoingEvent } from '../src/index.js';

configureLogger({ silent: true });

const record: EventRecord = { topic: 't', key: 'k', value: new TextEncoder().encode('v'), headers: {} };
const failing = async () => {
  throw new Error('boom');
};

describe('dead-letter delivery', function () {
  this.timeout(20_000);

  it('keeps retrying a failing dead-letter publish instead of skipping the event', async () => {
    const stats = new StatsCounter();
    const written: Array<[string, OutgoingEvent]> = [];
    let tries = 0;
    await deliver({ topics: ['t'], groupId: 'g', maxAttempts: 1, handler: failing }, record, {
      publishDeadLetter: async (topic, event) => {
        if (++tries < 3) throw new Error('broker down');
        written.push([topic, event]);
      },
      stats,
      logger: getLogger('test'),
      stopping: () => false,
    });
    assert.equal(tries, 3);
    assert.equal(written.length, 1);
    assert.equal(written[0]![0], 't.DLT');
    assert.deepEqual(stats.snapshot(), { deadLettered: { t: 1 }, retries: {} });
  });

  it('leaves the event unacknowledged (rejects) when stopping before it could be dead-lettered', async () => {
    const stats = new StatsCounter();
    let checks = 0;
    await assert.rejects(
      deliver({ topics: ['t'], groupId: 'g', maxAttempts: 1, handler: failing }, record, {
        publishDeadLetter: async () => {
          throw new Error('broker down');
        },
        stats,
        logger: getLogger('test'),
        // Not stopping when the handler failed; stopping while the dead-letter publish is retried.
        stopping: () => ++checks > 1,
      }),
      /stopped before event could be dead-lettered/,
    );
    assert.deepEqual(stats.snapshot().deadLettered, {});
  });

  it('neither retries nor dead-letters a handler failure while the subscription stops (the event is delivered again)', async () => {
    const stats = new StatsCounter();
    let calls = 0;
    const written: OutgoingEvent[] = [];
    await assert.rejects(
      deliver(
        {
          topics: ['t'],
          groupId: 'g',
          maxAttempts: 5,
          handler: async () => {
            calls++;
            throw new Error('scheduler stopping');
          },
        },
        record,
        { publishDeadLetter: async (_t, e) => void written.push(e), stats, logger: getLogger('test'), stopping: () => true },
      ),
      /stays unacknowledged/,
    );
    assert.equal(calls, 1);
    assert.equal(written.length, 0);
    assert.deepEqual(stats.snapshot(), { deadLettered: {}, retries: {} });
  });

  it('gives each dead letter an id, and takes the reason and attempts of a handler that retried by itself', async () => {
    const a = deadLetterEvent(record, new PermanentError('gave up after 3 attempts', { reason: 'llm_unavailable', attempts: 3 }), 1, 'scheduler');
    const b = deadLetterEvent(record, new Error('boom'), 5, 'g');
    assert.equal(a.headers![DltHeaders.code], 'llm_unavailable');
    assert.equal(a.headers![DltHeaders.attempts], '3');
    assert.equal(b.headers![DltHeaders.code], 'internal');
    assert.equal(b.headers![DltHeaders.attempts], '5');
    assert.match(a.headers![DltHeaders.id]!, /^[0-9a-f-]{36}$/);
    assert.notEqual(a.headers![DltHeaders.id], b.headers![DltHeaders.id]);
    // A service's own error class named PermanentError (it need not import the bus) counts the same.
    class ReplyGivenUp extends Error {
      override readonly name = 'PermanentError';
      readonly reason = 'reply_interrupted';
      readonly attempts = 2;
    }
    const c = deadLetterEvent(record, new ReplyGivenUp('interrupted'), 1, 'scheduler');
    assert.equal(c.headers![DltHeaders.code], 'reply_interrupted');
    assert.equal(c.headers![DltHeaders.attempts], '2');
  });
});
