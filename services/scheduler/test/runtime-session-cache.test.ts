import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { eventsV1, ragV1, sessionV1, type personaV1 } from '@chat/contracts';
import { AppError, Code } from '@chat/errors';
import { configureLogger } from '@chat/logger';
import { gptTokenizer } from '../src/adapters/tokenizer.js';
import { Scheduler, type SchedulerOptions } from '../src/domain/scheduler.js';
import type { SchedulerPorts } from '../src/domain/ports.js';
import { Summarizer, type SummaryJob } from '../src/domain/summarizer.js';

const logger = configureLogger({ silent: true });
const S = sessionV1.MessageStatus;

interface StoredMessage {
  id: string;
  role: sessionV1.Role;
  content: string;
  status: sessionV1.MessageStatus;
  position: number;
  createdAt: Date;
}

/**
 * A session service in memory that behaves like the real one for the scheduler: messages with
 * global positions, a user message and its pending reply stored together, final reply events
 * recorded (first final wins), the window before a message, the reply's status.
 */
class SessionStore {
  readonly messages = new Map<string, StoredMessage[]>();
  readonly lastSeq = new Map<string, number>();
  summary = new Map<string, { text: string; coveredUntil: number; version: number }>();
  private position = 0;
  private clock = Date.parse('2026-11-24T00:00:00Z');

  send(sessionId: string, content: string, personaId = 'persona'): eventsV1.MessageCreated {
    const list = this.messages.get(sessionId) ?? [];
    // As the session service says of a session created with its first message and no history.
    const firstInSession = list.length === 0;
    this.messages.set(sessionId, list);
    const createdAt = new Date((this.clock += 1000));
    const messageId = randomUUID();
    const replyId = randomUUID();
    list.push({ id: messageId, role: sessionV1.Role.ROLE_USER, content, status: S.MESSAGE_STATUS_COMPLETED, position: ++this.position, createdAt });
    list.push({ id: replyId, role: sessionV1.Role.ROLE_ASSISTANT, content: '', status: S.MESSAGE_STATUS_PENDING, position: ++this.position, createdAt });
    return eventsV1.MessageCreated.fromPartial({ messageId, replyId, sessionId, ownerId: 'owner', personaId, content, priority: 0, createdAt, firstInSession });
  }

  record(events: eventsV1.ReplyEvent[]): void {
    for (const e of events) {
      this.lastSeq.set(e.sessionId, Math.max(this.lastSeq.get(e.sessionId) ?? 0, Number(e.seq)));
      const row = this.messages.get(e.sessionId)?.find((x) => x.id === e.replyId);
      if (!row || row.status === S.MESSAGE_STATUS_COMPLETED || row.status === S.MESSAGE_STATUS_FAILED) continue;
      if (e.kind?.$case === 'delta') row.status = S.MESSAGE_STATUS_STREAMING;
      if (e.kind?.$case === 'completed') Object.assign(row, { status: S.MESSAGE_STATUS_COMPLETED, content: e.kind.value.content });
      if (e.kind?.$case === 'failed') Object.assign(row, { status: S.MESSAGE_STATUS_FAILED, content: '' });
    }
  }

  window(req: { sessionId: string; beforeMessageId: string; maxMessages: number; replyId: string }): sessionV1.GetConversationWindowResponse {
    const list = this.messages.get(req.sessionId) ?? [];
    const before = list.find((x) => x.id === req.beforeMessageId)?.position ?? Infinity;
    const summary = this.summary.get(req.sessionId);
    const uncovered = list.filter((x) => x.position < before && x.position > (summary?.coveredUntil ?? 0));
    const messages = uncovered.slice(-req.maxMessages);
    return sessionV1.GetConversationWindowResponse.fromPartial({
      session: { id: req.sessionId, lastSeq: this.lastSeq.get(req.sessionId) ?? 0 },
      messages: messages.map((x) => ({ ...x })),
      olderUncovered: uncovered.length - messages.length,
      summary: summary ? { text: summary.text, coveredUntil: summary.coveredUntil, version: summary.version } : undefined,
      replyStatus: list.find((x) => x.id === req.replyId)?.status ?? S.MESSAGE_STATUS_UNSPECIFIED,
    });
  }
}

