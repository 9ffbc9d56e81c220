import assert from 'node:assert/strict';
import type { LightMyRequestResponse } from 'fastify';
import { GatewayLimits, RateLimiter } from '../src/limits.js';
import { alice, bob, captureLogs, Clock, connect, testApp, testServer, tick } from './harness.js';

const json = (res: LightMyRequestResponse): any => JSON.parse(res.body);

type Server = Awaited<ReturnType<typeof testServer>>;

async function api(s: Server, method: string, path: string, headers: Record<string, string>, body?: unknown): Promise<{ status: number; json: any; headers: Headers }> {
  const res = await fetch(`${s.running.url}${path}`, {
    method,
    headers: { ...headers, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
    body: body !== undefined ? JSON.stringify(body) : undefined,
  });
  return { status: res.status, json: await res.json(), headers: res.headers };
}

async function newSession(s: Server, headers = alice): Promise<string> {
  const p = await api(s, 'POST', '/api/personas', headers, { name: 'Ada', system_prompt: 'You are Ada.' });
  return (await api(s, 'POST', '/api/sessions', headers, { persona_id: p.json.id })).json.id;
}

const token = async (s: Server, session: string, headers = alice) => (await api(s, 'POST', `/api/sessions/${session}/ws_token`, headers)).json.ws_token as string;

describe('gateway limits', () => {
  describe('token bucket', () => {
    it('allows the burst, then refills at the rate and says how long to wait', () => {
      const clock = new Clock();
      const b = new RateLimiter({ perMinute: 60, burst: 2 }, clock.now);
      assert.ok(b.take('k').ok && b.take('k').ok);
      assert.deepEqual(b.take('k'), { ok: false, retryAfterSeconds: 1 });
      assert.ok(b.take('other').ok, 'buckets are per key');
      clock.t += 1_000;
      assert.ok(b.take('k').ok);
      assert.equal(b.take('k').ok, false);
    });
  });

  describe('per API key (REST)', () => {
    it('answers 429 rate_limited with Retry-After and the error body, per key', async () => {
      const clock = new Clock();
      const t = testApp({ limits: new GatewayLimits({ perKey: { perMinute: 60, burst: 3 }, now: clock.now }) });
      try {
        for (let i = 0; i < 3; i++) assert.equal((await t.gateway.app.inject({ method: 'GET', url: '/api/personas', headers: alice })).statusCode, 200);
        const res = await t.gateway.app.inject({ method: 'GET', url: '/api/personas', headers: alice });
        assert.equal(res.statusCode, 429);
        assert.equal(res.headers['retry-after'], '1');
        const body = json(res);
        assert.equal(body.error.code, 'rate_limited');
        assert.equal(body.error.details.retry_after_seconds, 1);
        assert.equal(body.error.details.scope, 'API key');
        assert.equal((await t.gateway.app.inject({ method: 'GET', url: '/api/personas', headers: bob })).statusCode, 200, 'another key has its own bucket');
        clock.t += 1_000;
        assert.equal((await t.gateway.app.inject({ method: 'GET', url: '/api/personas', headers: alice })).statusCode, 200, 'refilled');
      } finally {
        await t.gateway.app.close();
      }
    });
  });

  describe('per session', () => {
    let s: Server;
    let clock: Clock;
    beforeEach(async () => {
      clock = new Clock();
      s = await testServer({
        heartbeatMs: 60_000,
        limits: new GatewayLimits({ perKey: { perMinute: 10_000, burst: 10_000 }, perSession: { perMinute: 60, burst: 3 }, maxStreamsPerOwner: 2, now: clock.now }),
      });
    });
    afterEach(async () => {
      await s.running.stop();
    });

    it('limits message sends of one session over REST (429 + Retry-After), not other sessions', async () => {
      const a = await newSession(s);
      const b = await newSession(s);
      for (let i = 0; i < 3; i++) assert.equal((await api(s, 'POST', `/api/sessions/${a}/messages`, alice, { content: `m${i}` })).status, 202);
      const refused = await api(s, 'POST', `/api/sessions/${a}/messages`, alice, { content: 'one more' });
      assert.equal(refused.status, 429);
      assert.equal(refused.headers.get('retry-after'), '1');
      assert.equal(refused.json.error.code, 'rate_limited');
      assert.equal(refused.json.error.details.scope, 'session');
      assert.equal(s.sessions.sent.length, 3, 'the refused message was not stored');
      assert.equal((await api(s, 'POST', `/api/sessions/${b}/messages`, alice, { content: 'other session' })).status, 202);
    });

    it('answers every WebSocket frame over the session limit with a rate_limited error frame (nothing silently dropped)', async () => {
      const session = await newSession(s);
      const { client } = await connect(`${s.wsUrl}/ws/sessions/${session}?ws_token=${await token(s, session)}`);
      assert.ok(client);
      for (let i = 0; i < 5; i++) client.send({ type: 'message', content: `m${i}`, client_id: `c${i}` });
      const answers = [];
      for (let i = 0; i < 5; i++) answers.push(await client.next());
      const accepted = answers.filter((f) => f.type === 'message.accepted').map((f) => f.client_id);
      const limited = answers.filter((f) => f.type === 'error' && (f.error as any).code === 'rate_limited').map((f) => f.client_id);
      assert.equal(accepted.length, 3);
      assert.equal(limited.length, 2);
      assert.deepEqual([...accepted, ...limited].sort(), ['c0', 'c1', 'c2', 'c3', 'c4']);
      assert.equal(s.sessions.sent.length, 3);
      client.close();
    });
  });

  describe('concurrent streams per owner', () => {
    let s: Server;
    beforeEach(async () => {
      s = await testServer({ heartbeatMs: 60_000, limits: new GatewayLimits({ maxStreamsPerOwner: 2 }) });
    });
    afterEach(async () => {
      await s.running.stop();
    });

    it('refuses a WebSocket over the cap with 429 too_many_streams before upgrading, and frees the slot on close', async () => {
      const session = await newSession(s);
      const first = await connect(`${s.wsUrl}/ws/sessions/${session}?ws_token=${await token(s, session)}`);
      const second = await connect(`${s.wsUrl}/ws/sessions/${session}?ws_token=${await token(s, session)}`);
      assert.ok(first.client && second.client);
      const third = await connect(`${s.wsUrl}/ws/sessions/${session}?ws_token=${await token(s, session)}`);
      assert.equal(third.status, 429);
      assert.equal(JSON.parse(third.body!).error.code, 'too_many_streams');
      assert.equal(third.headers!['retry-after'], '1');
      const bobs = await newSession(s, bob);
      const other = await connect(`${s.wsUrl}/ws/sessions/${bobs}?ws_token=${await token(s, bobs, bob)}`);
      assert.ok(other.client, 'another owner is not affected');
      first.client.close();
      await first.client.closed;
      let again: Awaited<ReturnType<typeof connect>> | undefined;
      for (let i = 0; i < 50; i++) {
        again = await connect(`${s.wsUrl}/ws/sessions/${session}?ws_token=${await token(s, session)}`);
        if (again.client) break;
        await tick(20);
      }
      assert.ok(again?.client, 'the slot is free again');
      for (const c of [second.client, other.client, again!.client!]) c.close();
    });
  });

  describe('WebSocket Origin allow-list', () => {
    let s: Server;
    beforeEach(async () => {
      s = await testServer({ heartbeatMs: 60_000, allowedOrigins: ['https://app.example.com'] });
    });
    afterEach(async () => {
      await s.running.stop();
    });

    it('refuses another Origin with 403 without spending the token; allows the listed one and clients without Origin', async () => {
      const session = await newSession(s);
      const t = await token(s, session);
      const logs = captureLogs();
      const evil = await connect(`${s.wsUrl}/ws/sessions/${session}?ws_token=${t}`, { origin: 'https://evil.example' });
      assert.equal(evil.status, 403);
      assert.equal(JSON.parse(evil.body!).error.code, 'origin_not_allowed');
      const good = await connect(`${s.wsUrl}/ws/sessions/${session}?ws_token=${t}`, { origin: 'https://APP.example.com' });
      assert.ok(good.client, 'the same token still works from the allowed Origin');
      const cli = await connect(`${s.wsUrl}/ws/sessions/${session}?ws_token=${await token(s, session)}`);
      assert.ok(cli.client, 'no Origin header (a non-browser client)');
      await tick(30);
      logs.stop();
      assert.ok(logs.lines.some((l) => l.includes('origin_not_allowed')));
      assert.ok(!logs.lines.join('\n').includes(t), 'the token is never logged');
      good.client.close();
      cli.client.close();
    });
  });

  describe('body size', () => {
    it('answers 413 too_large to a chunked body (no Content-Length) over the limit', async () => {
      const s = await testServer({ maxBodyBytes: 1024 });
      try {
        const chunk = new TextEncoder().encode(JSON.stringify({ name: 'x'.repeat(4096), system_prompt: 'x' }));
        const body = new ReadableStream({
          start(c) {
            c.enqueue(chunk);
            c.close();
          },
        });
        const res = await fetch(`${s.running.url}/api/personas`, { method: 'POST', headers: { ...alice, 'content-type': 'application/json' }, body, duplex: 'half' } as RequestInit);
        assert.equal(res.status, 413);
        assert.equal(((await res.json()) as any).error.code, 'too_large');
        assert.equal(s.personas.personas.size, 0);
      } finally {
        await s.running.stop();
      }
    });

    it('answers 413 too_large on every documented operation that takes a body', async () => {
      const t = testApp({ maxBodyBytes: 1024 });
      try {
        const doc = json(await t.gateway.app.inject({ method: 'GET', url: '/openapi.json' }));
        let checked = 0;
        for (const [path, item] of Object.entries<any>(doc.paths)) {
          for (const [method, op] of Object.entries<any>(item)) {
            if (!op.requestBody || !path.startsWith('/api/')) continue;
            const url = path.replace(/\{[^}]+\}/g, 'x1');
            const res = await t.gateway.app.inject({ method: method.toUpperCase() as 'POST', url, headers: { ...alice, 'content-type': 'application/json' }, payload: JSON.stringify({ text: 'x'.repeat(2048) }) });
            assert.equal(res.statusCode, 413, `${method} ${path}: ${res.body}`);
            assert.equal(json(res).error.code, 'too_large');
            checked++;
          }
        }
        assert.ok(checked >= 8, `only ${checked} operations take a body`);
      } finally {
        await t.gateway.app.close();
      }
    });
  });
});
