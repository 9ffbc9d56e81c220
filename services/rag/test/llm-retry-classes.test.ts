import assert from 'node:assert/strict';
import { startDevModel, type DevModel, type ModelFault } from '@chat/devmodel';
import { Code, isAppError, type AppError } from '@chat/errors';
import { configureLogger } from '@chat/logger';
import { OpenAiChatModel, retryAfterMs } from '../src/adapters/openai/chat-model.js';

/*
 * What the one retry layer (the scheduler, decision 0009) learns from a model failure: the code
 * that makes it retryable or final, and the upstream's Retry-After. The client never retries.
 */
describe('model failures as the scheduler sees them (real HTTP faults)', function () {
  this.timeout(20_000);
  const logger = configureLogger({ silent: true });
  let dev: DevModel;
  const faults: Array<ModelFault | undefined> = [];

  before(async () => {
    dev = await startDevModel({ logger, script: { replyTokens: 6, faults } });
  });
  after(() => dev.stop());

  const failure = async (fault: ModelFault): Promise<AppError> => {
    faults.push(fault);
    const model = new OpenAiChatModel(dev.endpoint, { timeoutMs: 5_000 });
    try {
      for await (const _ of model.stream({ messages: [{ role: 'user', content: 'hi' }] })) void _;
    } catch (err) {
      assert.ok(isAppError(err), String(err));
      return err;
    }
    throw new Error('the stream did not fail');
  };

  it('429 with Retry-After: RESOURCE_EXHAUSTED with retry_after_ms, after one request (no client retries)', async () => {
    const before = dev.stats.completions;
    const err = await failure({ status: 429, retryAfterS: 2 });
    assert.equal(err.code, Code.ResourceExhausted);
    assert.equal(err.reason, 'llm_rate_limited');
    assert.equal(err.details.retry_after_ms, 2_000);
    assert.equal(dev.stats.completions - before, 1, 'maxRetries: 0');
  });

  it('500/503: UNAVAILABLE (retryable), with Retry-After when sent', async () => {
    const a = await failure({ status: 500 });
    assert.equal(a.code, Code.Unavailable);
    assert.equal(a.details.retry_after_ms, undefined);
    const b = await failure({ status: 503, retryAfterS: 1 });
    assert.equal(b.code, Code.Unavailable);
    assert.equal(b.details.retry_after_ms, 1_000);
  });

  it('400: FAILED_PRECONDITION (final), Retry-After ignored', async () => {
    const err = await failure({ status: 400, retryAfterS: 5 });
    assert.equal(err.code, Code.FailedPrecondition);
    assert.equal(err.details.retry_after_ms, undefined);
  });

  it('a connection reset mid-stream: UNAVAILABLE, never a quietly truncated reply', async () => {
    const err = await failure({ resetAfterTokens: 2 });
    assert.equal(err.code, Code.Unavailable);
  });

  it('reads retry-after-ms, Retry-After seconds and HTTP dates', () => {
    const h = (o: Record<string, string>) => ({ get: (n: string) => o[n] ?? null });
    assert.equal(retryAfterMs(h({ 'retry-after-ms': '250' })), 250);
    assert.equal(retryAfterMs(h({ 'retry-after': '3' })), 3_000);
    assert.equal(retryAfterMs(h({ 'retry-after': new Date(20_000).toUTCString() }), 5_000), 15_000);
    assert.equal(retryAfterMs(h({ 'retry-after': 'later' })), undefined);
    assert.equal(retryAfterMs(h({})), undefined);
    assert.equal(retryAfterMs(undefined), undefined);
  });
});
