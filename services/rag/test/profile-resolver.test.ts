import assert from 'node:assert/strict';
import { personaV1 } from '@chat/contracts';
import { AppError, Code, isAppError } from '@chat/errors';
import { Keyring, generateKeySpec, sealSecret } from '@chat/secrets';
import { GrpcPersonaProfileSource, keyOpener } from '../src/adapters/persona/profile-source.js';
import { ProfileResolver, type PersonaProfile, type PersonaProfileSource } from '../src/domain/profiles.js';
import { profileEventHandler } from '../src/handlers/profile-events.js';
import { eventsV1 } from '@chat/contracts';
import { encodeEvent } from '@chat/events';
import { configureLogger } from '@chat/logger';

const logger = configureLogger({ silent: true });
const DEFAULT = { baseUrl: 'http://default.invalid/v1', apiKey: 'default-key', model: 'default-model' };
const OWNER = 'owner-1';
const PERSONA = '11111111-1111-4111-8111-111111111111';
const PROFILE = '22222222-2222-4222-8222-222222222222';
const KEY = 'sk-canary-resolver-0123456789';

/** FakeSource answers from a mutable table and counts lookups. */
class FakeSource implements PersonaProfileSource {
  calls = 0;
  answer: PersonaProfile | AppError = { kind: 'default' };
  async fetch(): Promise<PersonaProfile> {
    this.calls++;
    if (this.answer instanceof AppError) throw this.answer;
    return this.answer;
  }
}

async function rejectsWith(p: Promise<unknown>, code: Code, reason: string, notIn?: string): Promise<void> {
  await assert.rejects(p, (err: unknown) => {
    assert.ok(isAppError(err), String(err));
    assert.equal(err.code, code, err.message);
    assert.equal(err.reason, reason);
    if (notIn) assert.ok(!JSON.stringify({ m: err.message, d: err.details }).includes(notIn), 'key material leaked into the error');
    return true;
  });
}

