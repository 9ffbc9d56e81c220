import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { getEventListeners } from 'node:events';
import { eventsV1, ragV1, sessionV1, type personaV1 } from '@chat/contracts';
import { AppError, Code } from '@chat/errors';
import { configureLogger } from '@chat/logger';
import { gptTokenizer } from '../src/adapters/tokenizer.js';
import { Scheduler, type SchedulerOptions } from '../src/domain/scheduler.js';
import type { SchedulerPorts } from '../src/domain/ports.js';

const logger = configureLogger({ silent: true });
const S = sessionV1.MessageStatus;

/** What one attempt of one reply does. */
interface Step {
  /** Fail before any text. */
  fail?: AppError;
  /** Text pieces to stream (default one piece). */
  deltas?: string[];
  /** Fail after streaming the deltas. */
  failAfter?: AppError;
  /** Send nothing until cancelled (then fail as a cancelled gRPC call does). */
  hang?: boolean;
  /** Hang after the deltas. */
  hangAfter?: boolean;
  /** Wait for this before answering. */
  gate?: Promise<void>;
}

interface Call {
  replyId: string;
  sessionId: string;
  startedAt: number;
  endedAt?: number;
}

const cancelledCall = () => new AppError(Code.Cancelled, 'rag service call cancelled', { reason: 'cancelled' });

function waitAbort(signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    signal?.addEventListener('abort', () => resolve(), { once: true });
  });
}