/** A scheduler on that store, counting the reads it makes and recording what it asks the model. */
class Rig {
  readonly requests: Array<Partial<ragV1.GenerateRequest>> = [];
  readonly personas = new Map<string, Partial<personaV1.Persona>>();
  personaReads = 0;
  windowReads = 0;
  /** The order of the window reads and model calls. */
  readonly calls: Array<'window' | 'generate'> = [];
  /** Messages whose reply fails for good (a non-retryable error before any text). */
  readonly failing = new Set<string>();
  /** While set, window reads wait for it (or fail with it when it rejects). */
  windowGate: Promise<void> | undefined;
  readonly published: eventsV1.ReplyEvent[] = [];
  readonly scheduler: Scheduler;

  constructor(
    readonly store: SessionStore,
    options: Partial<SchedulerOptions> = {},
    summarizer?: Summarizer,
  ) {
    const ports: SchedulerPorts = {
      getPersona: async ({ id, ownerId }) => {
        this.personaReads++;
        return { persona: { id, ownerId, name: 'P', systemPrompt: 'Be brief.', background: '', settings: undefined, ...(this.personas.get(id) ?? {}) } as personaV1.Persona };
      },
      getConversationWindow: async (req) => {
        this.windowReads++;
        this.calls.push('window');
        if (this.windowGate) await this.windowGate;
        return store.window(req);
      },
      generate: (req) => {
        this.calls.push('generate');
        return this.generate(req);
      },
      publish: async (_sid, events) => {
        this.published.push(...events);
        store.record(events);
      },
    };
    this.scheduler = new Scheduler(
      ports,
      { replyTimeoutMs: 10_000, idleEvictMs: 60_000, windowMaxMessages: 50, defaultBudgetTokens: 3_000, knowledgeReserveTokens: 500, redeliverySettleMs: 0, ...options },
      logger,
      gptTokenizer,
      summarizer,
    );
  }

  private async *generate(req: Partial<ragV1.GenerateRequest>): AsyncGenerator<ragV1.GenerateResponse> {
    this.requests.push(structuredClone(req));
    if (this.failing.has(req.userMessage!)) throw new AppError(Code.InvalidArgument, 'the model refused this request', { reason: 'llm_bad_request' });
    const text = `answer to ${req.userMessage} (${req.systemPrompt})`;
    yield { item: { $case: 'delta', value: { text } } };
    yield { item: { $case: 'completed', value: { content: text, citations: [], model: 'm' } } };
  }

  /** Sends a message through the store and waits for its outcome. */
  async turn(sessionId: string, content: string): Promise<eventsV1.MessageCreated> {
    const m = this.store.send(sessionId, content);
    // A reply that failed for good rejects (its message goes to the dead letters): an outcome too.
    await this.scheduler.push(m).catch((err: Error) => {
      if (err.name !== 'PermanentError') throw err;
    });
    return m;
  }
}