describe('ProfileResolver', () => {
  const keyring = Keyring.parse(generateKeySpec());
  let source: FakeSource;
  let now: number;
  let resolver: ProfileResolver;
  const profile = (overrides: Partial<Extract<PersonaProfile, { kind: 'profile' }>> = {}): PersonaProfile => ({
    kind: 'profile',
    profileId: PROFILE,
    baseUrl: 'http://a.invalid/v1',
    model: 'model-a',
    sealedKey: sealSecret(keyring, KEY, PROFILE),
    ...overrides,
  });

  beforeEach(() => {
    source = new FakeSource();
    now = 1_000_000;
    resolver = new ProfileResolver({ source, open: keyOpener(keyring), defaultEndpoint: DEFAULT }, { ttlMs: 60_000, now: () => now });
  });

  it('names the embedding model of the profile (with its key), else the local embedder', async () => {
    assert.deepEqual(await resolver.embedding(OWNER, PERSONA), { spec: { provider: 'local', model: 'local-hash-384', baseUrl: '' }, apiKey: '' });
    resolver.invalidatePersona(PERSONA);
    source.answer = profile();
    assert.equal((await resolver.embedding(OWNER, PERSONA)).spec.provider, 'local', 'a profile without embedding_model embeds locally');
    resolver.invalidatePersona(PERSONA);
    source.answer = profile({ embeddingModel: 'emb-1' });
    assert.deepEqual(await resolver.embedding(OWNER, PERSONA), { spec: { provider: 'openai', model: 'emb-1', baseUrl: 'http://a.invalid/v1' }, apiKey: KEY });
    resolver.invalidatePersona(PERSONA);
    source.answer = profile({ embeddingModel: 'emb-1', embeddingBaseUrl: 'http://emb.invalid/v1' });
    assert.equal((await resolver.embedding(OWNER, PERSONA)).spec.baseUrl, 'http://emb.invalid/v1');
    resolver.invalidatePersona(PERSONA);
    source.answer = { kind: 'missing', profileId: PROFILE };
    await rejectsWith(resolver.embedding(OWNER, PERSONA), Code.FailedPrecondition, 'profile_unusable');
  });

  it('reports the persona’s retrieval settings from the same cached resolution', async () => {
    source.answer = { kind: 'default', retrieval: { mode: 'hybrid', rerank: true } };
    assert.deepEqual(await resolver.retrieval(OWNER, PERSONA), { mode: 'hybrid', rerank: true });
    await resolver.resolve(OWNER, PERSONA);
    assert.equal(source.calls, 1, 'one lookup serves both');
  });

  it('uses the configured default endpoint when the persona names no profile', async () => {
    assert.deepEqual(await resolver.resolve(OWNER, PERSONA), DEFAULT);
  });

  it('resolves a profile to its base URL, model and opened key, and caches it', async () => {
    source.answer = profile();
    const first = await resolver.resolve(OWNER, PERSONA);
    assert.deepEqual(first, { profileId: PROFILE, baseUrl: 'http://a.invalid/v1', model: 'model-a', apiKey: KEY });
    assert.deepEqual(await resolver.resolve(OWNER, PERSONA), first);
    assert.equal(source.calls, 1, 'the second resolution is a cache hit');
    assert.deepEqual(resolver.size, { personas: 1, keys: 1 });
  });

  it('does not share a cached resolution with another owner', async () => {
    source.answer = profile();
    await resolver.resolve(OWNER, PERSONA);
    await resolver.resolve('owner-2', PERSONA);
    assert.equal(source.calls, 2);
  });

  it('refetches after the TTL', async () => {
    source.answer = profile();
    await resolver.resolve(OWNER, PERSONA);
    now += 59_000;
    await resolver.resolve(OWNER, PERSONA);
    assert.equal(source.calls, 1);
    now += 2_000;
    source.answer = profile({ model: 'model-b' });
    assert.equal((await resolver.resolve(OWNER, PERSONA)).model, 'model-b');
    assert.equal(source.calls, 2);
  });

  it('drops a persona on a persona event, so its new profile applies at once', async () => {
    await resolver.resolve(OWNER, PERSONA);
    source.answer = profile();
    assert.deepEqual(await resolver.resolve(OWNER, PERSONA), DEFAULT, 'still cached');
    resolver.invalidatePersona(PERSONA);
    assert.equal((await resolver.resolve(OWNER, PERSONA)).apiKey, KEY);
  });

  it('drops every resolution of a profile and its keys on a profile event (through the handler)', async () => {
    source.answer = profile();
    await resolver.resolve(OWNER, PERSONA);
    const newKey = 'sk-canary-rotated-9876543210';
    source.answer = profile({ baseUrl: 'http://b.invalid/v1', model: 'model-b', sealedKey: sealSecret(keyring, newKey, PROFILE) });
    const handle = profileEventHandler((id) => resolver.invalidateProfile(id), logger);
    await handle({ topic: 'chat.profile.events.v1', key: PROFILE, value: encodeEvent(eventsV1.ApiProfileChanged, eventsV1.ApiProfileChanged.fromPartial({ profileId: PROFILE, ownerId: OWNER })), headers: {} } as never);
    assert.deepEqual(resolver.size, { personas: 0, keys: 0 });
    assert.deepEqual(await resolver.resolve(OWNER, PERSONA), { profileId: PROFILE, baseUrl: 'http://b.invalid/v1', model: 'model-b', apiKey: newKey });
  });

  it('does not cache an answer that raced an invalidation', async () => {
    source.answer = profile();
    const slow: PersonaProfileSource = {
      fetch: async () => {
        resolver.invalidateProfile(PROFILE); // an event arrives while the lookup is under way
        return source.fetch();
      },
    };
    resolver = new ProfileResolver({ source: slow, open: keyOpener(keyring), defaultEndpoint: DEFAULT }, { ttlMs: 60_000, now: () => now });
    await resolver.resolve(OWNER, PERSONA);
    assert.equal(resolver.size.personas, 0);
  });

  it('fails fast with profile_unusable when the profile is missing', async () => {
    source.answer = { kind: 'missing', profileId: PROFILE };
    await rejectsWith(resolver.resolve(OWNER, PERSONA), Code.FailedPrecondition, 'profile_unusable');
    await rejectsWith(resolver.resolve(OWNER, PERSONA), Code.FailedPrecondition, 'profile_unusable');
    assert.equal(source.calls, 2, 'a missing profile is not cached');
  });

  it('fails with profile_unusable, without key material, when the key was sealed with an unknown master key', async () => {
    const other = Keyring.parse(generateKeySpec('v7'));
    source.answer = profile({ sealedKey: sealSecret(other, KEY, PROFILE) });
    await rejectsWith(resolver.resolve(OWNER, PERSONA), Code.FailedPrecondition, 'profile_unusable', KEY);
  });

  it('fails with profile_unusable when the sealed key was tampered with or belongs to another profile', async () => {
    const sealed = sealSecret(keyring, KEY, PROFILE);
    const tampered = { ...sealed, ciphertext: Buffer.from(sealed.ciphertext.map((b, i) => (i === 0 ? b ^ 1 : b))) };
    source.answer = profile({ sealedKey: tampered });
    await rejectsWith(resolver.resolve(OWNER, PERSONA), Code.FailedPrecondition, 'profile_unusable', KEY);
    resolver.invalidatePersona(PERSONA);
    source.answer = profile({ sealedKey: sealSecret(keyring, KEY, 'another-profile') });
    await rejectsWith(resolver.resolve(OWNER, PERSONA), Code.FailedPrecondition, 'profile_unusable', KEY);
  });

  it('passes the source errors on (UNAVAILABLE, NOT_FOUND)', async () => {
    source.answer = AppError.unavailable('the persona service is unavailable');
    await rejectsWith(resolver.resolve(OWNER, PERSONA), Code.Unavailable, 'unavailable');
  });
});