const until = async (what: string, fn: () => boolean, timeoutMs = 5_000) => {
  const end = Date.now() + timeoutMs;
  while (!fn()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
};

class Harness {
  readonly calls: Call[] = [];
  readonly events: eventsV1.ReplyEvent[] = [];
  readonly steps = new Map<string, Step[]>();
  readonly status = new Map<string, sessionV1.MessageStatus>();
  readonly personas = new Map<string, Partial<personaV1.Persona>>();
  readonly limits = new Map<string, personaV1.ApiProfileLimits>();
  running = 0;
  maxRunning = 0;
  readonly runningByProfile = new Map<string, number>();
  readonly maxByProfile = new Map<string, number>();
  scheduler: Scheduler;

  constructor(options: Partial<SchedulerOptions> = {}) {
    const h = this;
    const ports: SchedulerPorts = {
      getPersona: async ({ id, ownerId }) => ({ persona: { id, ownerId, name: 'P', systemPrompt: 'Be brief.', background: '', settings: undefined, ...(h.personas.get(id) ?? {}) } as personaV1.Persona }),
      getApiProfile: async ({ id }) => ({ profile: { id, limits: h.limits.get(id) } as personaV1.ApiProfile }),
      getConversationWindow: async ({ replyId }) =>
        sessionV1.GetConversationWindowResponse.fromPartial({ messages: [], replyStatus: h.status.get(replyId) ?? S.MESSAGE_STATUS_PENDING }),
      generate: (req, options) => h.generate(req, options),
      publish: async (_sid, events) => {
        h.events.push(...events);
      },
    };
    this.scheduler = new Scheduler(
      ports,
      {
        replyTimeoutMs: 10_000,
        idleEvictMs: 60_000,
        windowMaxMessages: 50,
        defaultBudgetTokens: 3_000,
        knowledgeReserveTokens: 500,
        retry: { maxAttempts: 3, baseMs: 10, maxMs: 2_000 },
        redeliverySettleMs: 200,
        redeliveryPollMs: 20,
        ...options,
      },
      logger,
      gptTokenizer,
    );
  }

  private async *generate(req: Partial<ragV1.GenerateRequest>, options: { signal?: AbortSignal }): AsyncGenerator<ragV1.GenerateResponse> {
    const call: Call = { replyId: req.replyId!, sessionId: req.sessionId!, startedAt: Date.now() };
    this.calls.push(call);
    const profile = this.personas.get(req.personaId!)?.apiProfileId ?? 'default';
    this.running++;
    this.maxRunning = Math.max(this.maxRunning, this.running);
    const n = (this.runningByProfile.get(profile) ?? 0) + 1;
    this.runningByProfile.set(profile, n);
    this.maxByProfile.set(profile, Math.max(this.maxByProfile.get(profile) ?? 0, n));
    try {
      const step = this.steps.get(req.replyId!)?.shift() ?? {};
      if (step.gate) await Promise.race([step.gate, waitAbort(options.signal)]);
      if (options.signal?.aborted) throw cancelledCall();
      if (step.hang) {
        await waitAbort(options.signal);
        throw cancelledCall();
      }
      if (step.fail) throw step.fail;
      const deltas = step.deltas ?? [`reply to ${req.userMessage}`];
      for (const d of deltas) yield { item: { $case: 'delta', value: { text: d } } };
      if (step.hangAfter) {
        await waitAbort(options.signal);
        throw cancelledCall();
      }
      if (step.failAfter) throw step.failAfter;
      yield { item: { $case: 'completed', value: { content: deltas.join(''), citations: [], model: 'm' } } };
    } finally {
      call.endedAt = Date.now();
      this.running--;
      this.runningByProfile.set(profile, this.runningByProfile.get(profile)! - 1);
    }
  }

  message(sessionId: string, content: string, priority = 0, personaId = 'persona') {
    return eventsV1.MessageCreated.fromPartial({ messageId: randomUUID(), replyId: randomUUID(), sessionId, ownerId: 'owner', personaId, content, priority });
  }

  /** push and capture the outcome without an unhandled rejection. */
  push(m: eventsV1.MessageCreated, options = {}): Promise<{ ok: true } | { ok: false; err: Error & { reason?: string; attempts?: number } }> {
    return this.scheduler.push(m, options).then(
      () => ({ ok: true as const }),
      (err: Error) => ({ ok: false as const, err }),
    );
  }

  eventsOf(replyId: string) {
    return this.events.filter((e) => e.replyId === replyId);
  }
  final(replyId: string) {
    return this.eventsOf(replyId).find((e) => e.kind?.$case === 'completed' || e.kind?.$case === 'failed');
  }
}

describe('scheduler: FIFO per session, priorities across sessions, limits', () => {
  let h: Harness;
  afterEach(() => h?.scheduler.stop());

  it('runs one session’s messages one at a time, in order, with increasing seq', async () => {
    h = new Harness();
    const s = randomUUID();
    const ms = [h.message(s, 'one'), h.message(s, 'two'), h.message(s, 'three')];
    const outcomes = await Promise.all(ms.map((m) => h.push(m)));
    assert.ok(outcomes.every((o) => o.ok));
    assert.deepEqual(
      h.calls.map((c) => c.replyId),
      ms.map((m) => m.replyId),
    );
    for (let i = 1; i < h.calls.length; i++) assert.ok(h.calls[i]!.startedAt >= h.calls[i - 1]!.endedAt!, 'no overlap within a session');
    assert.deepEqual(
      h.events.map((e) => Number(e.seq)),
      h.events.map((_, i) => i + 1),
    );
    assert.deepEqual(
      h.events.filter((e) => e.kind?.$case === 'completed').map((e) => e.replyId),
      ms.map((m) => m.replyId),
    );
  });

  it('starts waiting sessions by priority when the replica is at its concurrency cap', async () => {
    h = new Harness({ maxConcurrent: 1 });
    let release!: () => void;
    const blocker = h.message(randomUUID(), 'blocker');
    h.steps.set(blocker.replyId, [{ gate: new Promise<void>((r) => (release = r)) }]);
    const done = [h.push(blocker)];
    await until('blocker running', () => h.calls.length === 1);
    const low = h.message(randomUUID(), 'low', -5);
    const normal = h.message(randomUUID(), 'normal', 0);
    const high = h.message(randomUUID(), 'high', 7);
    done.push(h.push(low), h.push(normal), h.push(high));
    await new Promise((r) => setTimeout(r, 20));
    assert.equal(h.calls.length, 1, 'the cap holds the others back');
    assert.equal(h.scheduler.stats().queued, 3);
    release();
    await Promise.all(done);
    assert.deepEqual(
      h.calls.map((c) => c.replyId),
      [blocker.replyId, high.replyId, normal.replyId, low.replyId],
    );
    assert.equal(h.maxRunning, 1);
  });

  it('lets an aged low-priority message overtake fresher high-priority ones', async () => {
    h = new Harness({ maxConcurrent: 1, agingMs: 10 });
    let release!: () => void;
    const blocker = h.message(randomUUID(), 'blocker');
    h.steps.set(blocker.replyId, [{ gate: new Promise<void>((r) => (release = r)) }]);
    const done = [h.push(blocker)];
    await until('blocker running', () => h.calls.length === 1);
    const low = h.message(randomUUID(), 'low', -10);
    done.push(h.push(low));
    // 20 levels at 10 ms each: after well over 200 ms the low one outranks a fresh +10.
    await new Promise((r) => setTimeout(r, 400));
    const high = h.message(randomUUID(), 'high', 10);
    done.push(h.push(high));
    release();
    await Promise.all(done);
    assert.deepEqual(
      h.calls.map((c) => c.replyId),
      [blocker.replyId, low.replyId, high.replyId],
    );
  });

  it('enforces a profile’s max_concurrent_generations while other profiles run', async () => {
    h = new Harness();
    h.personas.set('p1-persona', { apiProfileId: 'p1' });
    h.personas.set('p2-persona', { apiProfileId: 'p2' });
    h.limits.set('p1', { maxConcurrentGenerations: 1 });
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const ms = [h.message(randomUUID(), 'a', 0, 'p1-persona'), h.message(randomUUID(), 'b', 0, 'p1-persona'), h.message(randomUUID(), 'c', 0, 'p2-persona'), h.message(randomUUID(), 'd', 0, 'p2-persona')];
    for (const m of ms) h.steps.set(m.replyId, [{ gate }]);
    const done = ms.map((m) => h.push(m));
    await until('three running', () => h.running === 3);
    await new Promise((r) => setTimeout(r, 20));
    assert.equal(h.runningByProfile.get('p1'), 1);
    assert.equal(h.runningByProfile.get('p2'), 2);
    release();
    assert.ok((await Promise.all(done)).every((o) => o.ok));
    assert.equal(h.maxByProfile.get('p1'), 1);
  });

  it('enforces a profile’s requests_per_minute (the next request waits for the window)', async () => {
    h = new Harness();
    h.personas.set('rl', { apiProfileId: 'rl' });
    h.limits.set('rl', { requestsPerMinute: 2 });
    const ms = [h.message(randomUUID(), 'a', 0, 'rl'), h.message(randomUUID(), 'b', 0, 'rl'), h.message(randomUUID(), 'c', 0, 'rl')];
    const done = ms.map((m) => h.push(m));
    await until('two answered', () => h.events.filter((e) => e.kind?.$case === 'completed').length === 2);
    await new Promise((r) => setTimeout(r, 100));
    assert.equal(h.calls.length, 2, 'the third waits for the one-minute window');
    assert.equal(h.scheduler.stats().queued, 1);
    h.scheduler.stop();
    void done;
  });

  it('cancels a queued message without running it, in its session’s order', async () => {
    h = new Harness();
    const s = randomUUID();
    let release!: () => void;
    const first = h.message(s, 'first');
    const second = h.message(s, 'second');
    h.steps.set(first.replyId, [{ gate: new Promise<void>((r) => (release = r)) }]);
    const done = [h.push(first), h.push(second)];
    await until('first running', () => h.calls.length === 1);
    assert.equal(h.scheduler.cancel('owner', s, second.replyId), true);
    assert.equal(h.scheduler.cancel('someone-else', s, first.replyId), false);
    release();
    const [a, b] = await Promise.all(done);
    assert.ok(a.ok && b.ok);
    assert.deepEqual(
      h.calls.map((c) => c.replyId),
      [first.replyId],
    );
    const f = h.final(second.replyId);
    assert.equal(f?.kind?.$case, 'failed');
    assert.equal(f?.kind?.$case === 'failed' && f.kind.value.code, 'cancelled');
    assert.ok(Number(f!.seq) > Number(h.final(first.replyId)!.seq));
  });
});

describe('scheduler: retries, deadlines and failures', () => {
  let h: Harness;
  afterEach(() => h?.scheduler.stop());
  const unavailable = () => new AppError(Code.Unavailable, 'the language model failed (500)', { reason: 'llm_unavailable', details: { upstream_status: 500 } });

  it('retries a retryable failure (500) and completes, once', async () => {
    h = new Harness();
    const m = h.message(randomUUID(), 'hi');
    h.steps.set(m.replyId, [{ fail: unavailable() }, {}]);
    const before = h.scheduler.stats().retries;
    assert.deepEqual(await h.push(m), { ok: true });
    assert.equal(h.calls.length, 2);
    assert.equal(h.scheduler.stats().retries, before + 1);
    assert.equal(h.eventsOf(m.replyId).filter((e) => e.kind?.$case === 'completed').length, 1);
    assert.equal(h.eventsOf(m.replyId).filter((e) => e.kind?.$case === 'failed').length, 0);
  });

  it('waits at least the Retry-After of a 429 before the next attempt', async () => {
    h = new Harness();
    const m = h.message(randomUUID(), 'hi');
    h.steps.set(m.replyId, [{ fail: new AppError(Code.ResourceExhausted, 'rate limited', { reason: 'llm_rate_limited', details: { retry_after_ms: 300 } }) }, {}]);
    assert.deepEqual(await h.push(m), { ok: true });
    assert.equal(h.calls.length, 2);
    assert.ok(h.calls[1]!.startedAt - h.calls[0]!.endedAt! >= 295, `waited ${h.calls[1]!.startedAt - h.calls[0]!.endedAt!} ms`);
  });

  it('does not retry a client error (4xx): reply.failed at once and a permanent error for the dead-letter topic', async () => {
    h = new Harness();
    const m = h.message(randomUUID(), 'hi');
    h.steps.set(m.replyId, [{ fail: new AppError(Code.FailedPrecondition, 'the language model rejected the request (400)', { reason: 'llm_rejected' }) }]);
    const out = await h.push(m);
    assert.equal(out.ok, false);
    assert.ok(!out.ok && out.err.name === 'PermanentError' && out.err.reason === 'llm_rejected' && out.err.attempts === 1);
    assert.equal(h.calls.length, 1);
    const f = h.final(m.replyId);
    assert.equal(f?.kind?.$case === 'failed' && f.kind.value.code, 'llm_rejected');
  });

  it('gives up after the configured attempts with the last cause', async () => {
    h = new Harness();
    const m = h.message(randomUUID(), 'hi');
    h.steps.set(m.replyId, [{ fail: unavailable() }, { fail: unavailable() }, { fail: unavailable() }, {}]);
    const out = await h.push(m);
    assert.ok(!out.ok && out.err.reason === 'llm_unavailable' && out.err.attempts === 3);
    assert.equal(h.calls.length, 3);
    assert.equal(h.eventsOf(m.replyId).length, 1, 'only the failure was published');
  });

  it('never re-runs a reply that already streamed text: it fails with reply_interrupted', async () => {
    h = new Harness();
    const m = h.message(randomUUID(), 'hi');
    h.steps.set(m.replyId, [{ deltas: ['Hel', 'lo'], failAfter: unavailable() }, {}]);
    const out = await h.push(m);
    assert.ok(!out.ok && out.err.reason === 'reply_interrupted');
    assert.equal(h.calls.length, 1);
    const kinds = h.eventsOf(m.replyId).map((e) => e.kind?.$case);
    assert.deepEqual(kinds, ['delta', 'delta', 'failed']);
    const f = h.final(m.replyId);
    assert.equal(f?.kind?.$case === 'failed' && f.kind.value.code, 'reply_interrupted');
  });

  it('cuts an attempt that sends no text within the first-token deadline, and retries it', async () => {
    h = new Harness({ firstTokenTimeoutMs: 100 });
    const m = h.message(randomUUID(), 'hi');
    h.steps.set(m.replyId, [{ hang: true }, {}]);
    assert.deepEqual(await h.push(m), { ok: true });
    assert.equal(h.calls.length, 2);
  });

  it('fails a reply that outlives the whole-reply deadline with reply_timeout (not retried)', async () => {
    h = new Harness({ replyTimeoutMs: 200, firstTokenTimeoutMs: 100 });
    const m = h.message(randomUUID(), 'hi');
    h.steps.set(m.replyId, [{ deltas: ['a'], hangAfter: true }, {}]);
    const out = await h.push(m);
    assert.ok(!out.ok && out.err.reason === 'reply_timeout', !out.ok ? out.err.reason : 'ok');
    assert.equal(h.calls.length, 1);
  });

  it('fails a redelivered message whose reply was streaming (its first run died) without running it again', async () => {
    h = new Harness();
    const m = h.message(randomUUID(), 'hi');
    h.status.set(m.replyId, S.MESSAGE_STATUS_STREAMING);
    const out = await h.push(m);
    assert.ok(!out.ok && out.err.reason === 'reply_interrupted');
    assert.equal(h.calls.length, 0);
  });

  it('publishes nothing for a message delivered again after this replica finalised its reply (even if the store still says streaming)', async () => {
    h = new Harness();
    const m = h.message(randomUUID(), 'hi');
    assert.deepEqual(await h.push(m), { ok: true });
    const published = h.events.length;
    // The session service has not recorded the final event yet: the stored status is still streaming.
    h.status.set(m.replyId, S.MESSAGE_STATUS_STREAMING);
    assert.deepEqual(await h.push(m), { ok: true });
    assert.equal(h.events.length, published, 'no second final event');
    assert.equal(h.calls.length, 1);
    // A failed one is skipped too, unless it is a replayed dead letter.
    const f = h.message(randomUUID(), 'fails');
    h.steps.set(f.replyId, [{ fail: new AppError(Code.InvalidArgument, 'bad', { reason: 'llm_rejected' }) }]);
    const first = await h.push(f);
    assert.ok(!first.ok && first.err.name === 'PermanentError');
    assert.deepEqual(await h.push(f), { ok: true });
    assert.equal(h.eventsOf(f.replyId).filter((e) => e.kind?.$case === 'failed').length, 1);
    h.status.set(f.replyId, S.MESSAGE_STATUS_FAILED);
    assert.deepEqual(await h.push(f, { replayOf: 'dl-2' }), { ok: true });
    assert.equal(h.eventsOf(f.replyId).at(-1)?.kind?.$case, 'completed', 'the replay runs it again');
  });

  it('waits, bounded, for a redelivered streaming reply to settle: final in time → skipped, not re-run and nothing published', async () => {
    h = new Harness({ redeliverySettleMs: 2_000, redeliveryPollMs: 20 });
    const m = h.message(randomUUID(), 'hi');
    h.status.set(m.replyId, S.MESSAGE_STATUS_STREAMING);
    // The first run (another replica) finished; the session service records it a little later.
    setTimeout(() => h.status.set(m.replyId, S.MESSAGE_STATUS_COMPLETED), 100);
    assert.deepEqual(await h.push(m), { ok: true });
    assert.equal(h.calls.length, 0);
    assert.equal(h.eventsOf(m.replyId).length, 0, 'no reply_interrupted for a reply that had completed');
  });

  it('skips a redelivered message whose reply is final, and reopens a failed one only on a replay', async () => {
    h = new Harness();
    const m = h.message(randomUUID(), 'hi');
    h.status.set(m.replyId, S.MESSAGE_STATUS_FAILED);
    assert.deepEqual(await h.push(m), { ok: true });
    assert.equal(h.calls.length, 0);
    assert.equal(h.eventsOf(m.replyId).length, 0);
    assert.deepEqual(await h.push(m, { replayOf: 'dl-1' }), { ok: true });
    assert.equal(h.calls.length, 1);
    const evs = h.eventsOf(m.replyId);
    assert.equal(evs[0]?.reopened?.deadLetterId, 'dl-1');
    assert.equal(Number(evs[0]?.seq), 0, 'a control event takes no seq');
    assert.equal(evs.at(-1)?.kind?.$case, 'completed');
    h.status.set(m.replyId, S.MESSAGE_STATUS_COMPLETED);
    assert.deepEqual(await h.push(m, { replayOf: 'dl-1' }), { ok: true });
    assert.equal(h.calls.length, 1, 'a completed reply is never re-run, replay or not');
  });

  it('gives back messages that have not started at shutdown (for redelivery) and refuses new ones', async () => {
    h = new Harness({ maxConcurrent: 1 });
    let release!: () => void;
    const a = h.message(randomUUID(), 'a');
    const b = h.message(randomUUID(), 'b');
    h.steps.set(a.replyId, [{ gate: new Promise<void>((r) => (release = r)) }]);
    const pa = h.push(a);
    const pb = h.push(b);
    await until('a running', () => h.calls.length === 1);
    h.scheduler.shutdown();
    const outB = await pb;
    assert.ok(!outB.ok && outB.err.name === 'SchedulerStopping');
    release();
    assert.deepEqual(await pa, { ok: true });
    const outC = await h.push(h.message(randomUUID(), 'c'));
    assert.ok(!outC.ok && outC.err.name === 'SchedulerStopping');
  });

  it('keeps no abort listener of a settled message (the bus may pass one signal for many messages)', async () => {
    h = new Harness();
    const shared = new AbortController();
    for (let i = 0; i < 20; i++) assert.deepEqual(await h.push(h.message(randomUUID(), `m${i}`), { signal: shared.signal }), { ok: true });
    assert.equal(getEventListeners(shared.signal, 'abort').length, 0);
  });

  it('lets a running reply of a revoked partition finish within the grace, and hands back the waiting ones', async () => {
    h = new Harness({ maxConcurrent: 1, revokeGraceMs: 5_000 });
    const running = h.message(randomUUID(), 'running');
    const waiting = h.message(randomUUID(), 'waiting');
    let release!: () => void;
    h.steps.set(running.replyId, [{ gate: new Promise<void>((r) => (release = r)) }]);
    const ra = new AbortController();
    const wa = new AbortController();
    const pr = h.push(running, { signal: ra.signal });
    const pw = h.push(waiting, { signal: wa.signal });
    await until('the first to run', () => h.calls.length === 1);
    ra.abort();
    wa.abort();
    const outW = await pw;
    assert.ok(!outW.ok && outW.err.name === 'PartitionRevoked', 'a message not started is handed back');
    release();
    assert.deepEqual(await pr, { ok: true }, 'the running reply finished and was acknowledged');
    assert.equal(h.final(running.replyId)?.kind?.$case, 'completed');
    assert.equal(h.eventsOf(waiting.replyId).length, 0);
    assert.equal(h.calls.length, 1);
  });

  it('drops a message whose partition was revoked (rebalance) without a final event, waiting or running past the grace', async () => {
    h = new Harness({ maxConcurrent: 1, revokeGraceMs: 50 });
    const running = h.message(randomUUID(), 'running');
    const waiting = h.message(randomUUID(), 'waiting');
    h.steps.set(running.replyId, [{ deltas: ['partial'], hangAfter: true }]);
    const ra = new AbortController();
    const wa = new AbortController();
    const pr = h.push(running, { signal: ra.signal });
    const pw = h.push(waiting, { signal: wa.signal });
    await until('the first streaming', () => h.eventsOf(running.replyId).length === 1);
    wa.abort();
    ra.abort();
    const [outR, outW] = await Promise.all([pr, pw]);
    assert.ok(!outR.ok && outR.err.name === 'PartitionRevoked');
    assert.ok(!outW.ok && outW.err.name === 'PartitionRevoked');
    assert.equal(h.final(running.replyId), undefined, 'no final event: the new owner decides');
    assert.equal(h.eventsOf(waiting.replyId).length, 0);
    assert.equal(h.calls.length, 1);
    assert.equal(h.scheduler.stats().queued, 0);
    assert.equal(h.scheduler.stats().inFlight, 0);
  });
});
