import assert from 'node:assert/strict';
import { Code, ConnectError, createClient, type Client } from '@connectrpc/connect';
import { createConnectTransport } from '@connectrpc/connect-node';
import OpenAI from 'openai';
import { eventsV1, type sessionV1 } from '@chat/contracts';
import { apiV1 } from '@chat/contracts/es';
import { encodeEvent, Topics } from '@chat/events';
import { GatewayLimits } from '../src/limits.js';
import { ALICE_KEY, BOB_KEY, testServer } from './harness.js';

type Server = Awaited<ReturnType<typeof testServer>>;

const auth = (key: string) => ({ headers: { authorization: `Bearer ${key}` } });

async function connectError(p: Promise<unknown>): Promise<ConnectError> {
  try {
    await p;
  } catch (err) {
    return ConnectError.from(err);
  }
  throw new Error('the call did not fail');
}

/** A manual clock, so buckets refill only when a test says so. */
const clock = () => {
  let t = 1_000_000;
  return { now: () => t, advance: (ms: number) => (t += ms) };
};

/**
 * Limits hold on every entrance, not only REST and WebSocket: the Connect endpoint (per-key and
 * per-session buckets, the per-owner stream cap for StreamReplies) and streamed OpenAI-compatible
 * completions (one stream slot each). docs/decisions/0015, 0019.
 */