describe('GrpcPersonaProfileSource', () => {
  const call = (res: personaV1.DeepPartial<personaV1.ResolvePersonaResponse> | Error) => new GrpcPersonaProfileSource(async () => {
    if (res instanceof Error) throw res;
    return personaV1.ResolvePersonaResponse.fromPartial(res);
  });

  it('maps uses_default_profile, a profile with and without a key', async () => {
    assert.deepEqual(await call({ usesDefaultProfile: true }).fetch(OWNER, PERSONA), { kind: 'default', retrieval: {} });
    const keyless = await call({ profile: { profile: { id: PROFILE, baseUrl: 'http://x/v1', model: 'm' } } }).fetch(OWNER, PERSONA);
    assert.deepEqual(keyless, { kind: 'profile', profileId: PROFILE, baseUrl: 'http://x/v1', model: 'm', retrieval: {} });
    const keyed = await call({ profile: { profile: { id: PROFILE, baseUrl: 'http://x/v1', model: 'm' }, sealedApiKey: { ciphertext: Buffer.from([1]), iv: Buffer.alloc(12), tag: Buffer.alloc(16), keyVersion: 'v1' } } }).fetch(OWNER, PERSONA);
    assert.equal(keyed.kind === 'profile' && keyed.sealedKey?.keyVersion, 'v1');
  });

  it('maps the embedding model of a profile and the persona’s effective retrieval settings', async () => {
    const got = await call({
      profile: { profile: { id: PROFILE, baseUrl: 'http://x/v1', model: 'm', embeddingModel: 'text-embedding-3-small', embeddingBaseUrl: 'http://e/v1' } },
      effectiveSettings: { retrieval: { topK: 7, scoreThreshold: 0.25, mode: personaV1.RetrievalMode.RETRIEVAL_MODE_HYBRID, rerank: true, queryRewrite: false } },
    }).fetch(OWNER, PERSONA);
    assert.deepEqual(got, {
      kind: 'profile',
      profileId: PROFILE,
      baseUrl: 'http://x/v1',
      model: 'm',
      embeddingModel: 'text-embedding-3-small',
      embeddingBaseUrl: 'http://e/v1',
      retrieval: { topK: 7, scoreThreshold: 0.25, mode: 'hybrid', rerank: true, queryRewrite: false },
    });
    const dense = await call({ usesDefaultProfile: true, effectiveSettings: { retrieval: { mode: personaV1.RetrievalMode.RETRIEVAL_MODE_DENSE } } }).fetch(OWNER, PERSONA);
    assert.deepEqual(dense, { kind: 'default', retrieval: { mode: 'dense' } });
  });

  it('maps a profile the persona service reports missing, or leaves out, to missing', async () => {
    const missing = new AppError(Code.FailedPrecondition, 'gone', { reason: 'profile_missing', details: { api_profile_id: PROFILE } });
    assert.deepEqual(await call(missing).fetch(OWNER, PERSONA), { kind: 'missing', profileId: PROFILE });
    assert.deepEqual(await call({ persona: { apiProfileId: PROFILE } }).fetch(OWNER, PERSONA), { kind: 'missing', profileId: PROFILE });
  });

  it('answers UNAVAILABLE when the persona service cannot be reached, and passes NOT_FOUND on', async () => {
    await rejectsWith(call(AppError.unavailable('persona service is unavailable')).fetch(OWNER, PERSONA), Code.Unavailable, 'unavailable');
    await rejectsWith(call(new AppError(Code.DeadlineExceeded, 'slow', { reason: 'deadline_exceeded' })).fetch(OWNER, PERSONA), Code.Unavailable, 'unavailable');
    await rejectsWith(call(AppError.notFound('persona', PERSONA)).fetch(OWNER, PERSONA), Code.NotFound, 'not_found');
  });
});
