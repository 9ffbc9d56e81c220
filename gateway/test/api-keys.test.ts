import assert from 'node:assert/strict';
import type { LightMyRequestResponse } from 'fastify';
import { ApiKeyAuth } from '../src/auth.js';
import { FakeKeyStore } from './fakes.js';
import { alice, ALICE_KEY, bob, captureLogs, Clock, testApp, tick } from './harness.js';

type App = ReturnType<typeof testApp>;
const json = (res: LightMyRequestResponse): any => JSON.parse(res.body);

describe('gateway API keys', () => {
  let t: App;
  beforeEach(() => {
    t = testApp();
  });
  afterEach(async () => {
    await t.gateway.app.close();
  });

  const inject = (method: 'GET' | 'POST' | 'DELETE', url: string, headers: Record<string, string>, payload?: unknown) => t.gateway.app.inject({ method, url, headers, payload: payload as any });

  it('creates a key for the caller’s owner, shows it once, and the new key works for that owner only', async () => {
    const res = await inject('POST', '/api/api_keys', alice, { name: 'laptop' });
    assert.equal(res.statusCode, 201, res.body);
    const created = json(res);
    assert.match(created.api_key, /^pk_[A-Za-z0-9_-]{40,}$/);
    assert.equal(created.name, 'laptop');
    assert.equal(created.prefix, created.api_key.slice(0, 8));
    assert.equal(created.revoked_at, null);
    // The store holds only a digest.
    assert.ok(![...t.keys.keys.values()].some((k) => JSON.stringify(k).includes(created.api_key)));
    const mine = { authorization: `Bearer ${created.api_key}` };
    const persona = json(await inject('POST', '/api/personas', mine, { name: 'Ada', system_prompt: 'x' }));
    assert.equal((await inject('GET', `/api/personas/${persona.id}`, alice)).statusCode, 200, 'same owner as the creating key');
    assert.equal((await inject('GET', `/api/personas/${persona.id}`, bob)).statusCode, 404, 'foreign owner');
  });

  it('lists keys without secrets and answers 404 when revoking another owner’s key', async () => {
    const created = json(await inject('POST', '/api/api_keys', alice, { name: 'ci' }));
    await inject('POST', '/api/api_keys', bob, {});
    const list = json(await inject('GET', '/api/api_keys', alice));
    assert.deepEqual(
      list.api_keys.map((k: any) => k.id),
      [created.id],
    );
    assert.ok(!JSON.stringify(list).includes(created.api_key));
    assert.deepEqual(Object.keys(list.api_keys[0]).sort(), ['created_at', 'id', 'name', 'prefix', 'revoked_at']);
    const foreign = await inject('DELETE', `/api/api_keys/${created.id}`, bob);
    assert.equal(foreign.statusCode, 404);
    assert.equal(json(foreign).error.code, 'not_found');
    assert.equal((await inject('GET', '/api/personas', { authorization: `Bearer ${created.api_key}` })).statusCode, 200, 'still valid');
  });

  it('revokes a key: it stops working at once on this gateway and is listed as revoked', async () => {
    const created = json(await inject('POST', '/api/api_keys', alice, { name: 'old' }));
    const key = { authorization: `Bearer ${created.api_key}` };
    assert.equal((await inject('GET', '/api/personas', key)).statusCode, 200);
    const del = await inject('DELETE', `/api/api_keys/${created.id}`, alice);
    assert.equal(del.statusCode, 204);
    assert.equal(del.body, '');
    const after = await inject('GET', '/api/personas', key);
    assert.equal(after.statusCode, 401);
    assert.equal(json(after).error.code, 'unauthenticated');
    assert.equal((await inject('DELETE', `/api/api_keys/${created.id}`, alice)).statusCode, 204, 'idempotent');
    const listed = json(await inject('GET', '/api/api_keys', alice)).api_keys[0];
    assert.equal(typeof listed.revoked_at, 'string');
  });

  it('rejects bad input: unknown fields, wrong types, over-long names, no body, unknown ids, no key', async () => {
    for (const payload of [{ name: 5 }, { name: '' }, { name: 'x'.repeat(101) }, { extra: 1 }, []]) {
      const res = await inject('POST', '/api/api_keys', alice, payload);
      assert.equal(res.statusCode, 400, JSON.stringify(payload));
      assert.equal(json(res).error.code, 'invalid_argument');
    }
    const noBody = await t.gateway.app.inject({ method: 'POST', url: '/api/api_keys', headers: { ...alice, 'content-type': 'application/json' }, payload: '' });
    assert.equal(noBody.statusCode, 400);
    const malformed = await t.gateway.app.inject({ method: 'POST', url: '/api/api_keys', headers: { ...alice, 'content-type': 'application/json' }, payload: '{"name":' });
    assert.equal(malformed.statusCode, 400);
    assert.equal((await inject('DELETE', '/api/api_keys/nope', alice)).statusCode, 404);
    assert.equal((await inject('DELETE', `/api/api_keys/${'x'.repeat(101)}`, alice)).statusCode, 400);
    assert.equal((await inject('GET', '/api/api_keys', {})).statusCode, 401);
    assert.equal((await inject('GET', '/api/api_keys?x=1', alice)).statusCode, 400);
  });

  it('answers 503 unavailable (never 200 or 401) when the key store is down, while configured keys keep working', async () => {
    const created = json(await inject('POST', '/api/api_keys', alice, {}));
    // A fresh gateway (empty cache) over the same store.
    await t.gateway.app.close();
    const keys = t.keys;
    t = testApp({ auth: new ApiKeyAuth([{ owner: 'alice', key: ALICE_KEY }], { store: keys }) });
    keys.down = true;
    const res = await inject('GET', '/api/personas', { authorization: `Bearer ${created.api_key}` });
    assert.equal(res.statusCode, 503);
    assert.equal(json(res).error.code, 'unavailable');
    assert.equal((await inject('GET', '/api/personas', alice)).statusCode, 200);
    assert.equal((await inject('POST', '/api/api_keys', alice, {})).statusCode, 503);
  });

  it('never writes a key to the logs', async () => {
    const logs = captureLogs();
    const created = json(await inject('POST', '/api/api_keys', alice, { name: 'log-test' }));
    await inject('GET', '/api/personas', { authorization: `Bearer ${created.api_key}` });
    await inject('GET', '/api/personas', { authorization: 'Bearer pk_wrong_wrong_wrong_wrong' });
    await tick(30);
    logs.stop();
    const all = logs.lines.join('\n');
    assert.ok(logs.lines.length >= 3);
    for (const secret of [created.api_key, ALICE_KEY, 'pk_wrong_wrong_wrong_wrong']) assert.ok(!all.includes(secret), 'a key leaked into the logs');
  });
});

