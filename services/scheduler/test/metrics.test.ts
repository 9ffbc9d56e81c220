import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { eventsV1, sessionV1 } from '@chat/contracts';
import { configureLogger } from '@chat/logger';
import { registry, renderMetrics } from '@chat/metrics';
import { gptTokenizer } from '../src/adapters/tokenizer.js';
import { Scheduler } from '../src/domain/scheduler.js';
import type { SchedulerPorts } from '../src/domain/ports.js';

const logger = configureLogger({ silent: true });

/** The value of one series, or 0 when it does not exist yet. */
async function value(name: string, labels: Record<string, string> = {}): Promise<number> {
  // A histogram's _count series lives on the histogram itself.
  const base = name.replace(/_(count|sum)$/, '');
  const metric = registry.getSingleMetric(name) ?? registry.getSingleMetric(base);
  if (!metric) return 0;
  const { values } = await metric.get();
  const hit = values.find(
    (v) =>
      ((v as { metricName?: string }).metricName ?? name) === name &&
      Object.entries(labels).every(([k, want]) => String((v.labels as Record<string, unknown>)[k]) === want),
  );
  return hit?.value ?? 0;
}

describe('scheduler metrics', () => {
  let scheduler: Scheduler;
  let release: () => void = () => {};
  afterEach(() => scheduler?.stop());

  function make(gate?: Promise<void>): Scheduler {
    const ports: SchedulerPorts = {
      getPersona: async ({ id, ownerId }) => ({ persona: { id, ownerId, name: 'P', systemPrompt: 'Be brief.', background: '', settings: undefined } as never }),
      getConversationWindow: async () =>
        sessionV1.GetConversationWindowResponse.fromPartial({ messages: [], replyStatus: sessionV1.MessageStatus.MESSAGE_STATUS_PENDING }),
      generate: (_req, options) =>
        (async function* () {
          await gate;
          if (options.signal?.aborted) throw new Error('aborted');
          yield { item: { $case: 'delta' as const, value: { text: 'hi' } } };
          yield { item: { $case: 'completed' as const, value: { content: 'hi', citations: [], model: 'm' } } };
        })(),
      publish: async () => {},
    };
    return new Scheduler(ports, { replyTimeoutMs: 10_000, idleEvictMs: 60_000, windowMaxMessages: 50, defaultBudgetTokens: 3_000, knowledgeReserveTokens: 500 }, logger, gptTokenizer);
  }

  const message = (sessionId: string, priority = 0) =>
    eventsV1.MessageCreated.fromPartial({ messageId: randomUUID(), replyId: randomUUID(), sessionId, ownerId: 'o', personaId: 'p', content: 'hello', priority });

  it('one scheduled reply moves the replies counter and the processing and first-token histograms', async () => {
    scheduler = make();
    const replies = await value('chat_scheduler_replies_total', { outcome: 'completed' });
    const processed = await value('chat_scheduler_processing_seconds_count', { outcome: 'completed' });
    const firstTokens = await value('chat_scheduler_first_token_seconds_count');
    await scheduler.push(message(randomUUID()));
    assert.equal(await value('chat_scheduler_replies_total', { outcome: 'completed' }), replies + 1);
    assert.equal(await value('chat_scheduler_processing_seconds_count', { outcome: 'completed' }), processed + 1);
    assert.equal(await value('chat_scheduler_first_token_seconds_count'), firstTokens + 1);
    assert.equal(await value('chat_scheduler_inflight_generations'), 0);
    const text = await renderMetrics();
    assert.match(text, /chat_scheduler_processing_seconds_bucket\{[^}]*outcome="completed"/);
  });

  it('counts waiting messages per priority bucket and in-flight generations', async () => {
    const gate = new Promise<void>((r) => (release = r));
    scheduler = make(gate);
    const session = randomUUID();
    const high = await value('chat_scheduler_queue_length', { priority: 'high' });
    const low = await value('chat_scheduler_queue_length', { priority: 'low' });
    const done = [scheduler.push(message(session, 0)), scheduler.push(message(session, 5)), scheduler.push(message(session, -3))];
    await new Promise((r) => setTimeout(r, 20));
    assert.equal(await value('chat_scheduler_inflight_generations'), 1);
    assert.equal(await value('chat_scheduler_queue_length', { priority: 'high' }), high + 1);
    assert.equal(await value('chat_scheduler_queue_length', { priority: 'low' }), low + 1);
    release();
    await Promise.all(done);
    assert.equal(await value('chat_scheduler_inflight_generations'), 0);
    assert.equal(await value('chat_scheduler_queue_length', { priority: 'high' }), high);
    assert.equal(await value('chat_scheduler_queue_length', { priority: 'normal' }), 0);
  });

  it('a cancelled reply is observed with outcome cancelled', async () => {
    const gate = new Promise<void>((r) => (release = r));
    scheduler = make(gate);
    const before = await value('chat_scheduler_replies_total', { outcome: 'cancelled' });
    const m = message(randomUUID());
    const done = scheduler.push(m);
    await new Promise((r) => setTimeout(r, 20));
    assert.ok(scheduler.cancel(m.ownerId, m.sessionId, m.replyId));
    release();
    await done;
    assert.equal(await value('chat_scheduler_replies_total', { outcome: 'cancelled' }), before + 1);
    assert.ok((await value('chat_scheduler_processing_seconds_count', { outcome: 'cancelled' })) >= 1);
  });
});
