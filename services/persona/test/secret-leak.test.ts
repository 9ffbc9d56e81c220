import assert from 'node:assert/strict';
import { randomBytes, randomUUID } from 'node:crypto';
import { personaV1 } from '@chat/contracts';
import { AppError } from '@chat/errors';
import { ApiKeyAuth, buildApp, WsTokens, type Gateway, type GatewayDeps } from '@chat/gateway';
import { getLogger, tapLogs } from '@chat/logger';
import { QueryTypes } from '@chat/db';
import { Keyring, openSecret } from '@chat/secrets';
import { rotateApiKeys } from '../src/index.js';
import { startPersona, type PersonaHarness } from './harness.js';

/*
 * The api_key is write-only: with the persona service on a real PostgreSQL behind the real gateway,
 * every log line, REST body, gRPC response and outbox payload of a full CRUD + error + resolve +
 * rotation run is captured, and the key occurs in none of them (while the sealed key that
 * ResolvePersona hands out opens back to it with MASTER_KEYS and the profile id).
 */
describe('secret leak: an API key never leaves the persona service in plaintext', function () {
  this.timeout(120_000);
  const K1 = randomBytes(32).toString('base64');
  const K2 = randomBytes(32).toString('base64');
  // One canary in the sk- shape the log redactor knows, one it does not: the proof must not rest on redaction.
  const CANARIES = [`sk-canary-${randomBytes(12).toString('hex')}`, `canary${randomBytes(16).toString('hex')}`];
  const OWNER_KEY = 'leak-test-owner-key-0123456789';
  const auth = { authorization: `Bearer ${OWNER_KEY}` };
  let h: PersonaHarness;
  let gateway: Gateway;
  const lines: string[] = [];
  const bodies: string[] = [];
  const grpcResponses: string[] = [];
  let untap: () => void = () => {};

  const unavailable = async (): Promise<never> => {
    throw AppError.unavailable('not part of this test');
  };

  before(async () => {
    untap = tapLogs((l) => lines.push(l));
    h = await startPersona({ MASTER_KEYS: `v1:${K1}`, LOG_LEVEL: 'debug' });
    // Record every gRPC answer the gateway gets from the real client.
    const client = h.client as unknown as Record<string, (...a: unknown[]) => Promise<unknown>>;
    const recorded = new Proxy(h.client, {
      get(target, prop, receiver) {
        const v = Reflect.get(target, prop, receiver);
        if (typeof v !== 'function') return v;
        return async (...args: unknown[]) => {
          try {
            const res = await (client[prop as string] as (...a: unknown[]) => Promise<unknown>).apply(target, args);
            grpcResponses.push(JSON.stringify(res, (_k, val) => (val?.type === 'Buffer' ? Buffer.from(val.data).toString('latin1') : val)));
            return res;
          } catch (err) {
            grpcResponses.push(JSON.stringify({ message: (err as Error).message, details: (err as AppError).details }));
            throw err;
          }
        };
      },
    });
    const deps: GatewayDeps = {
      persona: recorded as unknown as GatewayDeps['persona'],
      session: { createSession: unavailable, getSession: unavailable, listMessages: unavailable, sendMessage: unavailable } as unknown as GatewayDeps['session'],
      rag: { ingestText: unavailable, getIngestJob: unavailable, retrieveDocuments: unavailable } as unknown as GatewayDeps['rag'],
      scheduler: { cancelReply: unavailable } as unknown as GatewayDeps['scheduler'],
      auth: new ApiKeyAuth([{ owner: 'leaky', key: OWNER_KEY }]),
      tokens: new WsTokens(randomBytes(32).toString('hex')),
      logger: getLogger('gateway-leak-test'),
    };
    gateway = buildApp(deps);
    gateway.setReady(true);
  });

  after(async () => {
    untap();
    await gateway?.app.close();
    await h?.stop();
  });

  const call = async (method: string, url: string, payload?: unknown, headers: Record<string, string> = auth) => {
    const res = await gateway.app.inject({ method: method as 'GET', url, headers: payload === undefined ? headers : { ...headers, 'content-type': 'application/json' }, payload: payload as string });
    bodies.push(`${res.statusCode} ${JSON.stringify(res.headers)} ${res.body}`);
    return { status: res.statusCode, body: res.body ? JSON.parse(res.body) : undefined };
  };

  it('runs create/get/list/patch/resolve/rotate/delete and error paths without the key appearing anywhere', async () => {
    const [c1, c2] = CANARIES as [string, string];
    // Create (both canaries), read back, list.
    const p1 = await call('POST', '/api/api_profiles', { name: 'Canary', provider: 'openai', base_url: 'https://api.openai.com/v1', model: 'gpt-4o-mini', api_key: c1 });
    assert.equal(p1.status, 201);
    const p2 = await call('POST', '/api/api_profiles', { name: 'Canary 2', provider: 'openai_compatible', base_url: 'http://127.0.0.1:9/v1', model: 'm', api_key: c2, limits: { requests_per_minute: 5 } });
    assert.equal(p2.status, 201);
    assert.equal((await call('GET', `/api/api_profiles/${p1.body.id}`)).status, 200);
    assert.equal((await call('GET', '/api/api_profiles')).status, 200);
    // Error paths carrying the key: bad fields, malformed JSON, unknown and foreign ids.
    assert.equal((await call('POST', '/api/api_profiles', { name: '', provider: 'nope', base_url: 'ftp://x', model: '', api_key: c1 })).status, 400);
    assert.equal((await call('POST', '/api/api_profiles', { name: 'x', provider: 'openai', base_url: 'https://x.example', model: 'm', api_key: `${c1} ` })).status, 400);
    assert.equal((await call('POST', '/api/api_profiles', `{"api_key":"${c1}",`)).status, 400);
    assert.equal((await call('POST', '/api/api_profiles', { name: 'x', provider: 'openai', base_url: 'https://x.example', model: 'm', api_key: c1, extra: c1 })).status, 400);
    assert.equal((await call('PATCH', `/api/api_profiles/${randomUUID()}`, { api_key: c1 })).status, 404);
    assert.equal((await call('PATCH', `/api/api_profiles/${p1.body.id}`, { api_key: c1, base_url: 'https://u:p@x' })).status, 400);
    assert.equal((await call('POST', '/api/api_profiles', { name: 'x', provider: 'openai', base_url: 'https://x.example', model: 'm', api_key: c1 }, { authorization: `Bearer ${c1}` })).status, 401);
    // gRPC straight to the service with the key in an invalid request.
    await assert.rejects(h.client.createApiProfile({ ownerId: 'leaky', name: '', provider: 'openai', baseUrl: 'x', model: '', apiKey: `${c1}\n` }));
    await assert.rejects(h.client.updateApiProfile({ ownerId: 'other-owner', id: p1.body.id, apiKey: c1 }));
    // Patch: rename, re-key to the same canary, limits.
    assert.equal((await call('PATCH', `/api/api_profiles/${p1.body.id}`, { name: 'Renamed', api_key: c1, limits: { max_concurrent_generations: 3 } })).status, 200);
    // A persona on the profile; resolve it (internal RPC); 409 on delete; rotation.
    const persona = await call('POST', '/api/personas', { name: 'Leaky', system_prompt: 'x', api_profile_id: p1.body.id });
    assert.equal(persona.status, 201);
    assert.equal((await call('PATCH', `/api/personas/${persona.body.id}`, { api_profile_id: p2.body.id, settings: { temperature: 0.1 } })).status, 200);
    const resolved = await h.client.resolvePersona({ ownerId: 'leaky', personaId: persona.body.id });
    grpcResponses.push(Buffer.from(personaV1.ResolvePersonaResponse.encode(resolved).finish()).toString('latin1'));
    const conflict = await call('DELETE', `/api/api_profiles/${p2.body.id}`);
    assert.equal(conflict.status, 409);
    await rotateApiKeys(h.db.sequelize, Keyring.parse(`v1:${K1},v2:${K2}`, 'v2'), h.logger, 1);
    // Delete everything.
    assert.equal((await call('DELETE', `/api/personas/${persona.body.id}`)).status, 204);
    assert.equal((await call('DELETE', `/api/api_profiles/${p1.body.id}`)).status, 204);
    assert.equal((await call('DELETE', `/api/api_profiles/${p2.body.id}`)).status, 204);
    await new Promise((r) => setTimeout(r, 100)); // let the outbox relay publish

    // The sealed key ResolvePersona handed out opens back to the key (and only with its profile id).
    const s = resolved.profile!.sealedApiKey!;
    const sealed = { ciphertext: Buffer.from(s.ciphertext), iv: Buffer.from(s.iv), tag: Buffer.from(s.tag), keyVersion: s.keyVersion };
    assert.equal(openSecret(Keyring.parse(`v1:${K1}`), sealed, p2.body.id), c2);
    assert.throws(() => openSecret(Keyring.parse(`v1:${K1}`), sealed, p1.body.id));

    // What was captured is substantial…
    assert.ok(lines.length > 10, `captured ${lines.length} log lines`);
    assert.ok(bodies.length >= 15 && grpcResponses.length >= 10, `${bodies.length} bodies, ${grpcResponses.length} gRPC responses`);
    assert.ok(h.bus.published.length >= 6, `${h.bus.published.length} outbox events`);
    const outbox = await h.db.sequelize.query<{ payload: Buffer; headers: unknown }>('select payload, headers from persona.outbox', { type: QueryTypes.SELECT });
    const haystacks: Array<[string, string[]]> = [
      ['log lines', lines],
      ['REST responses', bodies],
      ['gRPC responses', grpcResponses],
      ['published outbox events', h.bus.published.map((e) => `${e.key} ${JSON.stringify(e.headers)} ${Buffer.from(e.value).toString('latin1')}`)],
      ['outbox rows left', outbox.map((r) => `${JSON.stringify(r.headers)} ${r.payload.toString('latin1')}`)],
    ];
    // …and holds none of the keys (nor the master keys), in any encoding.
    const needles = CANARIES.flatMap((c) => [c, Buffer.from(c).toString('base64'), Buffer.from(c).toString('hex'), c.slice(10)]).concat([K1, K2]);
    for (const [what, texts] of haystacks) {
      for (const text of texts) for (const needle of needles) assert.ok(!text.includes(needle), `${what} leak a secret: ${text.slice(0, 300)}`);
    }
    // Positive control: the canary would have been found had it been there.
    assert.ok([`x ${c1} y`].some((t) => t.includes(c1)));
  });
});
