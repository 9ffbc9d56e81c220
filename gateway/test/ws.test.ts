import assert from 'node:assert/strict';
import { eventsV1 } from '@chat/contracts';
import { encodeEvent, Topics } from '@chat/events';
import { WsTokens } from '../src/auth.js';
import { alice, ALICE_KEY, bob, captureLogs, connect, testServer, tick } from './harness.js';

type Server = Awaited<ReturnType<typeof testServer>>;

async function api(s: Server, method: string, path: string, headers: Record<string, string>, body?: unknown): Promise<any> {
  const res = await fetch(`${s.running.url}${path}`, {
    method,
    headers: { ...headers, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
    body: body !== undefined ? JSON.stringify(body) : undefined,
  });
  const json = await res.json();
  if (!res.ok) throw new Error(`${method} ${path}: ${res.status} ${JSON.stringify(json)}`);
  return json;
}

async function newSession(s: Server, headers = alice): Promise<string> {
  const p = await api(s, 'POST', '/api/personas', headers, { name: 'Ada', system_prompt: 'You are Ada.' });
  return (await api(s, 'POST', '/api/sessions', headers, { persona_id: p.id })).id;
}

async function token(s: Server, session: string, headers = alice): Promise<string> {
  return (await api(s, 'POST', `/api/sessions/${session}/ws_token`, headers)).ws_token;
}

function publishReply(s: Server, e: eventsV1.DeepPartial<eventsV1.ReplyEvent>): Promise<void> {
  const event = eventsV1.ReplyEvent.fromPartial(e);
  return s.bus.publish(Topics.replies, [{ key: event.sessionId, value: encodeEvent(eventsV1.ReplyEvent, event) }]);
}

describe('gateway WebSocket', () => {
  let s: Server;
  beforeEach(async () => {
    s = await testServer({ heartbeatMs: 60_000 });
  });
  afterEach(async () => {
    await s.running.stop();
  });

  describe('connecting', () => {
    it('refuses a connection without ws_token with 401 before upgrading', async () => {
      const session = await newSession(s);
      const r = await connect(`${s.wsUrl}/ws/sessions/${session}`);
      assert.equal(r.status, 401);
      assert.equal(JSON.parse(r.body!).error.code, 'unauthenticated');
    });

    it('refuses a forged ws_token with 401 before upgrading', async () => {
      const session = await newSession(s);
      const good = await token(s, session);
      const [payload] = good.split('.');
      const forged = new WsTokens('another-secret-another-secret-another').issue('alice', session).token;
      assert.equal((await connect(`${s.wsUrl}/ws/sessions/${session}?ws_token=${payload}.AAAA`)).status, 401);
      assert.equal((await connect(`${s.wsUrl}/ws/sessions/${session}?ws_token=${forged}`)).status, 401);
      assert.equal((await connect(`${s.wsUrl}/ws/sessions/${session}?ws_token=garbage`)).status, 401);
    });

    it('refuses an expired ws_token with 401 before upgrading', async () => {
      const session = await newSession(s);
      const t = await token(s, session);
      s.clock.t += 61_000;
      assert.equal((await connect(`${s.wsUrl}/ws/sessions/${session}?ws_token=${t}`)).status, 401);
    });

    it('refuses a reused ws_token with 401 before upgrading', async () => {
      const session = await newSession(s);
      const t = await token(s, session);
      const first = await connect(`${s.wsUrl}/ws/sessions/${session}?ws_token=${t}`);
      assert.ok(first.client, 'the first use connects');
      first.client.close();
      assert.equal((await connect(`${s.wsUrl}/ws/sessions/${session}?ws_token=${t}`)).status, 401);
    });

    it('refuses a ws_token of another session with 401 before upgrading', async () => {
      const mine = await newSession(s);
      const other = await newSession(s);
      const t = await token(s, mine);
      assert.equal((await connect(`${s.wsUrl}/ws/sessions/${other}?ws_token=${t}`)).status, 401);
    });

    it('answers 404 for another owner’s session when asking for a ws_token', async () => {
      const bobs = await newSession(s, bob);
      await assert.rejects(token(s, bobs, alice), /404/);
    });

    it('refuses an unknown WebSocket path with 404 before upgrading', async () => {
      assert.equal((await connect(`${s.wsUrl}/ws/nothing`)).status, 404);
    });

    it('connects with a fresh token and answers ping with pong', async () => {
      const session = await newSession(s);
      const { client } = await connect(`${s.wsUrl}/ws/sessions/${session}?ws_token=${await token(s, session)}`);
      assert.ok(client);
      client.send({ type: 'ping' });
      assert.deepEqual(await client.next(), { type: 'pong' });
      client.close();
    });
  });

  describe('frames', () => {
    async function open(session?: string) {
      const id = session ?? (await newSession(s));
      const { client } = await connect(`${s.wsUrl}/ws/sessions/${id}?ws_token=${await token(s, id)}`);
      assert.ok(client);
      return { client, session: id };
    }

    it('accepts a message frame and answers message.accepted with the ids and client_id', async () => {
      const { client, session } = await open();
      client.send({ type: 'message', content: 'Hello', client_id: 'c1' });
      const f = await client.next();
      assert.equal(f.type, 'message.accepted');
      assert.equal(f.client_id, 'c1');
      assert.equal(typeof f.message_id, 'string');
      assert.equal(typeof f.reply_id, 'string');
      assert.equal(s.sessions.sent[0]!.sessionId, session);
      assert.equal(s.sessions.sent[0]!.ownerId, 'alice');
      client.close();
    });

    it('answers malformed frames with error frames and keeps the socket open', async () => {
      const { client } = await open();
      client.send('{not json');
      assert.equal(((await client.next()) as any).error.code, 'invalid_argument');
      client.send({ type: 'dance' });
      assert.equal(((await client.next()) as any).error.code, 'invalid_argument');
      client.send({ type: 'message', content: '' });
      assert.ok(((await client.next()) as any).error.details.fields.content);
      client.send({ type: 'message', content: 'x', extra: 1 });
      assert.ok(((await client.next()) as any).error.details.fields.extra);
      client.send({ type: 'resume', last_seq: -1 });
      assert.ok(((await client.next()) as any).error.details.fields.last_seq);
      client.send({ type: 'ping' });
      assert.deepEqual(await client.next(), { type: 'pong' });
      client.close();
    });

    it('closes the socket with 1009 when a frame exceeds 64 KiB', async () => {
      const { client } = await open();
      client.send({ type: 'message', content: 'x'.repeat(70_000) });
      assert.equal((await client.closed).code, 1009);
    });

    it('forwards a cancel frame to the scheduler', async () => {
      const { client, session } = await open();
      client.send({ type: 'cancel', reply_id: 'rep_1' });
      for (let i = 0; i < 50 && s.scheduler.cancelled.length === 0; i++) await tick(10);
      assert.deepEqual(s.scheduler.cancelled, [{ ownerId: 'alice', sessionId: session, replyId: 'rep_1' }]);
      client.close();
    });

    it('delivers reply events from the bus as reply.delta and reply.completed frames', async () => {
      const { client, session } = await open();
      await publishReply(s, { sessionId: session, replyId: 'rep_1', ownerId: 'alice', seq: 1, kind: { $case: 'delta', value: { text: 'Hel' } } });
      await publishReply(s, {
        sessionId: session,
        replyId: 'rep_1',
        ownerId: 'alice',
        seq: 2,
        kind: { $case: 'completed', value: { content: 'Hello', model: 'dev', citations: [{ sourceId: 'src', title: 'Notes', url: '', chunkId: 'c1', score: 0.5 }] } },
      });
      assert.deepEqual(await client.next(), { type: 'reply.delta', reply_id: 'rep_1', seq: 1, text: 'Hel' });
      assert.deepEqual(await client.next(), {
        type: 'reply.completed',
        reply_id: 'rep_1',
        seq: 2,
        content: 'Hello',
        model: 'dev',
        citations: [{ source_id: 'src', title: 'Notes', chunk_id: 'c1', score: 0.5 }],
      });
      client.close();
    });

    it('delivers reply.failed frames with an error code and message', async () => {
      const { client, session } = await open();
      await publishReply(s, { sessionId: session, replyId: 'rep_2', ownerId: 'alice', seq: 1, kind: { $case: 'failed', value: { code: 'unavailable', message: 'model down' } } });
      assert.deepEqual(await client.next(), { type: 'reply.failed', reply_id: 'rep_2', seq: 1, error: { code: 'unavailable', message: 'model down' } });
      client.close();
    });

    it('sends a session’s reply events to every socket of that session and to no other session', async () => {
      const a1 = await open();
      const a2 = await open(a1.session);
      const other = await open();
      await publishReply(s, { sessionId: a1.session, replyId: 'r', ownerId: 'alice', seq: 1, kind: { $case: 'delta', value: { text: 'x' } } });
      assert.equal((await a1.client.next()).type, 'reply.delta');
      assert.equal((await a2.client.next()).type, 'reply.delta');
      await assert.rejects(other.client.next(undefined, 150), /no {2}frame/);
      for (const c of [a1, a2, other]) c.client.close();
    });

    it('replays buffered reply frames after last_seq on resume, in order and without duplicates', async () => {
      const { client, session } = await open();
      for (let seq = 1; seq <= 3; seq++) {
        await publishReply(s, { sessionId: session, replyId: 'r', ownerId: 'alice', seq, kind: { $case: 'delta', value: { text: `t${seq}` } } });
      }
      // A redelivered event is not sent twice.
      await publishReply(s, { sessionId: session, replyId: 'r', ownerId: 'alice', seq: 3, kind: { $case: 'delta', value: { text: 't3' } } });
      for (let seq = 1; seq <= 3; seq++) assert.equal((await client.next()).seq, seq);
      client.close();

      const again = await open(session);
      again.client.send({ type: 'resume', last_seq: 1 });
      assert.deepEqual(
        [await again.client.next(), await again.client.next()].map((f) => [f.type, f.seq, f.text]),
        [
          ['reply.delta', 2, 't2'],
          ['reply.delta', 3, 't3'],
        ],
      );
      await assert.rejects(again.client.next(undefined, 150));
      again.client.close();
    });

    it('reports a resume_gap error when the missed frames are no longer buffered', async () => {
      const { client, session } = await open();
      s.sessions.sessions.get(session)!.lastSeq = 5;
      client.send({ type: 'resume', last_seq: 2 });
      const f: any = await client.next('error');
      assert.equal(f.error.code, 'resume_gap');
      client.close();
    });

    it('closes open sockets with 1001 when the gateway stops', async () => {
      const { client } = await open();
      await s.running.stop();
      assert.equal((await client.closed).code, 1001);
    });

    it('terminates a socket that stops answering heartbeats', async () => {
      await s.running.stop();
      s = await testServer({ heartbeatMs: 50 });
      const { client } = await open();
      assert.equal(s.running.gateway.hub.size, 1);
      // Stop answering pings: the ws client answers automatically, so pause its socket.
      (client.ws as any)._socket.pause();
      for (let i = 0; i < 100 && s.running.gateway.hub.size > 0; i++) await tick(10);
      assert.equal(s.running.gateway.hub.size, 0, 'the silent socket was terminated');
      client.ws.terminate();
    });
  });

  describe('heartbeats', () => {
    it('keep a socket that answers pings open', async () => {
      await s.running.stop();
      s = await testServer({ heartbeatMs: 30 });
      const session = await newSession(s);
      const { client } = await connect(`${s.wsUrl}/ws/sessions/${session}?ws_token=${await token(s, session)}`);
      assert.ok(client);
      await tick(200);
      assert.equal(s.running.gateway.hub.size, 1);
      client.close();
    });
  });

  describe('logs', () => {
    it('never contain the API key or the ws_token', async () => {
      const logs = captureLogs();
      const session = await newSession(s);
      const t = await token(s, session);
      const { client } = await connect(`${s.wsUrl}/ws/sessions/${session}?ws_token=${t}`);
      assert.ok(client);
      client.send({ type: 'message', content: 'hi' });
      await client.next('message.accepted');
      client.close();
      assert.equal((await connect(`${s.wsUrl}/ws/sessions/${session}?ws_token=${t}`)).status, 401);
      await tick(50);
      logs.stop();
      const all = logs.lines.join('\n');
      assert.ok(logs.lines.length > 0);
      assert.ok(all.includes('/ws/sessions/:id'), 'upgrades are access-logged by route pattern');
      assert.ok(!all.includes(ALICE_KEY), 'API key leaked into logs');
      assert.ok(!all.includes(t), 'ws_token leaked into logs');
      assert.ok(!all.includes(t.split('.')[1]!), 'ws_token signature leaked into logs');
    });
  });
});