describe('RuntimeSession caches (persona and recent history, decision 0020)', () => {
  const rigs: Rig[] = [];
  const rig = (...args: ConstructorParameters<typeof Rig>) => {
    const r = new Rig(...args);
    rigs.push(r);
    return r;
  };
  afterEach(() => {
    for (const r of rigs.splice(0)) r.scheduler.stop();
  });

  for (const budget of [3_000, 700]) {
    it(`prepares later messages of a session without reading, with the same prompt a read gives (budget ${budget} tokens)`, async () => {
      // What the scheduler asks background summarisation (fold point, turns outside), per message.
      const spy = () => {
        const jobs: SummaryJob[] = [];
        const fake = {
          maybeSchedule: (job: SummaryJob) => {
            jobs.push(job);
            return false;
          },
          onSummaryStored: () => undefined,
        };
        return { jobs, summarizer: fake as unknown as Summarizer };
      };
      const a = spy();
      const b = spy();
      const cached = rig(new SessionStore(), { defaultBudgetTokens: budget }, a.summarizer);
      const uncached = rig(new SessionStore(), { defaultBudgetTokens: budget, historyCache: false, personaCacheTtlMs: 0 }, b.summarizer);
      const s = randomUUID();
      // Long enough turns that the small budget drops the oldest ones after a few messages.
      const contents = Array.from({ length: 12 }, (_, i) => `question ${i}: ${'words about the subject '.repeat(8 + (i % 3) * 6)}`);
      for (const c of contents) {
        await cached.turn(s, c);
        await uncached.turn(s, c);
      }
      assert.equal(cached.requests.length, contents.length);
      for (let i = 0; i < contents.length; i++) {
        assert.deepEqual(cached.requests[i]!.history, uncached.requests[i]!.history, `the history of message ${i}`);
        assert.equal(cached.requests[i]!.summary, uncached.requests[i]!.summary);
      }
      // Positions differ between the two stores only by where they started: compare the shapes
      // (of the calls that can start something: with nothing outside, a call does nothing).
      const shape = (jobs: SummaryJob[], store: SessionStore) => jobs.filter((j) => j.outside > 0).map((j) => ({ foldIndex: store.messages.get(s)!.findIndex((x) => x.position === j.foldBefore), outside: j.outside }));
      assert.deepEqual(shape(a.jobs, cached.store), shape(b.jobs, uncached.store));
      if (budget < 3_000) assert.ok(a.jobs.some((j) => j.outside > 0), 'turns fell out of the window');
      assert.equal(uncached.windowReads, contents.length);
      assert.equal(uncached.personaReads, contents.length);
      assert.equal(cached.personaReads, 1, 'the persona is read once per RuntimeSession');
      if (budget === 3_000) assert.equal(cached.windowReads, 1, 'everything fits: the window is read once');
      else {
        // Once the budget drops turns the cache cannot place (positions unknown here) it reads again.
        assert.ok(cached.windowReads > 1 && cached.windowReads < contents.length, `window reads: ${cached.windowReads}`);
        assert.ok(uncached.requests.at(-1)!.history!.length < 2 * (contents.length - 1), 'the small budget did drop turns');
      }
    });
  }

  it('includes the previous reply even when the session service has not recorded it yet', async () => {
    const store = new SessionStore();
    const r = rig(store);
    const s = randomUUID();
    await r.turn(s, 'first');
    // The session service lags the log: it has not stored the first reply's final event yet.
    const reply = store.messages.get(s)![1]!;
    Object.assign(reply, { status: S.MESSAGE_STATUS_STREAMING, content: '' });
    await r.turn(s, 'second');
    assert.deepEqual(
      r.requests[1]!.history!.map((t) => t.content),
      ['first', 'answer to first (Be brief.)'],
    );
  });

  it('drops a persona on its change: the next message reads it and uses the new system prompt', async () => {
    const r = rig(new SessionStore(), { personaCacheTtlMs: 60_000 });
    const s = randomUUID();
    await r.turn(s, 'one');
    await r.turn(s, 'two');
    assert.equal(r.personaReads, 1);
    r.personas.set('persona', { systemPrompt: 'Be verbose.' });
    r.scheduler.personaChanged('some-other-persona');
    await r.turn(s, 'three');
    assert.equal(r.requests[2]!.systemPrompt, 'Be brief.', 'another persona’s event changes nothing');
    r.scheduler.personaChanged('persona');
    await r.turn(s, 'four');
    assert.equal(r.personaReads, 2);
    assert.equal(r.requests[3]!.systemPrompt, 'Be verbose.');
  });

  it('shares personas between the sessions of a replica (a new session of a known persona reads no persona)', async () => {
    const r = rig(new SessionStore(), { personaCacheTtlMs: 60_000 });
    for (let i = 0; i < 5; i++) await r.turn(randomUUID(), `hello ${i}`);
    assert.equal(r.personaReads, 1);
    assert.equal(r.windowReads, 5, 'a new session’s window is always read (its first message may be a redelivery)');
  });

  it('reads the persona again after its TTL even without an event', async () => {
    const r = rig(new SessionStore(), { personaCacheTtlMs: 30 });
    const s = randomUUID();
    await r.turn(s, 'one');
    r.personas.set('persona', { systemPrompt: 'New prompt.' });
    await new Promise((res) => setTimeout(res, 60));
    await r.turn(s, 'two');
    assert.equal(r.personaReads, 2);
    assert.equal(r.requests[1]!.systemPrompt, 'New prompt.');
  });

  it('after a rebalance reads the window again: a message another replica answered meanwhile is skipped, and its turn is in the next prompt', async () => {
    const store = new SessionStore();
    const r = rig(store);
    const s = randomUUID();
    await r.turn(s, 'one');
    // The partition went to another replica, which answered "two"; its offset commit was lost.
    const two = store.send(s, 'two');
    store.record([eventsV1.ReplyEvent.fromPartial({ sessionId: s, replyId: two.replyId, messageId: two.messageId, seq: 3, kind: { $case: 'completed', value: { content: 'answer two from elsewhere' } } })]);
    r.scheduler.ownershipChanged();
    const reads = r.windowReads;
    await r.scheduler.push(two);
    assert.equal(r.windowReads, reads + 1, 'read, not assumed new');
    assert.equal(r.requests.length, 1, 'not answered a second time');
    await r.turn(s, 'three');
    assert.deepEqual(
      r.requests[1]!.history!.map((t) => t.content),
      ['one', 'answer to one (Be brief.)', 'two', 'answer two from elsewhere'],
    );
  });

  it('reads for a message it has seen (delivered again after this replica forgot its reply) and skips it', async () => {
    const r = rig(new SessionStore(), { finalisedMemory: 1 });
    const s = randomUUID();
    const one = await r.turn(s, 'one');
    await r.turn(s, 'two'); // pushes "one" out of the finalised memory
    const reads = r.windowReads;
    await r.scheduler.push(one);
    assert.equal(r.windowReads, reads + 1);
    assert.equal(r.requests.length, 2, 'not answered again');
  });

  it('reads for a message older than the newest it knows (a copy sent again, e.g. by an outbox re-publish)', async () => {
    const store = new SessionStore();
    const r = rig(store);
    const s = randomUUID();
    const early = store.send(s, 'early'); // created first, delivered last
    await r.turn(s, 'late');
    const reads = r.windowReads;
    await r.scheduler.push(early);
    assert.equal(r.windowReads, reads + 1, 'read, not assumed new');
  });

  it('reads again after a summary of the session was stored', async () => {
    const store = new SessionStore();
    const summarizer = new Summarizer(
      {
        listMessagesAfter: async ({ sessionId, afterPosition, beforePosition }) =>
          sessionV1.ListMessagesAfterResponse.fromPartial({ messages: (store.messages.get(sessionId) ?? []).filter((x) => x.position > afterPosition && x.position < beforePosition), hasMore: false }),
        summarize: async () => ragV1.SummarizeResponse.fromPartial({ summary: 'they talked' }),
        updateSummary: async ({ sessionId, text, coveredUntil }) => {
          store.summary.set(sessionId, { text, coveredUntil, version: 1 });
          return sessionV1.UpdateSummaryResponse.fromPartial({ summary: { text, coveredUntil, version: 1 } });
        },
      },
      gptTokenizer,
      { thresholdMessages: 1_000, batchMessages: 100, batchTokens: 10_000, summaryMaxTokens: 100, retryAfterMs: 1_000 },
      logger,
    );
    const r = rig(store, {}, summarizer);
    const s = randomUUID();
    await r.turn(s, 'one');
    await r.turn(s, 'two');
    assert.equal(r.windowReads, 1);
    const foldBefore = store.messages.get(s)![2]!.position; // fold the first turn
    await summarizer.run({ ownerId: 'owner', sessionId: s, personaId: 'persona', summary: { text: '', coveredUntil: 0, version: 0 }, foldBefore, outside: 2 });
    await r.turn(s, 'three');
    assert.equal(r.windowReads, 2);
    assert.equal(r.requests[2]!.summary, 'they talked');
    assert.deepEqual(
      r.requests[2]!.history!.map((t) => t.content),
      ['two', 'answer to two (Be brief.)'],
    );
    await summarizer.stop();
  });

  it('keeps a failed reply out of the history and its user message in, as a read does', async () => {
    const cached = rig(new SessionStore(), { retry: { maxAttempts: 1, baseMs: 1, maxMs: 1 } });
    const uncached = rig(new SessionStore(), { retry: { maxAttempts: 1, baseMs: 1, maxMs: 1 }, historyCache: false });
    const s = randomUUID();
    for (const r of [cached, uncached]) {
      r.failing.add('two');
      for (const c of ['one', 'two', 'three']) await r.turn(s, c);
    }
    assert.deepEqual(
      cached.requests[2]!.history!.map((t) => t.content),
      ['one', 'answer to one (Be brief.)', 'two'],
    );
    assert.deepEqual(cached.requests[2]!.history, uncached.requests[2]!.history);
    assert.equal(cached.windowReads, 1);
  });

  describe('a session’s first message (first_in_session): the model is called before the read', () => {
    const gate = () => {
      let open!: () => void;
      let fail!: (err: Error) => void;
      const p = new Promise<void>((res, rej) => {
        open = res;
        fail = rej;
      });
      p.catch(() => undefined);
      return { p, open, fail };
    };
    const until = async (what: string, fn: () => boolean) => {
      for (let i = 0; i < 400 && !fn(); i++) await new Promise((r) => setTimeout(r, 5));
      assert.ok(fn(), `timed out waiting for ${what}`);
    };

    it('asks the model while the read is under way, and publishes nothing before the read confirms the reply is new', async () => {
      const store = new SessionStore();
      const r = rig(store);
      const s = randomUUID();
      const g = gate();
      r.windowGate = g.p;
      const m = store.send(s, 'hello');
      assert.equal(m.firstInSession, true);
      const done = r.scheduler.push(m);
      await until('the model call', () => r.requests.length === 1);
      await new Promise((res) => setTimeout(res, 30));
      assert.equal(r.published.length, 0, 'nothing published before the read');
      g.open();
      r.windowGate = undefined;
      await done;
      assert.deepEqual(r.published.map((e) => [Number(e.seq), e.kind?.$case]), [[1, 'delta'], [2, 'completed']]);
      // The read started the cache: the next message reads nothing.
      await r.turn(s, 'again');
      assert.equal(r.windowReads, 1);
      assert.deepEqual(r.requests[1]!.history!.map((t) => t.content), ['hello', 'answer to hello (Be brief.)']);
    });

    it('starts the read only after the model call (in one process the read would otherwise go first); other messages read first', async () => {
      const store = new SessionStore();
      const r = rig(store);
      const s = randomUUID();
      await r.turn(s, 'hello');
      assert.deepEqual(r.calls, ['generate', 'window']);
      // A session with history (not its first message) on a replica that does not know it: read, then call.
      const other = rig(store);
      await other.turn(s, 'again');
      assert.deepEqual(other.calls, ['window', 'generate']);
    });

    it('a first message delivered again whose reply is final: its early call publishes nothing and it is skipped', async () => {
      const store = new SessionStore();
      const first = rig(store);
      const s = randomUUID();
      const m = store.send(s, 'hello');
      await first.scheduler.push(m);
      // Another replica (no memory of it) gets the same message again.
      const other = rig(store);
      await other.scheduler.push(m);
      assert.equal(other.published.length, 0);
      assert.equal(store.messages.get(s)![1]!.content, 'answer to hello (Be brief.)');
    });

    it('a first message delivered again whose first run streamed (its replica died): no second text, reply_interrupted', async () => {
      const store = new SessionStore();
      const s = randomUUID();
      const m = store.send(s, 'hello');
      store.record([eventsV1.ReplyEvent.fromPartial({ sessionId: s, replyId: m.replyId, messageId: m.messageId, seq: 1, kind: { $case: 'delta', value: { text: 'half an ans' } } })]);
      const r = rig(store);
      const outcome = await r.scheduler.push(m).then(
        () => 'resolved',
        (err: Error & { reason?: string }) => err.reason,
      );
      assert.equal(outcome, 'reply_interrupted');
      assert.deepEqual(r.published.map((e) => [Number(e.seq), e.kind?.$case]), [[2, 'failed']], 'only the failure, after the stored seq');
    });

    it('a failed read falls back to the usual path (read again), not counted as an attempt', async () => {
      const store = new SessionStore();
      const r = rig(store, { retry: { maxAttempts: 1, baseMs: 1, maxMs: 1 } });
      const s = randomUUID();
      const g = gate();
      r.windowGate = g.p;
      const m = store.send(s, 'hello');
      const done = r.scheduler.push(m);
      await until('the model call', () => r.requests.length === 1);
      r.windowGate = undefined;
      g.fail(new Error('session service unavailable'));
      await done;
      assert.equal(r.windowReads, 2);
      assert.equal(r.requests.length, 2, 'the model again, after the read');
      assert.deepEqual(r.published.map((e) => e.kind?.$case), ['delta', 'completed']);
    });

    it('a model failure before the read confirms, on a reply that is final: no reply.failed is published', async () => {
      const store = new SessionStore();
      const s = randomUUID();
      const m = store.send(s, 'doomed');
      const elsewhere = rig(store);
      await elsewhere.scheduler.push(m); // answered once, by another replica
      const r = rig(store, { retry: { maxAttempts: 1, baseMs: 1, maxMs: 1 } });
      r.failing.add('doomed');
      const g = gate();
      r.windowGate = g.p;
      const done = r.scheduler.push(m).then(
        () => 'resolved',
        (err: Error) => err.name,
      );
      await until('the model call', () => r.requests.length === 1);
      g.open();
      r.windowGate = undefined;
      assert.equal(await done, 'resolved');
      assert.equal(r.published.length, 0);
    });
  });
});
