import assert from 'node:assert/strict';
import { ragV1, sessionV1 } from '@chat/contracts';
import { AppError, Code } from '@chat/errors';
import { configureLogger } from '@chat/logger';
import { gptTokenizer } from '../src/adapters/tokenizer.js';
import type { SummaryPorts } from '../src/domain/ports.js';
import { Summarizer, type SummaryJob } from '../src/domain/summarizer.js';

const logger = configureLogger({ silent: true });
const options = { thresholdMessages: 4, batchMessages: 50, batchTokens: 10_000, summaryMaxTokens: 256, retryAfterMs: 60_000 };

/** An in-memory session: messages by position and a versioned summary. */
class Store implements SummaryPorts {
  messages: sessionV1.Message[] = [];
  summary = { text: '', coveredUntil: 0, version: 0 };
  summarizeCalls: ragV1.SummarizeRequest[] = [];
  summarizeImpl: (req: ragV1.SummarizeRequest) => Promise<string> = async (req) => `${req.previousSummary}|${req.turns.map((t) => t.content).join(',')}`;

  constructor(n: number) {
    for (let i = 1; i <= n; i++) {
      this.messages.push(
        sessionV1.Message.fromPartial({ id: `m${i}`, role: i % 2 ? sessionV1.Role.ROLE_USER : sessionV1.Role.ROLE_ASSISTANT, content: `t${i}`, status: sessionV1.MessageStatus.MESSAGE_STATUS_COMPLETED, position: i }),
      );
    }
  }
  async listMessagesAfter(req: { afterPosition: number; beforePosition: number; limit: number }) {
    const all = this.messages.filter((m) => m.position > req.afterPosition && (req.beforePosition === 0 || m.position < req.beforePosition));
    return { messages: all.slice(0, req.limit), hasMore: all.length > req.limit };
  }
  async summarize(req: Partial<ragV1.SummarizeRequest>) {
    const full = ragV1.SummarizeRequest.fromPartial(req);
    this.summarizeCalls.push(full);
    return { summary: await this.summarizeImpl(full), model: 'test' };
  }
  async updateSummary(req: { text: string; coveredUntil: number; expectedVersion: number }) {
    if (req.expectedVersion !== this.summary.version) throw new AppError(Code.Aborted, 'conflict', { reason: 'version_conflict' });
    this.summary = { text: req.text, coveredUntil: req.coveredUntil, version: this.summary.version + 1 };
    return { summary: sessionV1.Summary.fromPartial(this.summary) };
  }
}

const job = (store: Store, foldBefore: number, outside = 10): SummaryJob => ({ ownerId: 'o', sessionId: 's', personaId: 'p', summary: { ...store.summary }, foldBefore, outside });

describe('background summarisation', () => {
  it('does nothing below the threshold', async () => {
    const store = new Store(10);
    const s = new Summarizer(store, gptTokenizer, options, logger);
    assert.equal(s.maybeSchedule(job(store, 8, 3)), false);
    assert.equal(store.summarizeCalls.length, 0);
  });

  it('folds only the turns before the window, and a second run only the newer ones', async () => {
    const store = new Store(30);
    const s = new Summarizer(store, gptTokenizer, options, logger);
    assert.equal(s.maybeSchedule(job(store, 11)), true);
    await s.idle('s');
    assert.equal(store.summary.coveredUntil, 10);
    assert.equal(store.summary.version, 1);
    assert.equal(store.summarizeCalls[0]!.turns.length, 10);
    assert.equal(store.summarizeCalls[0]!.previousSummary, '');

    // Later the window moved on: only turns 11..20 are folded, on top of the previous summary.
    s.maybeSchedule(job(store, 21));
    await s.idle('s');
    assert.equal(store.summarizeCalls.length, 2);
    assert.deepEqual(store.summarizeCalls[1]!.turns.map((t) => t.content), ['t11', 't12', 't13', 't14', 't15', 't16', 't17', 't18', 't19', 't20']);
    assert.equal(store.summarizeCalls[1]!.previousSummary, store.summarizeCalls[0]!.turns.length ? '|t1,t2,t3,t4,t5,t6,t7,t8,t9,t10' : '');
    assert.equal(store.summary.coveredUntil, 20);
    assert.equal(store.summary.version, 2);
  });

  it('folds in batches bounded by tokens', async () => {
    const store = new Store(40);
    const s = new Summarizer(store, gptTokenizer, { ...options, batchTokens: 10 }, logger);
    s.maybeSchedule(job(store, 41, 40));
    await s.idle('s');
    assert.ok(store.summarizeCalls.length >= 4, `expected several calls, got ${store.summarizeCalls.length}`);
    for (const c of store.summarizeCalls) assert.ok(c.turns.reduce((n, t) => n + gptTokenizer.count(t.content), 0) <= 10);
    assert.equal(store.summary.coveredUntil, 40);
  });

  it('keeps the previous summary and all messages when Summarize fails, and retries only later', async () => {
    const store = new Store(30);
    store.summary = { text: 'earlier', coveredUntil: 5, version: 3 };
    let now = 1_000;
    const s = new Summarizer(store, gptTokenizer, options, logger, () => now);
    store.summarizeImpl = async () => {
      throw AppError.unavailable('the language model failed');
    };
    s.maybeSchedule(job(store, 21));
    await s.idle('s');
    assert.deepEqual(store.summary, { text: 'earlier', coveredUntil: 5, version: 3 });
    assert.equal(store.messages.length, 30);
    assert.equal(s.maybeSchedule(job(store, 21)), false, 'no retry right after a failure');
    now += 60_001;
    store.summarizeImpl = async () => 'recovered';
    assert.equal(s.maybeSchedule(job(store, 21)), true);
    await s.idle('s');
    assert.deepEqual(store.summary, { text: 'recovered', coveredUntil: 20, version: 4 });
    assert.deepEqual(store.summarizeCalls.at(-1)!.turns[0]!.content, 't6', 'incremental: starts after covered_until');
  });

  it('runs one job per session at a time and drops a fold that lost a version race', async () => {
    const store = new Store(30);
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    store.summarizeImpl = async () => {
      await gate;
      return 'mine';
    };
    const s = new Summarizer(store, gptTokenizer, options, logger);
    assert.equal(s.maybeSchedule(job(store, 21)), true);
    assert.equal(s.maybeSchedule(job(store, 21)), false, 'one at a time per session');
    // Another replica stores its summary meanwhile.
    store.summary = { text: 'theirs', coveredUntil: 25, version: 1 };
    release();
    await s.idle('s');
    assert.deepEqual(store.summary, { text: 'theirs', coveredUntil: 25, version: 1 }, 'the other writer is not clobbered');
  });
});
