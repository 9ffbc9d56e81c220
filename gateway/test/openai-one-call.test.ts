import assert from 'node:assert/strict';
import OpenAI from 'openai';
import { eventsV1, sessionV1 } from '@chat/contracts';
import { encodeEvent, Topics } from '@chat/events';
import { AppError } from '@chat/errors';
import { ALICE_KEY, testServer } from './harness.js';

type Server = Awaited<ReturnType<typeof testServer>>;
type CreateReq = sessionV1.DeepPartial<sessionV1.CreateSessionRequest>;
type ReplyPart = { seq: number; kind: eventsV1.DeepPartial<eventsV1.ReplyEvent>['kind'] };

/**
 * /v1/chat/completions creates the session and sends the message in ONE session-service call
 * (CreateSession with first_message, docs/decisions/0021), so the gateway can only subscribe to the
 * reply once that call answers. These tests make the reply race the answer: every event of a reply
 * published before the subscription must still arrive, once, in order — from the hub's buffer or
 * from the durable reply-event store (ListReplyEvents) — streamed or not. Driven by the official
 * `openai` client; the session service is the in-memory fake.
 */
describe('gateway OpenAI-compatible API: one call to create and send', () => {
  let s: Server;
  let openai: OpenAI;
  let personaId = '';
  /** What the stand-in pipeline does around the create call (set per test). */
  let around: (req: CreateReq, res: sessionV1.CreateSessionResponse) => Promise<void>;
  /** The CreateSession requests the gateway made. */
  const creates: CreateReq[] = [];
  /** The reply events the durable store holds, by session. */
  const stored = new Map<string, eventsV1.ReplyEvent[]>();
  let originalCreate: (req: CreateReq) => Promise<sessionV1.CreateSessionResponse>;

  const event = (res: sessionV1.CreateSessionResponse, part: ReplyPart) =>
    eventsV1.ReplyEvent.fromPartial({ sessionId: res.session!.id, replyId: res.replyId, messageId: res.messageId, ownerId: res.session!.ownerId, seq: part.seq, kind: part.kind });
  const publish = (e: eventsV1.ReplyEvent) => s.bus.publish(Topics.replies, [{ key: e.sessionId, value: encodeEvent(eventsV1.ReplyEvent, e) }]);
  /** Publishes events and waits until this gateway's hub has them (the in-process bus delivers asynchronously). */
  const publishAndWait = async (events: eventsV1.ReplyEvent[]) => {
    for (const e of events) await publish(e);
    const session = events[0]!.sessionId;
    const last = events[events.length - 1]!.seq;
    for (let i = 0; i < 200 && !s.running.gateway.hub.replay(session, 0).frames.some((f) => f.seq === last); i++) await new Promise((r) => setTimeout(r, 5));
    assert.ok(s.running.gateway.hub.replay(session, 0).frames.some((f) => f.seq === last), 'the hub got the early events');
  };
  const reply = (text: string): ReplyPart[] => [
    { seq: 1, kind: { $case: 'delta', value: { text: 'Hello ' } } },
    { seq: 2, kind: { $case: 'delta', value: { text: `about ${text}` } } },
    { seq: 3, kind: { $case: 'completed', value: { content: `Hello about ${text}`, model: 'dev', citations: [{ sourceId: 'src-1', title: 'Guide', chunkId: 'c-1', score: 0.9 }] } } },
  ];
  const later = (fn: () => Promise<void>) => setTimeout(() => void fn(), 20);

  const streamText = async (content: string) => {
    const stream = await openai.chat.completions.create({ model: personaId, messages: [{ role: 'user', content }], stream: true });
    const chunks = [];
    for await (const c of stream) chunks.push(c);
    assert.equal(chunks.at(-1)!.choices[0]!.finish_reason, 'stop');
    return chunks.map((c) => c.choices[0]!.delta.content ?? '').join('');
  };
  const plainText = async (content: string) => {
    const res = await openai.chat.completions.create({ model: personaId, messages: [{ role: 'user', content }] });
    assert.deepEqual((res as unknown as { citations: Array<{ source_id: string }> }).citations.map((c) => c.source_id), ['src-1']);
    return res.choices[0]!.message.content;
  };

  before(async () => {
    s = await testServer({ heartbeatMs: 60_000 });
    originalCreate = s.sessions.createSession.bind(s.sessions);
    s.sessions.createSession = async (req: CreateReq) => {
      creates.push(req);
      const res = await originalCreate(req);
      await around(req, res);
      return res;
    };
    // The durable store (ListReplyEvents), as the session service serves it.
    s.deps.session.listReplyEvents = async (req: sessionV1.DeepPartial<sessionV1.ListReplyEventsRequest>) => {
      const events = (stored.get(req.sessionId ?? '') ?? []).filter((e) => e.seq > (req.afterSeq ?? 0));
      return { events, hasMore: false, oldestSeq: stored.get(req.sessionId ?? '')?.[0]?.seq ?? 0 };
    };
    openai = new OpenAI({ apiKey: ALICE_KEY, baseURL: `${s.running.url}/v1`, maxRetries: 0, timeout: 10_000 });
    personaId = (await s.deps.persona.createPersona({ ownerId: 'alice', name: 'Guide', systemPrompt: 'p' })).persona!.id;
  });
  after(async () => {
    await s.running.stop();
  });

  it('makes one CreateSession call carrying the last user message (no SendMessage)', async () => {
    around = async (req, res) => {
      later(async () => {
        for (const part of reply(req.firstMessage!.content!)) await publish(event(res, part));
      });
    };
    const sentBefore = s.sessions.sent.length;
    const createsBefore = creates.length;
    const res = await openai.chat.completions.create({
      model: personaId,
      messages: [
        { role: 'user', content: 'earlier' },
        { role: 'assistant', content: 'answer' },
        { role: 'user', content: 'the soup' },
      ],
    });
    assert.equal(res.choices[0]!.message.content, 'Hello about the soup');
    assert.equal(creates.length, createsBefore + 1);
    const req = creates.at(-1)!;
    assert.equal(req.firstMessage?.content, 'the soup');
    assert.equal(req.ephemeral, true);
    assert.deepEqual(req.history?.map((h) => h.content), ['earlier', 'answer']);
    // The fake stores the first message as SendMessage would: exactly one message was sent.
    assert.equal(s.sessions.sent.length, sentBefore + 1);
  });

  it('delivers a reply that completed before the create call answered (from the hub buffer), streamed and not', async () => {
    around = async (req, res) => publishAndWait(reply(req.firstMessage!.content!).map((p) => event(res, p)));
    assert.equal(await plainText('early plain'), 'Hello about early plain');
    assert.equal(await streamText('early stream'), 'Hello about early stream');
  });

  it('delivers a reply that started before the create call answered and goes on live, once and in order', async () => {
    around = async (req, res) => {
      const parts = reply(req.firstMessage!.content!);
      await publishAndWait([event(res, parts[0]!)]);
      later(async () => {
        for (const part of parts.slice(1)) await publish(event(res, part));
      });
    };
    assert.equal(await streamText('half early'), 'Hello about half early');
    assert.equal(await plainText('half early plain'), 'Hello about half early plain');
  });

  it('fills events this gateway never saw from the durable store when a later one reveals the gap', async () => {
    // seq 1 and 2 only reached the store (e.g. published before this gateway's consumer saw them); seq 3 arrives live.
    around = async (req, res) => {
      const events = reply(req.firstMessage!.content!).map((p) => event(res, p));
      stored.set(res.session!.id, events.slice(0, 2));
      later(async () => {
        stored.set(res.session!.id, events);
        await publish(events[2]!);
      });
    };
    assert.equal(await streamText('gap'), 'Hello about gap');
    assert.equal(await plainText('gap plain'), 'Hello about gap plain');
  });

  it('names a message the session service refuses as the client sent it (messages.<n>), not by the service’s own field names', async () => {
    const refused = async (fields: Record<string, string>, messages: OpenAI.Chat.ChatCompletionMessageParam[]) => {
      around = async () => {
        throw AppError.invalid('refused', fields);
      };
      const err = await openai.chat.completions.create({ model: personaId, messages }).then(
        () => assert.fail('the completion was accepted'),
        (e: unknown) => e as InstanceType<typeof OpenAI.APIError>,
      );
      assert.equal(err.status, 400);
      return err;
    };
    const nul = 'must not contain NUL (\u0000) characters';
    // The last message is the session's first message.
    const last = await refused({ 'first_message.content': nul }, [{ role: 'user', content: 'earlier' }, { role: 'assistant', content: 'answer' }, { role: 'user', content: 'now' }]);
    assert.equal(last.param, 'messages.2.content');
    assert.deepEqual((last.error as { details: unknown }).details, { fields: { 'messages.2.content': nul } });
    // History turn 1 is messages[2]: the empty messages[1] is not part of the history.
    const earlier = await refused({ 'history.1.content': nul }, [
      { role: 'user', content: 'first' },
      { role: 'assistant', content: '' },
      { role: 'user', content: 'second' },
      { role: 'user', content: 'now' },
    ]);
    assert.equal(earlier.param, 'messages.2.content');
  });

  it('falls back to SendMessage when the session service ignores first_message (older version during a rolling update)', async () => {
    const sentBefore = s.sessions.sent.length;
    const send = s.sessions.sendMessage.bind(s.sessions);
    s.sessions.createSession = async (req: CreateReq) => {
      creates.push(req);
      // An older session service: unknown field first_message is dropped, no ids come back.
      return originalCreate({ ...req, firstMessage: undefined });
    };
    s.sessions.sendMessage = async (req: sessionV1.DeepPartial<sessionV1.SendMessageRequest>) => {
      const res = await send(req);
      const created = sessionV1.CreateSessionResponse.fromPartial({ session: { id: req.sessionId!, ownerId: req.ownerId! }, ...res });
      later(async () => {
        for (const part of reply(req.content!)) await publish(event(created, part));
      });
      return res;
    };
    try {
      assert.equal(await streamText('old service'), 'Hello about old service');
      assert.equal(s.sessions.sent.length, sentBefore + 1);
      assert.equal(s.sessions.sent.at(-1)!.content, 'old service');
    } finally {
      s.sessions.sendMessage = send;
      s.sessions.createSession = originalCreate;
    }
  });
});
