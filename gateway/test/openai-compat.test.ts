import assert from 'node:assert/strict';
import OpenAI from 'openai';
import { eventsV1, type sessionV1 } from '@chat/contracts';
import { encodeEvent, Topics } from '@chat/events';
import { ALICE_KEY, BOB_KEY, testServer } from './harness.js';

type Server = Awaited<ReturnType<typeof testServer>>;

/**
 * The OpenAI-compatible endpoint, driven by the official `openai` client as a black box. The
 * services are in-memory fakes; a stand-in pipeline answers every sent message with reply events on
 * the bus (two deltas and a completion with a citation, or a failure), as the scheduler would.
 */
describe('gateway OpenAI-compatible API (/v1)', () => {
  let s: Server;
  let openai: OpenAI;
  let fail = false;
  let personaId = '';

  const publish = (e: eventsV1.DeepPartial<eventsV1.ReplyEvent>) => {
    const event = eventsV1.ReplyEvent.fromPartial(e);
    return s.bus.publish(Topics.replies, [{ key: event.sessionId, value: encodeEvent(eventsV1.ReplyEvent, event) }]);
  };

  before(async () => {
    s = await testServer({ heartbeatMs: 60_000 });
    const send = s.sessions.sendMessage.bind(s.sessions);
    s.sessions.sendMessage = async (req: sessionV1.DeepPartial<sessionV1.SendMessageRequest>) => {
      const res = await send(req);
      const base = { sessionId: req.sessionId!, replyId: res.replyId, messageId: res.messageId, ownerId: req.ownerId! };
      setTimeout(() => {
        void (async () => {
          if (fail) {
            await publish({ ...base, seq: 1, kind: { $case: 'failed', value: { code: 'unavailable', message: 'the model is down' } } });
            return;
          }
          await publish({ ...base, seq: 1, kind: { $case: 'delta', value: { text: 'Hello ' } } });
          await publish({ ...base, seq: 2, kind: { $case: 'delta', value: { text: `about ${req.content}` } } });
          await publish({
            ...base,
            seq: 3,
            kind: { $case: 'completed', value: { content: `Hello about ${req.content}`, model: 'dev', citations: [{ sourceId: 'src-1', title: 'Guide', chunkId: 'c-1', score: 0.9 }] } },
          });
        })();
      }, 5);
      return res;
    };
    openai = new OpenAI({ apiKey: ALICE_KEY, baseURL: `${s.running.url}/v1`, maxRetries: 0, timeout: 10_000 });
    const res = await fetch(`${s.running.url}/api/personas`, {
      method: 'POST',
      headers: { authorization: `Bearer ${ALICE_KEY}`, 'content-type': 'application/json' },
      body: JSON.stringify({ name: 'Velmora guide', system_prompt: 'You are a guide.' }),
    });
    personaId = ((await res.json()) as { id: string }).id;
  });
  after(async () => {
    await s.running.stop();
  });
  afterEach(() => {
    fail = false;
  });

  it('lists the caller’s personas as models', async () => {
    const models = [];
    for await (const m of openai.models.list()) models.push(m);
    const mine = models.find((m) => m.id === personaId);
    assert.ok(mine, JSON.stringify(models));
    assert.equal(mine.object, 'model');
    assert.equal((mine as unknown as { name: string }).name, 'Velmora guide');
    const bobs = new OpenAI({ apiKey: BOB_KEY, baseURL: `${s.running.url}/v1`, maxRetries: 0 });
    const others = [];
    for await (const m of bobs.models.list()) others.push(m.id);
    assert.ok(!others.includes(personaId), 'another owner’s persona is listed');
    assert.equal((await openai.models.retrieve(personaId)).id, personaId);
  });

  it('answers a non-streaming completion with the reply and its citations, in a new session seeded with the history', async () => {
    const before = s.sessions.sessions.size;
    const res = await openai.chat.completions.create({
      model: personaId,
      messages: [
        { role: 'system', content: 'Be brief.' },
        { role: 'user', content: 'Who keeps the lighthouse?' },
        { role: 'assistant', content: 'Captain Orla.' },
        { role: 'user', content: 'the soup' },
      ],
    });
    assert.equal(res.object, 'chat.completion');
    assert.equal(res.model, personaId);
    assert.equal(res.choices.length, 1);
    assert.equal(res.choices[0]!.message.role, 'assistant');
    assert.equal(res.choices[0]!.message.content, 'Hello about the soup');
    assert.equal(res.choices[0]!.finish_reason, 'stop');
    assert.match(res.id, /^chatcmpl-/);
    const extra = res as unknown as { citations: Array<{ source_id: string }>; session_id: string };
    assert.deepEqual(extra.citations.map((c) => c.source_id), ['src-1']);
    assert.equal(s.sessions.sessions.size, before + 1);
    assert.equal(s.sessions.sessions.get(extra.session_id)?.personaId, personaId);
    // The session is marked ephemeral: the session service sweeps it after OPENAI_SESSION_RETENTION_HOURS.
    assert.ok(s.sessions.ephemeral.has(extra.session_id));
    // Only the last user message is sent; the earlier ones seed the session.
    assert.equal(s.sessions.sent.at(-1)?.content, 'the soup');
  });

  it('streams chat.completion.chunk events ending with finish_reason stop', async () => {
    const stream = await openai.chat.completions.create({ model: 'Velmora guide', messages: [{ role: 'user', content: 'tides' }], stream: true });
    const chunks = [];
    for await (const c of stream) chunks.push(c);
    assert.ok(chunks.length >= 3);
    for (const c of chunks) {
      assert.equal(c.object, 'chat.completion.chunk');
      assert.equal(c.id, chunks[0]!.id);
      assert.equal(c.choices[0]!.index, 0);
    }
    assert.equal(chunks[0]!.choices[0]!.delta.role, 'assistant');
    assert.equal(chunks.map((c) => c.choices[0]!.delta.content ?? '').join(''), 'Hello about tides');
    assert.equal(chunks.at(-1)!.choices[0]!.finish_reason, 'stop');
    assert.ok(chunks.slice(0, -1).every((c) => c.choices[0]!.finish_reason === null));
  });

  it('answers 404 model_not_found for a model that names none of the caller’s personas', async () => {
    await assert.rejects(openai.chat.completions.create({ model: 'no-such-persona', messages: [{ role: 'user', content: 'hi' }] }), (err: unknown) => {
      assert.ok(err instanceof OpenAI.NotFoundError, String(err));
      assert.equal(err.status, 404);
      assert.equal(err.code, 'model_not_found');
      return true;
    });
    // Another owner's persona is unknown too.
    const bobs = new OpenAI({ apiKey: BOB_KEY, baseURL: `${s.running.url}/v1`, maxRetries: 0 });
    await assert.rejects(bobs.chat.completions.create({ model: 'Velmora guide', messages: [{ role: 'user', content: 'hi' }] }), OpenAI.NotFoundError);
    await assert.rejects(openai.models.retrieve('no-such-persona'), OpenAI.NotFoundError);
  });

  it('answers 400 in OpenAI’s error shape for bad input', async () => {
    const bad: Array<Record<string, unknown>> = [
      { model: personaId, messages: [] },
      { model: personaId, messages: [{ role: 'assistant', content: 'last is not a user message' }] },
      { model: personaId, messages: [{ role: 'user', content: 'hi' }], n: 2 },
      { model: personaId, messages: [{ role: 'tool', content: 'x' }] },
      { model: personaId, messages: [{ role: 'user', content: 'hi' }], no_such_field: true },
      { messages: [{ role: 'user', content: 'hi' }] },
    ];
    for (const body of bad) {
      await assert.rejects(openai.chat.completions.create(body as never), (err: unknown) => {
        assert.ok(err instanceof OpenAI.BadRequestError, `${JSON.stringify(body)}: ${String(err)}`);
        const e = (err as InstanceType<typeof OpenAI.BadRequestError>).error as { type: string; message: string; code: string };
        assert.equal(e.type, 'invalid_request_error');
        assert.equal(typeof e.message, 'string');
        assert.equal(typeof e.code, 'string');
        return true;
      });
    }
    // Not JSON at all.
    const res = await fetch(`${s.running.url}/v1/chat/completions`, { method: 'POST', headers: { authorization: `Bearer ${ALICE_KEY}`, 'content-type': 'application/json' }, body: '{' });
    assert.equal(res.status, 400);
    assert.equal(((await res.json()) as { error: { type: string } }).error.type, 'invalid_request_error');
  });

  it('answers 401 for a missing or wrong API key', async () => {
    const wrong = new OpenAI({ apiKey: 'wrong-key-0123456789', baseURL: `${s.running.url}/v1`, maxRetries: 0 });
    await assert.rejects(wrong.chat.completions.create({ model: personaId, messages: [{ role: 'user', content: 'hi' }] }), OpenAI.AuthenticationError);
    await assert.rejects(wrong.models.list(), OpenAI.AuthenticationError);
    const res = await fetch(`${s.running.url}/v1/models`);
    assert.equal(res.status, 401);
    const body = (await res.json()) as { error: { type: string; code: string } };
    assert.equal(body.error.type, 'authentication_error');
  });

  it('reports a failed reply as an API error, streamed or not', async () => {
    fail = true;
    await assert.rejects(openai.chat.completions.create({ model: personaId, messages: [{ role: 'user', content: 'hi' }] }), (err: unknown) => {
      assert.ok(err instanceof OpenAI.APIError, String(err));
      assert.equal(err.status, 503);
      return true;
    });
    const stream = await openai.chat.completions.create({ model: personaId, messages: [{ role: 'user', content: 'hi' }], stream: true });
    await assert.rejects(
      (async () => {
        for await (const c of stream) void c;
      })(),
      /the model is down/,
    );
  });
});
