import assert from 'node:assert/strict';
import { buildWindow, MESSAGE_OVERHEAD_TOKENS, type WindowTurn } from '../src/domain/window.js';
import { gptTokenizer } from '../src/adapters/tokenizer.js';

/** turnsOf makes n alternating turns, oldest first, each saying its own number. */
function turnsOf(n: number): WindowTurn[] {
  return Array.from({ length: n }, (_, i) => ({
    role: i % 2 === 0 ? 'user' : 'assistant',
    content: i % 2 === 0 ? `Question number ${i}: what do you remember about the harbour of Velmora on day ${i}?` : `Answer number ${i}: the harbour was busy on day ${i - 1}, with ${i} boats.`,
    position: 1000 + i,
  }));
}

describe('the prompt window', () => {
  const base = { systemPrompt: 'You are a friendly guide to the island of Velmora.', userMessage: 'And what about today?', knowledgeReserveTokens: 1000 };

  it('counts with a real tokenizer that works offline', () => {
    assert.equal(gptTokenizer.count(''), 0);
    assert.equal(gptTokenizer.count('hello world'), 2);
    const cut = gptTokenizer.truncate('one two three four five six', 3);
    assert.equal(gptTokenizer.count(cut), 3);
  });

  it('keeps a 2,000-turn session within budget with the summary and the latest turns verbatim', () => {
    const turns = turnsOf(2_000);
    const summary = 'The user asked about the harbour of Velmora on many days; the assistant reported boat counts.';
    const w = buildWindow({ ...base, budgetTokens: 3_000, summary, turns }, gptTokenizer);
    // The whole prompt (knowledge reserve included) fits the budget.
    assert.ok(w.promptTokens + base.knowledgeReserveTokens <= 3_000, `prompt ${w.promptTokens} + reserve over budget`);
    assert.equal(w.summary, summary, 'the summary goes in whole');
    assert.ok(w.history.length >= 10, `expected many recent turns, got ${w.history.length}`);
    assert.ok(w.history.length < 2_000);
    // The newest turns, contiguous, oldest first, ending with the last one.
    assert.deepEqual(w.history, turns.slice(-w.history.length));
    assert.equal(w.dropped, 2_000 - w.history.length);
    // Recount independently: summary frame + turns with their overhead.
    const counted = w.history.reduce((n, t) => n + gptTokenizer.count(t.content) + MESSAGE_OVERHEAD_TOKENS, 0);
    assert.ok(counted <= w.availableTokens);
    // Not wasteful: the next older turn would not have fit.
    const next = turns[turns.length - w.history.length - 1]!;
    assert.ok(w.historyTokens + gptTokenizer.count(next.content) + MESSAGE_OVERHEAD_TOKENS > w.availableTokens);
  });

  it('cuts an oversized summary to half the history budget and still keeps recent turns', () => {
    const summary = 'The harbour had boats. '.repeat(2_000);
    const w = buildWindow({ ...base, budgetTokens: 3_000, summary, turns: turnsOf(50) }, gptTokenizer);
    assert.ok(gptTokenizer.count(w.summary) <= w.availableTokens / 2);
    assert.ok(w.summary.length > 0 && summary.startsWith(w.summary));
    assert.ok(w.history.length > 0);
    assert.ok(w.promptTokens + base.knowledgeReserveTokens <= 3_000);
  });

  it('sends no history when the fixed parts already use the budget', () => {
    const w = buildWindow({ ...base, budgetTokens: 500, summary: 'a summary', turns: turnsOf(10) }, gptTokenizer);
    assert.equal(w.availableTokens, 0);
    assert.deepEqual(w.history, []);
    assert.equal(w.summary, '');
    assert.equal(w.dropped, 10);
  });

  it('never skips a turn that does not fit to take an older, shorter one', () => {
    const turns: WindowTurn[] = [
      { role: 'user', content: 'short', position: 1 },
      { role: 'assistant', content: 'long '.repeat(800), position: 2 },
      { role: 'user', content: 'newest', position: 3 },
    ];
    const w = buildWindow({ ...base, budgetTokens: 1_200, summary: '', turns }, gptTokenizer);
    assert.deepEqual(w.history.map((t) => t.position), [3]);
  });
});
