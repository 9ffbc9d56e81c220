import assert from 'node:assert/strict';
import type { EventBus } from '@chat/events';
import { renderMetrics } from '@chat/metrics';
import { registerBusMetrics } from '../src/modules/metrics.js';

describe('launcher metrics module: bus counters', () => {
  it('reads retries and dead letters from bus.stats() at scrape time, and tolerates a bus without it', async () => {
    const counts = { deadLettered: { 'chat.messages': 2 } as Record<string, number>, retries: { 'chat.messages': 5, 'chat.replies': 1 } as Record<string, number> };
    const withStats = { kind: 'in-process', stats: () => counts } as unknown as EventBus;
    const without = { kind: 'in-process' } as unknown as EventBus;
    const off = [registerBusMetrics(withStats), registerBusMetrics(without)];
    try {
      let text = await renderMetrics();
      assert.match(text, /^chat_bus_retries_total\{topic="chat.messages"[^}]*\} 5$/m);
      assert.match(text, /^chat_bus_retries_total\{topic="chat.replies"[^}]*\} 1$/m);
      assert.match(text, /^chat_bus_dead_letters_total\{topic="chat.messages"[^}]*\} 2$/m);
      counts.deadLettered['chat.messages'] = 3;
      text = await renderMetrics();
      assert.match(text, /^chat_bus_dead_letters_total\{topic="chat.messages"[^}]*\} 3$/m);
    } finally {
      off.forEach((f) => f());
    }
    assert.doesNotMatch(await renderMetrics(), /^chat_bus_retries_total\{/m);
  });
});
