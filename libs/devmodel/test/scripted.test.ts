import assert from 'node:assert/strict';
import OpenAI, { APIConnectionError, APIConnectionTimeoutError, APIUserAbortError, InternalServerError, RateLimitError } from 'openai';
import { configureLogger } from '@chat/logger';
import { loremTokens, startDevModel, type DevModel, type ModelFault } from '../src/index.js';

const MESSAGES = [{ role: 'user' as const, content: 'hello?' }];

/** streamAll reads a streamed completion; returns the content pieces and the time to the first one. */
async function streamAll(client: OpenAI, opts: { signal?: AbortSignal; timeout?: number } = {}): Promise<{ pieces: string[]; ttftMs: number; finish: string | null }> {
  const t0 = performance.now();
  const stream = await client.chat.completions.create({ model: 'dev-echo', stream: true, messages: MESSAGES }, opts);
  const pieces: string[] = [];
  let ttftMs = -1;
  let finish: string | null = null;
  for await (const chunk of stream) {
    const c = chunk.choices[0];
    if (c?.delta.content) {
      if (ttftMs < 0) ttftMs = performance.now() - t0;
      pieces.push(c.delta.content);
    }
    if (c?.finish_reason) finish = c.finish_reason;
  }
  return { pieces, ttftMs, finish };
}

describe('the scripted model', function () {
  this.timeout(10_000);
  const logger = configureLogger({ silent: true });
  let model: DevModel | undefined;
  const start = async (script: NonNullable<Parameters<typeof startDevModel>[0]['script']>) => {
    model = await startDevModel({ logger, script });
    return new OpenAI({ baseURL: model.endpoint.baseUrl, apiKey: model.endpoint.apiKey, maxRetries: 0, timeout: 5_000 });
  };
  afterEach(async () => {
    await model?.stop();
    model = undefined;
  });

  it('streams a fixed lorem reply of the scripted length at the scripted TTFT and token rate', async () => {
    const client = await start({ ttftMs: 60, tokensPerSecond: 200, replyTokens: 20 });
    const { pieces, ttftMs, finish } = await streamAll(client);
    assert.equal(pieces.length, 20);
    assert.equal(pieces.join(''), loremTokens(20).join(''));
    assert.equal(finish, 'stop');
    assert.ok(ttftMs >= 55 && ttftMs < 400, `ttft ${ttftMs}`);
    const res = await client.chat.completions.create({ model: 'dev-echo', messages: MESSAGES });
    assert.equal(res.choices[0]?.message.content, loremTokens(20).join(''));
    assert.equal(model!.stats.completions, 2);
    assert.equal(model!.stats.answered, 2);
  });

  it('paces tokens at the scripted rate', async () => {
    const client = await start({ tokensPerSecond: 100, replyTokens: 11 });
    const t0 = performance.now();
    const { pieces } = await streamAll(client);
    const took = performance.now() - t0;
    assert.equal(pieces.length, 11);
    assert.ok(took >= 95 && took < 600, `10 gaps at 100 tokens/s took ${took} ms`);
  });

  it('answers a scripted 500, then serves the next request normally', async () => {
    const client = await start({ replyTokens: 3, faults: [{ status: 500 }] });
    await assert.rejects(streamAll(client), (err: unknown) => {
      assert.ok(err instanceof InternalServerError, String(err));
      assert.equal(err.status, 500);
      return true;
    });
    const { pieces } = await streamAll(client);
    assert.equal(pieces.length, 3);
    assert.deepEqual(model!.stats.faults, { '500': 1 });
    assert.equal(model!.stats.completions, 2);
  });

  it('answers a scripted 429 with a Retry-After header', async () => {
    const client = await start({ replyTokens: 3, faults: [{ status: 429, retryAfterS: 7 }] });
    await assert.rejects(streamAll(client), (err: unknown) => {
      assert.ok(err instanceof RateLimitError, String(err));
      assert.equal(err.status, 429);
      assert.equal(err.headers?.get('retry-after'), '7');
      return true;
    });
  });

  it('hangs until the client times out', async () => {
    const client = await start({ replyTokens: 3, faults: [{ hang: true }] });
    const t0 = performance.now();
    await assert.rejects(streamAll(client, { timeout: 150 }), (err: unknown) => {
      assert.ok(err instanceof APIConnectionTimeoutError, String(err));
      return true;
    });
    assert.ok(performance.now() - t0 >= 140);
    assert.equal(model!.stats.faults.hang, 1);
    // The server notices the client went away.
    for (let i = 0; i < 50 && model!.stats.hanging > 0; i++) await new Promise((r) => setTimeout(r, 10));
    assert.equal(model!.stats.hanging, 0);
  });

  it('hangs until the client aborts, and stops promptly with a request still hanging', async () => {
    const client = await start({ faults: (n) => (n <= 2 ? { hang: true } : undefined) });
    const ac = new AbortController();
    setTimeout(() => ac.abort(), 100);
    await assert.rejects(streamAll(client, { signal: ac.signal }), (err: unknown) => {
      assert.ok(err instanceof APIUserAbortError, String(err));
      return true;
    });
    // A second hanging request is cut by stop(), well before the client's own timeout.
    const pending = streamAll(client, { timeout: 5_000 }).then(
      () => 'answered',
      (err: unknown) => (err instanceof APIConnectionError ? 'connection error' : String(err)),
    );
    for (let i = 0; i < 50 && model!.stats.hanging === 0; i++) await new Promise((r) => setTimeout(r, 10));
    const t0 = performance.now();
    await model!.stop();
    assert.equal(await pending, 'connection error');
    assert.ok(performance.now() - t0 < 1_000);
  });

  it('resets the connection mid-stream after the scripted number of tokens', async () => {
    const client = await start({ replyTokens: 10, faults: [{ resetAfterTokens: 4 }] });
    const seen: string[] = [];
    await assert.rejects(
      (async () => {
        const stream = await client.chat.completions.create({ model: 'dev-echo', stream: true, messages: MESSAGES });
        for await (const chunk of stream) if (chunk.choices[0]?.delta.content) seen.push(chunk.choices[0].delta.content);
      })(),
      (err: unknown) => err instanceof Error,
    );
    assert.equal(seen.length, 4);
    assert.equal(model!.stats.faults.reset, 1);
    assert.equal(model!.stats.answered, 0);
  });

  it('delays a request by the scripted pause', async () => {
    const faults: ModelFault[] = [{ delayMs: 120 }];
    const client = await start({ replyTokens: 2, ttftMs: 10, faults });
    const { ttftMs, pieces } = await streamAll(client);
    assert.equal(pieces.length, 2);
    assert.ok(ttftMs >= 125, `ttft ${ttftMs}`);
    assert.equal(faults.length, 0, 'the queue is consumed');
  });

  it('counts every request, including model listings', async () => {
    const client = await start({});
    await client.models.list();
    const res = await client.chat.completions.create({ model: 'dev-echo', messages: MESSAGES });
    assert.match(res.choices[0]?.message.content ?? '', /^\[development model\]/, 'without replyTokens it is the dev model reply');
    assert.equal(model!.stats.requests, 2);
    assert.equal(model!.stats.completions, 1);
  });
});
