import assert from 'node:assert/strict';
import { Code, ConnectError, createClient, type Client, type HandlerContext, type Transport } from '@connectrpc/connect';
import { createConnectTransport, createGrpcTransport, createGrpcWebTransport } from '@connectrpc/connect-node';
import { eventsV1 } from '@chat/contracts';
import { apiV1 } from '@chat/contracts/es';
import { encodeEvent, Topics } from '@chat/events';
import { chatService, MAX_QUEUED_FRAMES } from '../src/connect/service.js';
import { ALICE_KEY, BOB_KEY, testServer } from './harness.js';

type Server = Awaited<ReturnType<typeof testServer>>;

const PROTOCOLS: Array<{ name: string; transport: (baseUrl: string) => Transport }> = [
  { name: 'gRPC (HTTP/2 cleartext)', transport: (baseUrl) => createGrpcTransport({ baseUrl }) },
  { name: 'gRPC-Web (HTTP/1.1)', transport: (baseUrl) => createGrpcWebTransport({ baseUrl, httpVersion: '1.1' }) },
  { name: 'Connect JSON (HTTP/1.1)', transport: (baseUrl) => createConnectTransport({ baseUrl, httpVersion: '1.1', useBinaryFormat: false }) },
];

const auth = (key: string) => ({ headers: { authorization: `Bearer ${key}` } });

function publishReply(s: Server, e: eventsV1.DeepPartial<eventsV1.ReplyEvent>): Promise<void> {
  const event = eventsV1.ReplyEvent.fromPartial(e);
  return s.bus.publish(Topics.replies, [{ key: event.sessionId, value: encodeEvent(eventsV1.ReplyEvent, event) }]);
}

async function code(p: Promise<unknown>): Promise<Code> {
  try {
    await p;
  } catch (err) {
    return ConnectError.from(err).code;
  }
  throw new Error('the call did not fail');
}