describe('ApiKeyAuth with a key store', () => {
  it('caches a confirmed key for the TTL, then asks the store again (a revocation elsewhere takes effect)', async () => {
    const store = new FakeKeyStore();
    const clock = new Clock();
    const auth = new ApiKeyAuth([], { store, cacheTtlMs: 30_000, now: clock.now });
    const { secret, apiKey } = await store.createApiKey({ ownerId: 'carol', name: 'k' });
    assert.deepEqual(await auth.authenticate(`Bearer ${secret}`), { owner: 'carol', keyId: apiKey!.id });
    await auth.authenticate(`Bearer ${secret}`);
    assert.equal(store.lookups, 1, 'the second call is served from the cache');
    await store.revokeApiKey({ ownerId: 'carol', id: apiKey!.id }); // revoked through another gateway
    clock.t += 30_001;
    await assert.rejects(auth.authenticate(`Bearer ${secret}`), (e: any) => e.reason === 'unauthenticated');
    assert.equal(store.lookups, 2);
  });

  it('checks configured keys without the store', async () => {
    const store = new FakeKeyStore();
    store.down = true;
    const auth = new ApiKeyAuth([{ owner: 'dev', key: 'dev-key-0123456789' }], { store });
    assert.deepEqual(await auth.authenticate('Bearer dev-key-0123456789'), { owner: 'dev', keyId: 'static:1' });
    await assert.rejects(auth.authenticate('Bearer other-key-0123456789'), (e: any) => e.reason === 'unavailable');
  });
});
