import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { SessionClient, type ServiceEndpoint } from '@chat/clients';
import { eventsV1, ragV1, sessionV1 } from '@chat/contracts';
import { connectDatabase, type Database, eventually, type IsolatedDatabase, Outbox, QueryTypes, testDatabase, testInfrastructure } from '@chat/db';
import { Code, isAppError, AppError } from '@chat/errors';
import { encodeEvent, InProcessBus, Topics } from '@chat/events';
import { closeClients } from '@chat/grpc';
import { configureLogger } from '@chat/logger';
import { Runtime, type ModuleDef } from '@chat/runtime';
import { SESSION_SCHEMA, SessionRepository, sessionModule } from '@chat/session-service';
import { gptTokenizer } from '../src/adapters/tokenizer.js';
import { Scheduler } from '../src/domain/scheduler.js';
import { Summarizer } from '../src/domain/summarizer.js';

const logger = configureLogger({ silent: true });
const S = sessionV1.MessageStatus;


describe('sessions on PostgreSQL: statuses, listing, deletion and infinite sessions', function () {
  this.timeout(180_000);
  let runtime: Runtime;
  let bus: InProcessBus;
  let db: Database;
  let repo: SessionRepository;
  let client: SessionClient;
  const owner = `owner-${randomUUID()}`;

  let testDb: IsolatedDatabase | undefined;
  before(async () => {
    testDb = await testDatabase('session_test', logger);
    const databaseUrl = testDb.url;
    bus = new InProcessBus();
    const modules: ModuleDef[] = [
      ...(testInfrastructure(databaseUrl, bus, logger) as ModuleDef[]),
      sessionModule as ModuleDef,
    ];
    // The persona service is not called by what these tests use.
    runtime = new Runtime(modules, ['session'], { logger, env: { PERSONA_GRPC_ADDR: '127.0.0.1:1' } });
    await runtime.start();
    client = new SessionClient(runtime.get<ServiceEndpoint>('session').address);
    db = await connectDatabase(databaseUrl, logger, 4);
    repo = new SessionRepository(db.sequelize, new Outbox(db.sequelize, SESSION_SCHEMA, bus, logger));
  });

  after(async () => {
    await runtime?.stop();
    closeClients();
    await db?.close();
    await testDb?.drop();
  });

  const publishReply = (e: eventsV1.DeepPartial<eventsV1.ReplyEvent>) =>
    bus.publish(Topics.replies, [{ key: e.sessionId!, value: encodeEvent(eventsV1.ReplyEvent, eventsV1.ReplyEvent.fromPartial(e)) }]);
  const statusOf = async (sessionId: string, id: string) => {
    const { messages } = await client.listMessages({ ownerId: owner, sessionId, limit: 200 });
    return messages.find((m) => m.id === id);
  };

  describe('message status', () => {
    it('creates the reply pending with the user message, streams on the first delta, and keeps the final status on redelivery', async () => {
      const s = await repo.createSession(owner, randomUUID(), 'status');
      const { messageId, replyId } = await client.sendMessage({ ownerId: owner, sessionId: s.id, content: 'hello' });
      const pending = await statusOf(s.id, replyId);
      assert.equal(pending?.status, S.MESSAGE_STATUS_PENDING);
      assert.equal(pending?.replyTo, messageId);
      assert.equal(pending?.role, sessionV1.Role.ROLE_ASSISTANT);
      const base = { sessionId: s.id, replyId, messageId, ownerId: owner };
      await publishReply({ ...base, seq: 1, kind: { $case: 'delta', value: { text: 'Hi' } } });
      await eventually(async () => (await statusOf(s.id, replyId))?.status === S.MESSAGE_STATUS_STREAMING, 'streaming');
      await publishReply({ ...base, seq: 2, kind: { $case: 'delta', value: { text: ' there' } } });
      await publishReply({ ...base, seq: 3, kind: { $case: 'completed', value: { content: 'Hi there', model: 'm', citations: [] } } });
      await eventually(async () => (await statusOf(s.id, replyId))?.status === S.MESSAGE_STATUS_COMPLETED, 'completed');
      // Redelivery of the stream (or a late failure) changes nothing once final.
      await publishReply({ ...base, seq: 2, kind: { $case: 'delta', value: { text: ' there' } } });
      await publishReply({ ...base, seq: 4, kind: { $case: 'failed', value: { code: 'internal', message: 'late' } } });
      await new Promise((r) => setTimeout(r, 200));
      const final = await statusOf(s.id, replyId);
      assert.equal(final?.status, S.MESSAGE_STATUS_COMPLETED);
      assert.equal(final?.content, 'Hi there');
      const { messages } = await client.listMessages({ ownerId: owner, sessionId: s.id });
      assert.equal(messages.length, 2, 'no duplicate rows');
    });

    it('records failed and cancelled replies', async () => {
      const s = await repo.createSession(owner, randomUUID(), 'fail');
      const a = await client.sendMessage({ ownerId: owner, sessionId: s.id, content: 'one' });
      const b = await client.sendMessage({ ownerId: owner, sessionId: s.id, content: 'two' });
      await publishReply({ sessionId: s.id, replyId: a.replyId, messageId: a.messageId, ownerId: owner, seq: 1, kind: { $case: 'failed', value: { code: 'llm_unavailable', message: 'down' } } });
      await publishReply({ sessionId: s.id, replyId: b.replyId, messageId: b.messageId, ownerId: owner, seq: 2, kind: { $case: 'failed', value: { code: 'cancelled', message: 'stop' } } });
      await eventually(async () => (await statusOf(s.id, b.replyId))?.status === S.MESSAGE_STATUS_CANCELLED, 'cancelled');
      assert.equal((await statusOf(s.id, a.replyId))?.status, S.MESSAGE_STATUS_FAILED);
    });

    it('answers a repeated Idempotency-Key with the same ids and creates nothing', async () => {
      const s = await repo.createSession(owner, randomUUID(), 'idem');
      const first = await client.sendMessage({ ownerId: owner, sessionId: s.id, content: 'once', idempotencyKey: 'k1' });
      const again = await client.sendMessage({ ownerId: owner, sessionId: s.id, content: 'once', idempotencyKey: 'k1' });
      assert.deepEqual(again, first);
      const { messages } = await client.listMessages({ ownerId: owner, sessionId: s.id });
      assert.equal(messages.length, 2);
    });
  });

  describe('listing and deletion', () => {
    it('lists a persona’s sessions newest first in pages, only the owner’s', async () => {
      const persona = randomUUID();
      const ids: string[] = [];
      for (let i = 0; i < 5; i++) ids.push((await repo.createSession(owner, persona, `s${i}`)).id);
      await repo.createSession('someone-else', persona, 'foreign');
      await repo.createSession(owner, randomUUID(), 'other persona');
      const seen: string[] = [];
      let token = '';
      for (let i = 0; i < 5; i++) {
        const page = await client.listSessions({ ownerId: owner, personaId: persona, limit: 2, pageToken: token });
        seen.push(...page.sessions.map((x) => x.id));
        token = page.nextPageToken;
        if (!token) break;
      }
      assert.deepEqual(seen, [...ids].reverse());
      await assert.rejects(client.listSessions({ ownerId: owner, pageToken: 'garbage' }), (e: unknown) => isAppError(e) && e.code === Code.InvalidArgument);
      assert.deepEqual((await client.listSessions({ ownerId: owner, personaId: 'not-a-uuid' })).sessions, []);
    });

    it('deletes a session with its messages and summary; foreign and unknown ids are NOT_FOUND', async () => {
      const s = await repo.createSession(owner, randomUUID(), 'doomed');
      await client.sendMessage({ ownerId: owner, sessionId: s.id, content: 'bye' });
      await repo.updateSummary(s.id, 'a summary', 1, 0);
      await assert.rejects(client.deleteSession({ ownerId: 'someone-else', id: s.id }), (e: unknown) => isAppError(e) && e.code === Code.NotFound);
      await client.deleteSession({ ownerId: owner, id: s.id });
      await assert.rejects(client.getSession({ ownerId: owner, id: s.id }), (e: unknown) => isAppError(e) && e.code === Code.NotFound);
      await assert.rejects(client.deleteSession({ ownerId: owner, id: s.id }), (e: unknown) => isAppError(e) && e.code === Code.NotFound);
      const left = await db.sequelize.query<{ n: number }>(
        'select (select count(*) from session.messages where session_id = :id)::int + (select count(*) from session.summaries where session_id = :id)::int as n',
        { replacements: { id: s.id }, type: QueryTypes.SELECT },
      );
      assert.equal(left[0]!.n, 0);
    });

    it('deletes a persona’s sessions when the persona is deleted, idempotently', async () => {
      const persona = randomUUID();
      const a = await repo.createSession(owner, persona, 'a');
      await client.sendMessage({ ownerId: owner, sessionId: a.id, content: 'hi' });
      const keep = await repo.createSession(owner, randomUUID(), 'keep');
      const event = eventsV1.PersonaEvent.fromPartial({ personaId: persona, ownerId: owner, kind: { $case: 'deleted', value: {} } });
      for (let i = 0; i < 2; i++) await bus.publish(Topics.personaEvents, [{ key: persona, value: encodeEvent(eventsV1.PersonaEvent, event) }]);
      await eventually(async () => (await client.listSessions({ ownerId: owner, personaId: persona })).sessions.length === 0, 'sessions of the persona deleted');
      assert.ok(await repo.getSession(owner, keep.id));
      const msgs = await db.sequelize.query('select 1 from session.messages where session_id = :id', { replacements: { id: a.id }, type: QueryTypes.SELECT });
      assert.equal(msgs.length, 0);
    });
  });

  describe('a 2,000-turn session', () => {
    const TURNS = 2_000;
    let sessionId: string;
    let personaId: string;
    const generated: ragV1.GenerateRequest[] = [];
    let summarizeImpl: (req: ragV1.SummarizeRequest) => Promise<string>;
    const summarizeCalls: ragV1.SummarizeRequest[] = [];
    let summarizer: Summarizer;
    let scheduler: Scheduler;
    const budget = 3_000;

    const countMessages = async () =>
      (await db.sequelize.query<{ n: number }>('select count(*)::int as n from session.messages where session_id = :id', { replacements: { id: sessionId }, type: QueryTypes.SELECT }))[0]!.n;

    before(async () => {
      personaId = randomUUID();
      sessionId = (await repo.createSession(owner, personaId, 'long')).id;
      const turns = Array.from({ length: TURNS }, (_, i) => ({
        role: (i % 2 === 0 ? 'user' : 'assistant') as 'user' | 'assistant',
        content: i % 2 === 0 ? `Turn ${i}: tell me about boat number ${i} in the harbour of Velmora.` : `Turn ${i}: boat number ${i - 1} is painted blue and sails at dawn.`,
      }));
      await repo.appendTurns(sessionId, turns);
      summarizeImpl = async (req) => `${req.previousSummary ? `${req.previousSummary} ` : ''}[folded ${req.turns.length} turns up to "${req.turns.at(-1)!.content.slice(0, 12)}"]`;
      summarizer = new Summarizer(
        {
          listMessagesAfter: (req) => client.listMessagesAfter(req),
          summarize: async (req) => {
            const full = ragV1.SummarizeRequest.fromPartial(req);
            summarizeCalls.push(full);
            return { summary: await summarizeImpl(full), model: 'test' };
          },
          updateSummary: (req) => client.updateSummary(req),
        },
        gptTokenizer,
        { thresholdMessages: 20, batchMessages: 500, batchTokens: 20_000, summaryMaxTokens: 256, retryAfterMs: 0 },
        logger,
      );
      scheduler = new Scheduler(
        {
          getPersona: async () => ({ persona: { id: personaId, ownerId: owner, name: 'Guide', systemPrompt: 'You are a guide to Velmora.', background: '', settings: { historyBudgetTokens: budget } } as never }),
          getConversationWindow: (req) => client.getConversationWindow(req),
          generate: (req) => {
            generated.push(ragV1.GenerateRequest.fromPartial(req));
            return (async function* () {
              yield { item: { $case: 'delta' as const, value: { text: 'ok' } } };
              yield { item: { $case: 'completed' as const, value: { content: 'ok', citations: [], model: 'm' } } };
            })();
          },
          publish: async (sid, events) => {
            for (const e of events) {
              if (e.kind?.$case === 'completed') await repo.recordReply({ sessionId: sid, replyId: e.replyId, messageId: e.messageId, seq: e.seq, status: 'completed', content: e.kind.value.content, citations: [], model: 'm', error: '' });
            }
          },
        },
        { replyTimeoutMs: 10_000, idleEvictMs: 60_000, windowMaxMessages: 200, defaultBudgetTokens: 3_000, knowledgeReserveTokens: 1_000 },
        logger,
        gptTokenizer,
        summarizer,
      );
    });

    after(() => scheduler?.stop());

    /** send stores a user message through the service and runs it through the scheduler. */
    const send = async (content: string) => {
      const { messageId, replyId } = await client.sendMessage({ ownerId: owner, sessionId, content });
      await scheduler.push(eventsV1.MessageCreated.fromPartial({ messageId, replyId, sessionId, ownerId: owner, personaId, content }));
      return { messageId, replyId };
    };

    it('reads a bounded window: never more than max_messages, with the count of older uncovered turns', async () => {
      const w = await client.getConversationWindow({ ownerId: owner, sessionId, maxMessages: 200 });
      assert.equal(w.messages.length, 200);
      assert.equal(w.olderUncovered, TURNS - 200);
      assert.equal(w.summary?.version, 0);
      assert.ok(w.messages.every((m, i) => i === 0 || m.position > w.messages[i - 1]!.position), 'oldest first');
    });

    it('fails a summarisation without losing history or the previous summary', async () => {
      summarizeImpl = async () => {
        throw AppError.unavailable('the language model failed');
      };
      await send('What about boat 1999?');
      await summarizer.idle(sessionId);
      assert.equal(summarizeCalls.length, 1, 'summarisation was attempted');
      assert.equal(await countMessages(), TURNS + 2);
      const w = await client.getConversationWindow({ ownerId: owner, sessionId, maxMessages: 1 });
      assert.equal(w.summary?.version, 0);
      assert.equal(w.summary?.text, '');
    });

    it('sends a prompt within budget with the latest turns, and folds older turns into the summary off the reply path', async () => {
      summarizeImpl = async (req) => `${req.previousSummary ? `${req.previousSummary} ` : ''}[folded ${req.turns.length} turns up to "${req.turns.at(-1)!.content.slice(0, 12)}"]`;
      generated.length = 0;
      const { messageId } = await send('And boat 2000?');
      const req = generated[0]!;
      assert.equal(req.summary, '', 'no summary yet on this reply: summarisation runs after it');
      assert.ok(req.history.length > 10 && req.history.length < 200, `history of ${req.history.length} turns`);
      assert.equal(req.history.at(-1)!.content, 'ok', 'the latest turn (the previous reply) is there verbatim');
      const tokens = gptTokenizer.count(req.systemPrompt) + gptTokenizer.count(req.userMessage) + req.history.reduce((n, t) => n + gptTokenizer.count(t.content) + 4, 0);
      assert.ok(tokens + 1_000 <= budget, `prompt of ${tokens} tokens + reserve exceeds ${budget}`);

      await summarizer.idle(sessionId);
      const w = await client.getConversationWindow({ ownerId: owner, sessionId, maxMessages: 200, beforeMessageId: messageId });
      // Folded in batches of at most 500 messages: one version per batch.
      assert.equal(w.summary?.version, summarizeCalls.length - 1);
      assert.ok(summarizeCalls.slice(1).every((c) => c.turns.length <= 500));
      assert.match(w.summary!.text, /folded \d+ turns/);
      // Everything before the quoted turns is covered; the quoted turns are not.
      const all = await client.listMessagesAfter({ ownerId: owner, sessionId, afterPosition: 0, limit: 1_000 });
      assert.ok(w.summary!.coveredUntil >= all.messages[0]!.position);
      assert.equal(await countMessages(), TURNS + 4, 'summarisation deletes nothing');

      // The next reply carries the summary and still fits.
      generated.length = 0;
      await send('Anything else?');
      const next = generated[0]!;
      assert.equal(next.summary, w.summary!.text);
      const t2 = gptTokenizer.count(next.systemPrompt) + gptTokenizer.count(next.userMessage) + gptTokenizer.count(next.summary) + 30 + next.history.reduce((n, t) => n + gptTokenizer.count(t.content) + 4, 0);
      assert.ok(t2 + 1_000 <= budget, `prompt of ${t2} tokens + reserve exceeds ${budget}`);
      assert.ok(next.history.length > 0);
    });

    it('is incremental: a later run folds only turns after covered_until', async () => {
      const before = await client.getConversationWindow({ ownerId: owner, sessionId, maxMessages: 1 });
      const covered = before.summary!.coveredUntil;
      const calls = summarizeCalls.length;
      // Enough new turns to push more past the window edge.
      await repo.appendTurns(sessionId, Array.from({ length: 60 }, (_, i) => ({ role: (i % 2 ? 'assistant' : 'user') as 'user' | 'assistant', content: `Later turn ${i} about the lighthouse keeper and the tides.` })));
      await send('Summarise the tides for me.');
      await summarizer.idle(sessionId);
      assert.ok(summarizeCalls.length > calls, 'a new summarisation ran');
      const fresh = summarizeCalls.slice(calls);
      assert.equal(fresh[0]!.previousSummary, before.summary!.text, 'it builds on the previous summary');
      const folded = await client.listMessagesAfter({ ownerId: owner, sessionId, afterPosition: 0, beforePosition: covered + 1, limit: 1_000 });
      const oldContents = new Set(folded.messages.map((m) => m.content));
      for (const c of fresh) for (const t of c.turns) assert.ok(!oldContents.has(t.content) || t.content === 'ok', `re-folded an old turn: ${t.content}`);
      const after = await client.getConversationWindow({ ownerId: owner, sessionId, maxMessages: 1 });
      assert.ok(after.summary!.coveredUntil > covered);
      assert.equal(after.summary!.version, before.summary!.version + fresh.length);
    });

    it('does not let concurrent summary updates clobber each other (optimistic version)', async () => {
      const w = await client.getConversationWindow({ ownerId: owner, sessionId, maxMessages: 1 });
      const v = w.summary!.version;
      const covered = w.summary!.coveredUntil;
      const results = await Promise.allSettled([
        client.updateSummary({ ownerId: owner, sessionId, text: 'writer A', coveredUntil: covered + 1, expectedVersion: v }),
        client.updateSummary({ ownerId: owner, sessionId, text: 'writer B', coveredUntil: covered + 1, expectedVersion: v }),
      ]);
      const ok = results.filter((r) => r.status === 'fulfilled');
      const lost = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected');
      assert.equal(ok.length, 1);
      assert.equal(lost.length, 1);
      assert.ok(isAppError(lost[0]!.reason) && lost[0]!.reason.code === Code.Aborted && lost[0]!.reason.reason === 'version_conflict');
      const now = await client.getConversationWindow({ ownerId: owner, sessionId, maxMessages: 1 });
      assert.equal(now.summary!.version, v + 1);
      assert.ok(['writer A', 'writer B'].includes(now.summary!.text));
      // covered_until never moves backwards.
      await assert.rejects(client.updateSummary({ ownerId: owner, sessionId, text: 'stale', coveredUntil: 1, expectedVersion: v + 1 }), (e: unknown) => isAppError(e) && e.code === Code.Aborted);
    });

    it('skips a redelivered message whose reply is final, and answers one whose reply is only pending', async () => {
      const { messageId, replyId } = await send('One more question');
      generated.length = 0;
      await scheduler.push(eventsV1.MessageCreated.fromPartial({ messageId, replyId, sessionId, ownerId: owner, personaId, content: 'One more question' }));
      assert.equal(generated.length, 0, 'a final reply is not generated again');
      const fresh = await client.sendMessage({ ownerId: owner, sessionId, content: 'pending one' });
      assert.equal((await statusOf(sessionId, fresh.replyId))?.status, S.MESSAGE_STATUS_PENDING);
      await scheduler.push(eventsV1.MessageCreated.fromPartial({ ...fresh, sessionId, ownerId: owner, personaId, content: 'pending one' }));
      assert.equal(generated.length, 1, 'a pending reply is generated');
    });
  });
});