describe('gateway limits on Connect and the OpenAI-compatible endpoint', () => {
  describe('Connect (Connect-JSON over HTTP/1.1)', () => {
    let s: Server;
    let client: Client<typeof apiV1.ChatService>;
    const c = clock();
    beforeEach(async () => {
      s = await testServer({
        heartbeatMs: 60_000,
        limits: new GatewayLimits({ perKey: { perMinute: 60, burst: 4 }, perSession: { perMinute: 60, burst: 2 }, maxStreamsPerOwner: 1, now: c.now }),
      });
      client = createClient(apiV1.ChatService, createConnectTransport({ baseUrl: s.running.url, httpVersion: '1.1' }));
    });
    afterEach(async () => {
      await s.running.stop();
    });

    it('answers RESOURCE_EXHAUSTED rate_limited with retry-after once a key’s bucket is empty, per key', async () => {
      for (let i = 0; i < 4; i++) await client.listPersonas({}, auth(ALICE_KEY));
      const err = await connectError(client.listPersonas({}, auth(ALICE_KEY)));
      assert.equal(err.code, Code.ResourceExhausted);
      assert.equal(err.metadata.get('error-reason'), 'rate_limited');
      assert.equal(err.metadata.get('retry-after'), '1');
      // Another key has its own bucket; the first one refills with time.
      await client.listPersonas({}, auth(BOB_KEY));
      c.advance(1_000);
      await client.listPersonas({}, auth(ALICE_KEY));
    });

    it('limits SendMessage per session, not across sessions', async () => {
      const persona = (await s.deps.persona.createPersona({ ownerId: 'alice', name: 'P', systemPrompt: 'p' })).persona!.id;
      const one = (await s.deps.session.createSession({ ownerId: 'alice', personaId: persona })).session!.id;
      const two = (await s.deps.session.createSession({ ownerId: 'alice', personaId: persona })).session!.id;
      await client.sendMessage({ sessionId: one, content: 'a' }, auth(ALICE_KEY));
      await client.sendMessage({ sessionId: one, content: 'b' }, auth(ALICE_KEY));
      const err = await connectError(client.sendMessage({ sessionId: one, content: 'c' }, auth(ALICE_KEY)));
      assert.equal(err.code, Code.ResourceExhausted);
      assert.equal(err.metadata.get('error-reason'), 'rate_limited');
      // The refused message was not sent; the other session is not affected.
      assert.deepEqual(s.sessions.sent.filter((m) => m.sessionId === one).map((m) => m.content), ['a', 'b']);
      await client.sendMessage({ sessionId: two, content: 'd' }, auth(ALICE_KEY));
    });

    it('caps concurrent StreamReplies per owner with RESOURCE_EXHAUSTED too_many_streams and frees the slot when a stream ends', async () => {
      const persona = (await s.deps.persona.createPersona({ ownerId: 'alice', name: 'P', systemPrompt: 'p' })).persona!.id;
      const session = (await s.deps.session.createSession({ ownerId: 'alice', personaId: persona })).session!.id;
      const first = new AbortController();
      const open = client.streamReplies({ sessionId: session }, { ...auth(ALICE_KEY), signal: first.signal })[Symbol.asyncIterator]();
      const firstRead = open.next().catch(() => undefined);
      // Wait until the first stream holds its slot.
      for (let i = 0; i < 100 && s.deps.limits!.streams.count('alice') === 0; i++) await new Promise((r) => setTimeout(r, 10));
      assert.equal(s.deps.limits!.streams.count('alice'), 1);
      const err = await connectError(client.streamReplies({ sessionId: session }, auth(ALICE_KEY))[Symbol.asyncIterator]().next());
      assert.equal(err.code, Code.ResourceExhausted);
      assert.equal(err.metadata.get('error-reason'), 'too_many_streams');
      first.abort();
      await firstRead;
      for (let i = 0; i < 100 && s.deps.limits!.streams.count('alice') > 0; i++) await new Promise((r) => setTimeout(r, 10));
      assert.equal(s.deps.limits!.streams.count('alice'), 0, 'the slot is given back');
    });
  });

  describe('streamed /v1/chat/completions', () => {
    let s: Server;
    let personaId = '';
    /** Replies the stand-in pipeline holds back until a test releases them. */
    const held: Array<() => Promise<void>> = [];
    beforeEach(async () => {
      s = await testServer({ heartbeatMs: 60_000, limits: new GatewayLimits({ maxStreamsPerOwner: 1 }) });
      const send = s.sessions.sendMessage.bind(s.sessions);
      s.sessions.sendMessage = async (req: sessionV1.DeepPartial<sessionV1.SendMessageRequest>) => {
        const res = await send(req);
        const event = eventsV1.ReplyEvent.fromPartial({
          sessionId: req.sessionId!,
          replyId: res.replyId,
          messageId: res.messageId,
          ownerId: req.ownerId!,
          seq: 1,
          kind: { $case: 'completed', value: { content: 'done', model: 'dev', citations: [] } },
        });
        held.push(() => s.bus.publish(Topics.replies, [{ key: event.sessionId, value: encodeEvent(eventsV1.ReplyEvent, event) }]));
        return res;
      };
      personaId = (await s.deps.persona.createPersona({ ownerId: 'alice', name: 'Guide', systemPrompt: 'p' })).persona!.id;
    });
    afterEach(async () => {
      held.length = 0;
      await s.running.stop();
    });

    it('takes one stream slot per streamed completion: over the cap 429 too_many_streams (nothing created), free again when it ends', async () => {
      const openai = new OpenAI({ apiKey: ALICE_KEY, baseURL: `${s.running.url}/v1`, maxRetries: 0, timeout: 10_000 });
      const first = await openai.chat.completions.create({ model: personaId, messages: [{ role: 'user', content: 'one' }], stream: true });
      assert.equal(s.deps.limits!.streams.count('alice'), 1);
      const sessionsBefore = s.sessions.sessions.size;
      await assert.rejects(openai.chat.completions.create({ model: personaId, messages: [{ role: 'user', content: 'two' }], stream: true }), (err: unknown) => {
        assert.ok(err instanceof OpenAI.RateLimitError, String(err));
        assert.equal(err.status, 429);
        assert.equal(err.code, 'too_many_streams');
        assert.equal(err.headers?.get('retry-after'), '1');
        return true;
      });
      assert.equal(s.sessions.sessions.size, sessionsBefore, 'a refused completion creates no session');
      // A non-streamed completion takes no stream slot.
      const plain = openai.chat.completions.create({ model: personaId, messages: [{ role: 'user', content: 'three' }] });
      for (let i = 0; i < 100 && held.length < 2; i++) await new Promise((r) => setTimeout(r, 10));
      assert.equal(held.length, 2);
      for (const release of held.splice(0)) await release();
      assert.equal((await plain).choices[0]!.message.content, 'done');
      const chunks = [];
      for await (const chunk of first) chunks.push(chunk);
      assert.equal(chunks.at(-1)!.choices[0]!.finish_reason, 'stop');
      for (let i = 0; i < 100 && s.deps.limits!.streams.count('alice') > 0; i++) await new Promise((r) => setTimeout(r, 10));
      assert.equal(s.deps.limits!.streams.count('alice'), 0, 'the slot is given back when the stream ends');
      // And a client that goes away mid-stream gives it back too.
      const abort = new AbortController();
      const gone = await openai.chat.completions.create({ model: personaId, messages: [{ role: 'user', content: 'four' }], stream: true }, { signal: abort.signal });
      assert.equal(s.deps.limits!.streams.count('alice'), 1);
      abort.abort();
      await (async () => {
        for await (const _ of gone) void _;
      })().catch(() => undefined);
      for (let i = 0; i < 200 && s.deps.limits!.streams.count('alice') > 0; i++) await new Promise((r) => setTimeout(r, 10));
      assert.equal(s.deps.limits!.streams.count('alice'), 0, 'an abandoned stream gives its slot back');
    });
  });
});