describe('gateway Connect endpoint (chat.api.v1.ChatService)', () => {
  let s: Server;
  before(async () => {
    s = await testServer({ heartbeatMs: 60_000 });
  });
  after(async () => {
    await s.running.stop();
  });

  for (const { name, transport } of PROTOCOLS) {
    describe(`over ${name}`, () => {
      let client: Client<typeof apiV1.ChatService>;
      before(() => {
        client = createClient(apiV1.ChatService, transport(s.running.url));
      });

      it('answers UNAUTHENTICATED without or with a wrong API key', async () => {
        assert.equal(await code(client.listPersonas({})), Code.Unauthenticated);
        assert.equal(await code(client.listPersonas({}, auth('not-a-key-0123456789'))), Code.Unauthenticated);
      });

      it('creates and reads personas and sessions for the key’s owner only', async () => {
        const { persona } = await client.createPersona({ name: 'Ada', systemPrompt: 'You are Ada.', background: 'Ada likes tea.' }, auth(ALICE_KEY));
        assert.ok(persona?.id);
        assert.equal((await client.getPersona({ id: persona.id }, auth(ALICE_KEY))).persona?.name, 'Ada');
        assert.ok((await client.listPersonas({}, auth(ALICE_KEY))).personas.some((p) => p.id === persona.id));
        // Another owner's id is NOT_FOUND, never PERMISSION_DENIED.
        assert.equal(await code(client.getPersona({ id: persona.id }, auth(BOB_KEY))), Code.NotFound);
        assert.equal(await code(client.createSession({ personaId: persona.id }, auth(BOB_KEY))), Code.NotFound);
        const { session } = await client.createSession({ personaId: persona.id, title: 't' }, auth(ALICE_KEY));
        assert.equal(session?.personaId, persona.id);
        const got = await client.getSession({ id: session!.id }, auth(ALICE_KEY));
        assert.equal(got.session?.id, session!.id);
        assert.equal(await code(client.getSession({ id: session!.id }, auth(BOB_KEY))), Code.NotFound);
      });

      it('rejects bad input with INVALID_ARGUMENT', async () => {
        assert.equal(await code(client.listPersonas({ pageSize: 100_000 }, auth(ALICE_KEY))), Code.InvalidArgument);
        assert.equal(await code(client.createSession({ personaId: 'x', title: 'y'.repeat(501) }, auth(ALICE_KEY))), Code.InvalidArgument);
      });

      it('sends a message and streams its reply events, resuming from a seq without gap or duplicate', async () => {
        const { persona } = await client.createPersona({ name: 'Bo', systemPrompt: 'You are Bo.' }, auth(ALICE_KEY));
        const { session } = await client.createSession({ personaId: persona!.id }, auth(ALICE_KEY));
        const sessionId = session!.id;
        const sent = await client.sendMessage({ sessionId, content: 'hello' }, auth(ALICE_KEY));
        assert.ok(sent.replyId);
        assert.ok(s.sessions.sent.some((m) => m.sessionId === sessionId && m.content === 'hello'));

        const abort = new AbortController();
        // resume from 0: whether the events come before or after the stream is subscribed, all arrive once.
        const stream = client.streamReplies({ sessionId, resume: true, afterSeq: 0n }, { ...auth(ALICE_KEY), signal: abort.signal });
        const it = stream[Symbol.asyncIterator]();
        const first = it.next();
        for (let seq = 1; seq <= 3; seq++) {
          await publishReply(s, { sessionId, replyId: sent.replyId, ownerId: 'alice', seq, kind: { $case: 'delta', value: { text: `t${seq}` } } });
        }
        await publishReply(s, {
          sessionId,
          replyId: sent.replyId,
          ownerId: 'alice',
          seq: 4,
          kind: { $case: 'completed', value: { content: 't1t2t3', model: 'm', citations: [{ sourceId: 'src', title: 'T', chunkId: 'c', score: 0.5 }] } },
        });
        const got: apiV1.StreamRepliesResponse[] = [(await first).value];
        for (let i = 0; i < 3; i++) got.push((await it.next()).value);
        abort.abort();
        assert.deepEqual(got.map((g) => [Number(g.seq), g.kind.case]), [
          [1, 'delta'],
          [2, 'delta'],
          [3, 'delta'],
          [4, 'completed'],
        ]);
        const done = got[3]!.kind;
        assert.equal(done.case, 'completed');
        assert.equal(done.case === 'completed' && done.value.citations[0]?.sourceId, 'src');

        // Resume after seq 2: exactly 3 and 4, from the gateway's buffer.
        const again = new AbortController();
        const resumed: number[] = [];
        for await (const r of client.streamReplies({ sessionId, resume: true, afterSeq: 2n }, { ...auth(ALICE_KEY), signal: again.signal })) {
          resumed.push(Number(r.seq));
          if (resumed.length === 2) break;
        }
        again.abort();
        assert.deepEqual(resumed, [3, 4]);
      });

      it('refuses to stream another owner’s session', async () => {
        const { persona } = await client.createPersona({ name: 'Cy', systemPrompt: 'You are Cy.' }, auth(ALICE_KEY));
        const { session } = await client.createSession({ personaId: persona!.id }, auth(ALICE_KEY));
        const stream = client.streamReplies({ sessionId: session!.id }, auth(BOB_KEY));
        assert.equal(await code(stream[Symbol.asyncIterator]().next()), Code.NotFound);
      });
    });
  }

  it('ends a reply stream whose client lags too far behind with RESOURCE_EXHAUSTED slow_client', async () => {
    const persona = await s.deps.persona.createPersona({ ownerId: 'alice', name: 'Slow', systemPrompt: 'p' });
    const session = (await s.deps.session.createSession({ ownerId: 'alice', personaId: persona.persona!.id })).session!.id;
    const chat = chatService(s.deps, s.running.gateway.hub);
    const abort = new AbortController();
    const ctx = { requestHeader: new Headers({ authorization: `Bearer ${ALICE_KEY}` }), signal: abort.signal } as unknown as HandlerContext;
    const it = chat.impl.streamReplies!({ sessionId: session } as never, ctx) as AsyncGenerator<unknown>;
    // The first read subscribes; then the client stops reading while 1001 more events arrive.
    const first = it.next();
    await new Promise((r) => setTimeout(r, 20));
    for (let seq = 1; seq <= MAX_QUEUED_FRAMES + 2; seq++) {
      s.running.gateway.hub.publish(eventsV1.ReplyEvent.fromPartial({ sessionId: session, replyId: 'r', ownerId: 'alice', seq, kind: { $case: 'delta', value: { text: 'x' } } }));
    }
    let err: unknown;
    let read = 0;
    try {
      await first;
      read++;
      for (let i = 0; i < MAX_QUEUED_FRAMES + 5; i++) {
        if ((await it.next()).done) break;
        read++;
      }
    } catch (e) {
      err = e;
    }
    assert.ok(read <= MAX_QUEUED_FRAMES, `read ${read} frames`);
    abort.abort();
    assert.ok(err instanceof ConnectError, String(err));
    assert.equal(err.code, Code.ResourceExhausted);
    assert.equal(err.metadata.get('error-reason'), 'slow_client');
  });

  it('still serves REST and 404s on the same port', async () => {
    const res = await fetch(`${s.running.url}/healthz`);
    assert.equal(res.status, 200, await res.text());
    const missing = await fetch(`${s.running.url}/chat.api.v1.ChatService/NoSuchMethod`, { method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${ALICE_KEY}` }, body: '{}' });
    assert.equal(missing.status, 404);
  });
});
