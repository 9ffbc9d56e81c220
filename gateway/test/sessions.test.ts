import assert from 'node:assert/strict';
import type { LightMyRequestResponse } from 'fastify';
import { sessionV1 } from '@chat/contracts';
import { alice, bob, testApp } from './harness.js';

type App = ReturnType<typeof testApp>;
const json = (res: LightMyRequestResponse): any => JSON.parse(res.body);

function assertError(res: LightMyRequestResponse, status: number, code: string): any {
  assert.equal(res.statusCode, status, res.body);
  const body = json(res);
  assert.deepEqual(Object.keys(body), ['error']);
  assert.equal(body.error.code, code);
  return body.error;
}

async function persona(t: App, headers = alice): Promise<string> {
  const res = await t.gateway.app.inject({ method: 'POST', url: '/api/personas', headers, payload: { name: 'Ada', system_prompt: 'You are Ada.' } });
  assert.equal(res.statusCode, 201, res.body);
  return json(res).id;
}

async function session(t: App, personaId: string, headers = alice, title = 'chat'): Promise<string> {
  const res = await t.gateway.app.inject({ method: 'POST', url: '/api/sessions', headers, payload: { persona_id: personaId, title } });
  assert.equal(res.statusCode, 201, res.body);
  return json(res).id;
}

