import assert from 'node:assert/strict';
import { Ajv2020 } from 'ajv/dist/2020.js';
import fc from 'fast-check';
import { alice, bob, connect, testApp, testServer, tick } from './harness.js';

/*
 * Property-based fuzzing (fast-check, fixed seeds, bounded runs) of REST bodies, paths, queries and
 * keys, and of WebSocket frames. Never a 5xx, never a crash, never a lost message. Every response
 * is also checked against the OpenAPI document by the harness.
 */

const SEED = 20261124;

/** Any JSON-ish body: arbitrary JSON values, near-miss objects, and broken text. */
const anyBody = fc.oneof(
  fc.json({ maxDepth: 3 }),
  fc.jsonValue({ maxDepth: 3 }).map((v) => JSON.stringify(v)),
  fc.dictionary(fc.constantFrom('name', 'system_prompt', 'content', 'persona_id', 'title', 'text', 'query', 'top_k', 'settings', 'priority', 'background', '__proto__', 'constructor', 'x'), fc.jsonValue({ maxDepth: 2 })).map((o) => JSON.stringify(o)),
  fc.string({ maxLength: 200 }),
  fc.constant(''),
  fc.constant('{"a":'),
  fc.constant('{"__proto__":{"polluted":true}}'),
);

describe('gateway fuzzing', function () {
  this.timeout(120_000);

  it('REST: arbitrary bodies, ids, queries and keys on every documented route never answer 5xx', async () => {
    const t = testApp({ maxBodyBytes: 64 * 1024 });
    try {
      const doc = JSON.parse((await t.gateway.app.inject({ method: 'GET', url: '/openapi.json' })).body);
      // Real ids of alice's, so generated requests also reach the handlers past the 404s.
      const persona = JSON.parse((await t.gateway.app.inject({ method: 'POST', url: '/api/personas', headers: alice, payload: { name: 'Ada', system_prompt: 'x' } })).body);
      const session = JSON.parse((await t.gateway.app.inject({ method: 'POST', url: '/api/sessions', headers: alice, payload: { persona_id: persona.id } })).body);
      const operations = Object.entries<any>(doc.paths)
        .filter(([p]) => p.startsWith('/api/'))
        .flatMap(([path, item]) => Object.keys(item).map((method) => ({ path, method: method.toUpperCase() })));
      assert.ok(operations.length >= 20);
      const idArb = fc.oneof(fc.constant(persona.id), fc.constant(session.id), fc.string({ minLength: 1, maxLength: 120 }), fc.constant('..'), fc.constant('%00'));
      const keyArb = fc.oneof(fc.constant(alice.authorization), fc.constant(bob.authorization), fc.string({ maxLength: 60 }).map((s) => `Bearer ${s}`), fc.constant(undefined));
      const queryArb = fc.oneof(fc.constant(''), fc.dictionary(fc.constantFrom('limit', 'before', 'page_size', 'page_token', 'persona_id', 'x'), fc.string({ maxLength: 20 })).map((q) => `?${new URLSearchParams(q)}`));
      await fc.assert(
        fc.asyncProperty(fc.constantFrom(...operations), fc.array(idArb, { minLength: 2, maxLength: 2 }), anyBody, keyArb, queryArb, fc.boolean(), async (op, ids, body, key, query, asJson) => {
          let i = 0;
          const url = op.path.replace(/\{[^}]+\}/g, () => encodeURIComponent(ids[i++ % 2]!)) + query;
          const headers: Record<string, string> = { ...(key !== undefined ? { authorization: key } : {}), ...(asJson || body === '' ? { 'content-type': 'application/json' } : { 'content-type': 'text/plain' }) };
          const hasBody = op.method !== 'GET' && op.method !== 'DELETE';
          const res = await t.gateway.app.inject({ method: op.method as 'POST', url, headers, ...(hasBody ? { payload: body } : {}) });
          assert.ok(res.statusCode < 500, `${op.method} ${url} ${JSON.stringify(body).slice(0, 200)} → ${res.statusCode} ${res.body.slice(0, 300)}`);
          if (res.statusCode >= 400) assert.equal(typeof JSON.parse(res.body).error.code, 'string');
        }),
        { seed: SEED, numRuns: 400 },
      );
      assert.equal(({} as any).polluted, undefined, 'no prototype pollution');
      assert.equal((await t.gateway.app.inject({ method: 'GET', url: '/healthz' })).statusCode, 200, 'still serving');
    } finally {
      await t.gateway.app.close();
    }
  });

  it('REST: a message body is accepted exactly when the documented schema accepts it, and every 202 is stored exactly once', async () => {
    const t = testApp();
    try {
      const doc = JSON.parse((await t.gateway.app.inject({ method: 'GET', url: '/openapi.json' })).body);
      const ajv = new Ajv2020({ strict: false, validateFormats: false });
      ajv.addSchema(doc, 'openapi.json');
      const valid = ajv.getSchema('openapi.json#/paths/~1api~1sessions~1{id}~1messages/post/requestBody/content/application~1json/schema')!;
      const persona = JSON.parse((await t.gateway.app.inject({ method: 'POST', url: '/api/personas', headers: alice, payload: { name: 'Ada', system_prompt: 'x' } })).body);
      const session = JSON.parse((await t.gateway.app.inject({ method: 'POST', url: '/api/sessions', headers: alice, payload: { persona_id: persona.id } })).body);
      const body = fc.oneof(
        // Mostly plausible bodies (on both sides of every bound), sometimes anything.
        { weight: 4, arbitrary: fc.record({ content: fc.string({ maxLength: 40 }), priority: fc.integer({ min: -12, max: 12 }) }, { requiredKeys: ['content'] }) },
        {
          weight: 2,
          arbitrary: fc.record(
            {
              content: fc.oneof(fc.string({ maxLength: 50 }), fc.integer(), fc.constant(null), fc.string({ minLength: 31_990, maxLength: 32_010 })),
              priority: fc.oneof(fc.integer({ min: -12, max: 12 }), fc.double(), fc.string({ maxLength: 3 })),
              extra: fc.jsonValue({ maxDepth: 1 }),
            },
            { requiredKeys: [] },
          ),
        },
      );
      let accepted = 0;
      await fc.assert(
        fc.asyncProperty(body, async (b) => {
          const res = await t.gateway.app.inject({ method: 'POST', url: `/api/sessions/${session.id}/messages`, headers: alice, payload: b as object });
          const expected = valid(b) ? 202 : 400;
          assert.equal(res.statusCode, expected, `${JSON.stringify(b).slice(0, 200)} → ${res.body.slice(0, 300)}`);
          if (res.statusCode === 202) accepted++;
        }),
        { seed: SEED, numRuns: 300 },
      );
      assert.ok(accepted > 10, `only ${accepted} valid bodies generated`);
      assert.equal(t.sessions.sent.length, accepted, 'every accepted message is stored exactly once');
      assert.equal(t.sessions.messages.get(session.id)!.length, accepted);
    } finally {
      await t.gateway.app.close();
    }
  });

  it('WebSocket: arbitrary frame sequences get exactly one answer each, every valid message is accepted and stored once, the socket stays open', async () => {
    const s = await testServer({ heartbeatMs: 60_000 });
    try {
      const persona = await (await fetch(`${s.running.url}/api/personas`, { method: 'POST', headers: { ...alice, 'content-type': 'application/json' }, body: JSON.stringify({ name: 'Ada', system_prompt: 'x' }) })).json() as any;
      const session = await (await fetch(`${s.running.url}/api/sessions`, { method: 'POST', headers: { ...alice, 'content-type': 'application/json' }, body: JSON.stringify({ persona_id: persona.id }) })).json() as any;
      let n = 0;
      // Frames that must each get exactly one answer frame.
      const frameArb = fc.oneof(
        fc.string({ minLength: 1, maxLength: 300 }).map((content) => ({ kind: 'valid' as const, frame: { type: 'message', content, client_id: `c${++n}` } })),
        fc.constant({ kind: 'other' as const, frame: { type: 'ping' } }),
        fc.oneof(
          fc.record({ type: fc.constant('message'), content: fc.oneof(fc.constant(''), fc.integer(), fc.constant(null)) }),
          fc.record({ type: fc.constant('message'), content: fc.string({ maxLength: 5 }), bogus: fc.jsonValue({ maxDepth: 1 }) }),
          fc.record({ type: fc.constant('resume'), last_seq: fc.oneof(fc.constant(-1), fc.double({ noInteger: true }), fc.string({ maxLength: 3 })) }),
          fc.record({ type: fc.constant('cancel') }),
          fc.record({ type: fc.string({ maxLength: 10 }).filter((x) => !['message', 'ping', 'cancel', 'resume'].includes(x)) }),
          fc.jsonValue({ maxDepth: 2 }).filter((v) => v === null || typeof v !== 'object' || Array.isArray(v)),
        ).map((frame) => ({ kind: 'other' as const, frame })),
        fc.string({ maxLength: 100 }).filter((x) => { try { JSON.parse(x); return false; } catch { return true; } }).map((text) => ({ kind: 'other' as const, frame: text })),
        fc.uint8Array({ minLength: 1, maxLength: 50 }).map((bytes) => ({ kind: 'binary' as const, frame: Buffer.from(bytes) })),
      );
      await fc.assert(
        fc.asyncProperty(fc.array(frameArb, { minLength: 1, maxLength: 15 }), async (frames) => {
          const tokenRes = await (await fetch(`${s.running.url}/api/sessions/${session.id}/ws_token`, { method: 'POST', headers: alice })).json() as any;
          const { client } = await connect(`${s.wsUrl}/ws/sessions/${session.id}?ws_token=${tokenRes.ws_token}`);
          assert.ok(client);
          const sentBefore = s.sessions.sent.length;
          for (const f of frames) {
            if (f.kind === 'binary') client.ws.send(f.frame, { binary: true });
            else client.send(typeof f.frame === 'string' ? f.frame : JSON.stringify(f.frame));
          }
          const answers = [];
          for (let i = 0; i < frames.length; i++) answers.push(await client.next(undefined, 5_000));
          await assert.rejects(client.next(undefined, 50), /no {2}frame/, 'no extra answer');
          const validIds = frames.filter((f) => f.kind === 'valid').map((f) => (f.frame as { client_id: string }).client_id);
          const acceptedIds = answers.filter((a) => a.type === 'message.accepted').map((a) => a.client_id);
          assert.deepEqual([...acceptedIds].sort(), [...validIds].sort(), 'every valid message accepted once');
          assert.equal(answers.filter((a) => a.type === 'error').length + answers.filter((a) => a.type === 'pong').length, frames.length - validIds.length);
          for (const a of answers.filter((x) => x.type === 'error')) assert.equal((a.error as { code: string }).code, 'invalid_argument', 'a client mistake, never a server error');
          const stored = s.sessions.sent.slice(sentBefore).map((m) => m.content).sort();
          assert.deepEqual(stored, frames.filter((f) => f.kind === 'valid').map((f) => (f.frame as { content: string }).content).sort(), 'stored exactly once each');
          assert.equal(client.ws.readyState, client.ws.OPEN, 'the socket stays open');
          client.close();
          await client.closed;
        }),
        { seed: SEED, numRuns: 60 },
      );
      await tick(20);
      assert.equal((await fetch(`${s.running.url}/healthz`)).status, 200, 'still serving');
    } finally {
      await s.running.stop();
    }
  });
});
