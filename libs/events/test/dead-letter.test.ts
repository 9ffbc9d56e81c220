import assert from 'node:assert/strict';
import { configureLogger, getLogger } from '@chat/logger';
import { deliver, StatsCounter } from '../src/dead-letter.js';
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
    await assert.rejects(
      deliver({ topics: ['t'], groupId: 'g', maxAttempts: 1, handler: failing }, record, {
        publishDeadLetter: async () => {
          throw new Error('broker down');
        },
        stats,
        logger: getLogger('test'),
        stopping: () => true,
      }),
      /stopped before event could be dead-lettered/,
    );
    assert.deepEqual(stats.snapshot().deadLettered, {});
  });
});