describe('gateway: session listing, deletion and message status', () => {
  let t: App;
  beforeEach(() => {
    t = testApp();
  });
  afterEach(async () => {
    await t.gateway.app.close();
  });

  describe('GET /api/sessions', () => {
    it('lists a persona’s sessions newest first in pages with next_page_token', async () => {
      const p = await persona(t);
      const other = await persona(t);
      const ids = [await session(t, p, alice, 'a'), await session(t, p, alice, 'b'), await session(t, p, alice, 'c')];
      await session(t, other);
      const first = await t.gateway.app.inject({ method: 'GET', url: `/api/sessions?persona_id=${p}&limit=2`, headers: alice });
      assert.equal(first.statusCode, 200, first.body);
      const b1 = json(first);
      assert.deepEqual(b1.sessions.map((s: { id: string }) => s.id), [ids[2], ids[1]]);
      assert.deepEqual(Object.keys(b1.sessions[0]).sort(), ['created_at', 'id', 'persona_id', 'title']);
      assert.equal(typeof b1.next_page_token, 'string');
      const second = json(await t.gateway.app.inject({ method: 'GET', url: `/api/sessions?persona_id=${p}&limit=2&page_token=${b1.next_page_token}`, headers: alice }));
      assert.deepEqual(second.sessions.map((s: { id: string }) => s.id), [ids[0]]);
      assert.equal(second.next_page_token, null);
    });

    it('lists all of the caller’s sessions without persona_id, and never another owner’s', async () => {
      const p = await persona(t);
      await session(t, p);
      const bp = await persona(t, bob);
      await session(t, bp, bob);
      const res = json(await t.gateway.app.inject({ method: 'GET', url: '/api/sessions', headers: alice }));
      assert.equal(res.sessions.length, 1);
      assert.equal(res.sessions[0].persona_id, p);
    });

    it('answers 404 for an unknown or another owner’s persona_id', async () => {
      const bp = await persona(t, bob);
      assertError(await t.gateway.app.inject({ method: 'GET', url: `/api/sessions?persona_id=${bp}`, headers: alice }), 404, 'not_found');
      assertError(await t.gateway.app.inject({ method: 'GET', url: '/api/sessions?persona_id=nope', headers: alice }), 404, 'not_found');
    });

    it('rejects a bad limit, an empty page_token, unknown query parameters and a bad page_token with 400', async () => {
      for (const q of ['limit=0', 'limit=101', 'limit=abc', 'limit=-1', 'page_token=', 'sort=asc', `persona_id=${'x'.repeat(101)}`]) {
        assertError(await t.gateway.app.inject({ method: 'GET', url: `/api/sessions?${q}`, headers: alice }), 400, 'invalid_argument');
      }
      assertError(await t.gateway.app.inject({ method: 'GET', url: '/api/sessions?page_token=zz', headers: alice }), 400, 'invalid_argument');
    });

    it('requires an API key', async () => {
      assertError(await t.gateway.app.inject({ method: 'GET', url: '/api/sessions' }), 401, 'unauthenticated');
    });
  });

  describe('DELETE /api/sessions/{id}', () => {
    it('deletes a session with 204 and no body; then it is gone', async () => {
      const s = await session(t, await persona(t));
      await t.gateway.app.inject({ method: 'POST', url: `/api/sessions/${s}/messages`, headers: alice, payload: { content: 'hi' } });
      const res = await t.gateway.app.inject({ method: 'DELETE', url: `/api/sessions/${s}`, headers: alice });
      assert.equal(res.statusCode, 204, res.body);
      assert.equal(res.body, '');
      assertError(await t.gateway.app.inject({ method: 'GET', url: `/api/sessions/${s}`, headers: alice }), 404, 'not_found');
      assertError(await t.gateway.app.inject({ method: 'GET', url: `/api/sessions/${s}/messages`, headers: alice }), 404, 'not_found');
      assertError(await t.gateway.app.inject({ method: 'DELETE', url: `/api/sessions/${s}`, headers: alice }), 404, 'not_found');
    });

    it('answers 404 for another owner’s session and leaves it alone', async () => {
      const s = await session(t, await persona(t));
      assertError(await t.gateway.app.inject({ method: 'DELETE', url: `/api/sessions/${s}`, headers: bob }), 404, 'not_found');
      assert.equal((await t.gateway.app.inject({ method: 'GET', url: `/api/sessions/${s}`, headers: alice })).statusCode, 200);
    });

    it('answers 404 for an unknown id, 400 for an over-long id and 401 without a key', async () => {
      assertError(await t.gateway.app.inject({ method: 'DELETE', url: '/api/sessions/unknown', headers: alice }), 404, 'not_found');
      assertError(await t.gateway.app.inject({ method: 'DELETE', url: `/api/sessions/${'x'.repeat(101)}`, headers: alice }), 400, 'invalid_argument');
      assertError(await t.gateway.app.inject({ method: 'DELETE', url: '/api/sessions/x' }), 401, 'unauthenticated');
    });
  });

  describe('message status and idempotent sends', () => {
    it('shows every message status in the message JSON', async () => {
      const s = await session(t, await persona(t));
      const statuses: Array<[sessionV1.MessageStatus, string]> = [
        [sessionV1.MessageStatus.MESSAGE_STATUS_PENDING, 'pending'],
        [sessionV1.MessageStatus.MESSAGE_STATUS_STREAMING, 'streaming'],
        [sessionV1.MessageStatus.MESSAGE_STATUS_COMPLETED, 'completed'],
        [sessionV1.MessageStatus.MESSAGE_STATUS_FAILED, 'failed'],
        [sessionV1.MessageStatus.MESSAGE_STATUS_CANCELLED, 'cancelled'],
      ];
      t.sessions.messages.set(
        s,
        statuses.map(([status], i) => sessionV1.Message.fromPartial({ id: `r${i}`, sessionId: s, role: sessionV1.Role.ROLE_ASSISTANT, status, replyTo: 'm0', createdAt: new Date() })),
      );
      const view = json(await t.gateway.app.inject({ method: 'GET', url: `/api/sessions/${s}`, headers: alice }));
      assert.deepEqual(view.messages.map((m: { status: string }) => m.status), statuses.map(([, name]) => name));
      const page = json(await t.gateway.app.inject({ method: 'GET', url: `/api/sessions/${s}/messages`, headers: alice }));
      assert.deepEqual(page.messages.map((m: { status: string }) => m.status), statuses.map(([, name]) => name));
      assert.equal(page.messages[0].reply_to, 'm0');
    });

    it('answers a repeated Idempotency-Key with the same ids and stores one message', async () => {
      const s = await session(t, await persona(t));
      const send = () => t.gateway.app.inject({ method: 'POST', url: `/api/sessions/${s}/messages`, headers: { ...alice, 'idempotency-key': 'key-1' }, payload: { content: 'once' } });
      const a = await send();
      const b = await send();
      assert.equal(a.statusCode, 202);
      assert.equal(b.statusCode, 202);
      assert.deepEqual(json(a), json(b));
      assert.equal(t.sessions.sent.length, 1);
      assert.equal(t.sessions.messages.get(s)!.length, 1);
      assertError(
        await t.gateway.app.inject({ method: 'POST', url: `/api/sessions/${s}/messages`, headers: { ...alice, 'idempotency-key': 'k'.repeat(201) }, payload: { content: 'x' } }),
        400,
        'invalid_argument',
      );
    });

    it('rejects malformed JSON, wrong types and extra fields when sending', async () => {
      const s = await session(t, await persona(t));
      const post = (payload: string | object) =>
        t.gateway.app.inject({ method: 'POST', url: `/api/sessions/${s}/messages`, headers: { ...alice, 'content-type': 'application/json' }, payload: payload as string });
      assertError(await post('{"content": "x",'), 400, 'invalid_argument');
      assertError(await post({ content: 42 }), 400, 'invalid_argument');
      assertError(await post({ content: 'x', extra: true }), 400, 'invalid_argument');
      assert.equal(t.sessions.sent.length, 0);
    });
  });
});
