import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { QueryTypes } from '@chat/db';
import { ApiKeyAuth, GrpcKeyStore, WsTokens } from '@chat/gateway';
import { startPersona, type PersonaHarness } from './harness.js';

const run = promisify(execFile);
const CLI = join(dirname(fileURLToPath(import.meta.url)), '..', 'src', 'api-keys.js');

/*
 * The gateway's API keys and ws_token nonces in the persona schema (chat.persona.v1.ApiKeyService)
 * on a real PostgreSQL: digests only, owner-checked, revocable, nonces single-use across clients,
 * and the admin command.
 */
describe('persona service: API key store', function () {
  this.timeout(60_000);
  let h: PersonaHarness;
  let store: GrpcKeyStore;
  before(async () => {
    h = await startPersona();
    store = new GrpcKeyStore(h.address);
  });
  const extra: GrpcKeyStore[] = [];
  after(async () => {
    store.close();
    for (const s of extra) s.close();
    await h.stop();
  });

  it('creates a key shown once and stores only its SHA-256 digest', async () => {
    const { apiKey, secret } = await store.createApiKey({ ownerId: 'alice', name: 'laptop' });
    assert.match(secret, /^pk_[A-Za-z0-9_-]{43}$/);
    assert.equal(apiKey!.ownerId, 'alice');
    assert.equal(apiKey!.prefix, secret.slice(0, 8));
    const rows = await h.db.sequelize.query<Record<string, unknown>>('select * from persona.api_keys where id = :id', { replacements: { id: apiKey!.id }, type: QueryTypes.SELECT });
    assert.equal(rows.length, 1);
    assert.ok(!JSON.stringify(rows[0]).includes(secret.slice(8)), 'the key is not stored');
    assert.deepEqual(rows[0]!.digest, createHash('sha256').update(secret).digest());
    const listed = await store.listApiKeys({ ownerId: 'alice' });
    assert.ok(listed.apiKeys.some((k) => k.id === apiKey!.id));
    assert.ok(!JSON.stringify(listed).includes(secret.slice(8)), 'lists carry no secret');
  });

  it('authenticates by digest, owner-checks revocation (foreign → NOT_FOUND), and forgets revoked keys', async () => {
    const { apiKey, secret } = await store.createApiKey({ ownerId: 'alice', name: 'k' });
    const digest = createHash('sha256').update(secret).digest();
    assert.deepEqual(await store.authenticateApiKey({ digest }), { keyId: apiKey!.id, ownerId: 'alice' });
    await assert.rejects(store.authenticateApiKey({ digest: createHash('sha256').update('pk_wrong').digest() }), (e: any) => e.reason === 'not_found');
    await assert.rejects(store.authenticateApiKey({ digest: Buffer.from('short') }), (e: any) => e.reason === 'invalid_argument');
    await assert.rejects(store.revokeApiKey({ ownerId: 'bob', id: apiKey!.id }), (e: any) => e.reason === 'not_found');
    await assert.rejects(store.revokeApiKey({ ownerId: 'alice', id: 'not-a-uuid' }), (e: any) => e.reason === 'not_found');
    assert.ok((await store.authenticateApiKey({ digest })).ownerId === 'alice', 'bob could not revoke it');
    const revoked = await store.revokeApiKey({ ownerId: 'alice', id: apiKey!.id });
    assert.ok(revoked.apiKey!.revokedAt instanceof Date);
    await assert.rejects(store.authenticateApiKey({ digest }), (e: any) => e.reason === 'not_found');
    await assert.rejects(store.createApiKey({ ownerId: 'bad owner!', name: 'x' }), (e: any) => e.reason === 'invalid_argument');
  });

  it('backs the gateway: a stored key authenticates through ApiKeyAuth next to a configured one', async () => {
    const { secret } = await store.createApiKey({ ownerId: 'carol', name: 'k' });
    const auth = new ApiKeyAuth([{ owner: 'dev', key: 'dev-key-0123456789abcdef' }], { store });
    assert.equal((await auth.authenticate(`Bearer ${secret}`)).owner, 'carol');
    assert.equal((await auth.authenticate('Bearer dev-key-0123456789abcdef')).owner, 'dev');
    await assert.rejects(auth.authenticate(`Bearer pk_${randomBytes(32).toString('base64url')}`), (e: any) => e.reason === 'unauthenticated');
  });

  it('records ws_token nonces once: a token used on one gateway is refused on another', async () => {
    const secret = randomBytes(32).toString('hex');
    const a = new WsTokens(secret, 60_000, Date.now, store);
    const other = new GrpcKeyStore(h.address);
    extra.push(other);
    const b = new WsTokens(secret, 60_000, Date.now, other);
    const { token } = a.issue('alice', 'ses_1');
    assert.ok((await a.verify(token, 'ses_1')).ok);
    assert.deepEqual(await b.verify(token, 'ses_1'), { ok: false, problem: 'reused' });
    await assert.rejects(store.consumeNonce({ nonce: 'bad nonce!', expiresAt: new Date() }), (e: any) => e.reason === 'invalid_argument');
  });

  it('has an admin command that creates (printing the key once), lists and revokes keys', async () => {
    const env = { ...process.env, DATABASE_URL: h.databaseUrl };
    const created = JSON.parse((await run(process.execPath, [CLI, 'create', '--owner', 'dora', '--name', 'cli-test'], { env })).stdout);
    assert.equal(created.owner, 'dora');
    assert.match(created.api_key, /^pk_/);
    assert.equal((await store.authenticateApiKey({ digest: createHash('sha256').update(created.api_key).digest() })).ownerId, 'dora');
    const listed = JSON.parse((await run(process.execPath, [CLI, 'list', '--owner', 'dora'], { env })).stdout);
    assert.deepEqual(listed.api_keys.map((k: any) => k.id), [created.id]);
    assert.ok(!JSON.stringify(listed).includes(created.api_key));
    const revoked = JSON.parse((await run(process.execPath, [CLI, 'revoke', '--owner', 'dora', '--id', created.id], { env })).stdout);
    assert.equal(typeof revoked.revoked_at, 'string');
    await assert.rejects(run(process.execPath, [CLI, 'create'], { env }), (e: any) => e.code === 1 && /usage/.test(e.stderr));
    await assert.rejects(run(process.execPath, [CLI, 'revoke', '--owner', 'eve', '--id', created.id], { env }), (e: any) => e.code === 1 && /no API key/.test(e.stderr));
  });
});
