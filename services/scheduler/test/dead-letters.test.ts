import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { eventsV1 } from '@chat/contracts';
import { Code, isAppError } from '@chat/errors';
import { DltHeaders, encodeEvent, InProcessBus, PermanentError, REPLAY_HEADER, Topics, type EventRecord } from '@chat/events';
import { configureLogger } from '@chat/logger';
import { DeadLetterIndex } from '../src/adapters/dead-letters.js';
import { schedulerHandlers } from '../src/handlers/scheduler-handlers.js';
import type { Scheduler } from '../src/domain/scheduler.js';

const logger = configureLogger({ silent: true });

const until = async (what: string, fn: () => boolean) => {
  for (let i = 0; i < 200; i++) {
    if (fn()) return;
    await new Promise((r) => setTimeout(r, 10));
  }
  throw new Error(`timed out waiting for ${what}`);
};

describe('dead-letter index and admin API', () => {
  let bus: InProcessBus;
  let index: DeadLetterIndex;
  const received: EventRecord[] = [];
  let failNext = 0;

  beforeEach(async () => {
    bus = new InProcessBus();
    received.length = 0;
    index = new DeadLetterIndex(bus, logger, 3);
    await index.start();
    // A consumer of the messages that gives up on the first `failNext` events it sees.
    await bus.subscribe({
      topics: [Topics.messages],
      groupId: 'scheduler',
      handler: async (r) => {
        received.push(r);
        if (failNext > 0) {
          failNext--;
          throw new PermanentError('the language model failed (503)', { reason: 'llm_unavailable', attempts: 3 });
        }
      },
    });
  });
  afterEach(async () => {
    await index.stop();
    await bus.close();
  });

  const message = (sessionId = randomUUID()) =>
    eventsV1.MessageCreated.fromPartial({ messageId: randomUUID(), replyId: randomUUID(), sessionId, ownerId: 'alice', personaId: randomUUID(), content: 'hi' });
  const publish = (m: eventsV1.MessageCreated) => bus.publish(Topics.messages, [{ key: m.sessionId, value: encodeEvent(eventsV1.MessageCreated, m), headers: { 'event-type': 'message.created', 'x-trace-id': 'a'.repeat(32) } }]);

  it('lists dead letters newest first with their cause and message ids, by topic and in pages, keeping the newest', async () => {
    failNext = 4;
    const ms = [message(), message(), message(), message()];
    for (const m of ms) await publish(m);
    await until('four dead letters', () => index.list({ pageSize: 10 }).deadLetters.length === 3 && received.length === 4);
    const { deadLetters } = index.list({ pageSize: 10 });
    // At most 3 kept (the oldest forgotten), newest first.
    assert.deepEqual(
      deadLetters.map((d) => d.replyId),
      [ms[3]!.replyId, ms[2]!.replyId, ms[1]!.replyId],
    );
    const d = deadLetters[0]!;
    assert.equal(d.topic, Topics.messages);
    assert.equal(d.code, 'llm_unavailable');
    assert.equal(d.attempts, 3);
    assert.equal(d.group, 'scheduler');
    assert.match(d.cause, /503/);
    assert.equal(d.sessionId, ms[3]!.sessionId);
    assert.equal(d.ownerId, 'alice');
    assert.equal(d.eventType, 'message.created');
    assert.ok(d.failedAt instanceof Date);
    const p1 = index.list({ pageSize: 2 });
    assert.equal(p1.deadLetters.length, 2);
    const p2 = index.list({ pageSize: 2, pageToken: p1.nextPageToken });
    assert.deepEqual(
      p2.deadLetters.map((x) => x.replyId),
      [ms[1]!.replyId],
    );
    assert.equal(p2.nextPageToken, '');
    assert.equal(index.list({ topic: Topics.replies }).deadLetters.length, 0);
    assert.throws(() => index.list({ pageToken: 'nope' }), (e: unknown) => isAppError(e) && e.code === Code.InvalidArgument);
  });

  it('replays a dead letter once: the original event goes back to its topic with x-replay-of and without dlt-* headers', async () => {
    failNext = 1;
    const m = message();
    await publish(m);
    await until('the dead letter', () => index.list().deadLetters.length === 1);
    const [d] = index.list().deadLetters;
    const handlers = schedulerHandlers({} as Scheduler, index);
    const res = await handlers.replayDeadLetter({ id: d!.id, requestedBy: 'admin' });
    assert.equal(res.deadLetter?.replayed, true);
    assert.equal(res.deadLetter?.replayedBy, 'admin');
    await until('the replayed event', () => received.length === 2);
    const again = received[1]!;
    assert.equal(again.headers[REPLAY_HEADER], d!.id);
    assert.equal(again.headers['x-trace-id'], 'a'.repeat(32));
    assert.ok(!Object.keys(again.headers).some((k) => k.startsWith('dlt-')));
    assert.deepEqual(eventsV1.MessageCreated.decode(again.value), m);
    await assert.rejects(handlers.replayDeadLetter({ id: d!.id, requestedBy: 'admin' }), (e: unknown) => isAppError(e) && e.reason === 'already_replayed');
    await assert.rejects(handlers.replayDeadLetter({ id: 'no such id', requestedBy: 'admin' }), (e: unknown) => isAppError(e) && e.code === Code.InvalidArgument);
    await assert.rejects(handlers.replayDeadLetter({ id: randomUUID(), requestedBy: 'admin' }), (e: unknown) => isAppError(e) && e.code === Code.NotFound);
    // Replayed letters are listed only on request.
    assert.equal(index.list().deadLetters.length, 0);
    assert.equal(index.list({ includeReplayed: true }).deadLetters.length, 1);
  });

  it('learns a replay from the marker on the dead-letter topic (another replica, or after a restart)', async () => {
    const other = new DeadLetterIndex(bus, logger, 10);
    const id = randomUUID();
    other.add({ topic: `${Topics.messages}.DLT`, key: 's', value: new Uint8Array(), headers: { [DltHeaders.replayedId]: id, [DltHeaders.replayedAt]: '2026-01-02T03:04:05.000Z', [DltHeaders.replayedBy]: 'root' } });
    other.add({ topic: `${Topics.messages}.DLT`, key: 's', value: new Uint8Array([1, 2, 3]), headers: { [DltHeaders.id]: id, [DltHeaders.code]: 'undecodable', [DltHeaders.originalTopic]: Topics.messages } });
    const [d] = other.list({ includeReplayed: true }).deadLetters;
    assert.equal(d?.replayed, true);
    assert.equal(d?.replayedBy, 'root');
    assert.equal(d?.replayedAt?.toISOString(), '2026-01-02T03:04:05.000Z');
    assert.equal(d?.sessionId, '', 'an undecodable message is listed as it is');
  });

  it('validates the admin requests', async () => {
    const handlers = schedulerHandlers({} as Scheduler, index);
    await assert.rejects(handlers.listDeadLetters({ topic: 'bad topic!', pageSize: 0, pageToken: '', includeReplayed: false }), (e: unknown) => isAppError(e) && e.code === Code.InvalidArgument);
    await assert.rejects(handlers.listDeadLetters({ topic: '', pageSize: 501, pageToken: '', includeReplayed: false }), (e: unknown) => isAppError(e) && e.code === Code.InvalidArgument);
    const none = schedulerHandlers({} as Scheduler);
    await assert.rejects(none.listDeadLetters({ topic: '', pageSize: 0, pageToken: '', includeReplayed: false }), (e: unknown) => isAppError(e) && e.code === Code.Unavailable);
  });
});
