import assert from 'node:assert/strict';
import { randomBytes, randomUUID } from 'node:crypto';
import { eventsV1, personaV1 } from '@chat/contracts';
import { Code, isAppError } from '@chat/errors';
import { Topics } from '@chat/events';
import { QueryTypes } from '@chat/db';
import { Keyring, openSecret, sealSecret } from '@chat/secrets';
import { rotateApiKeys } from '../src/index.js';
import { eventually, startPersona, type PersonaHarness } from './harness.js';

async function rejectsWith(p: Promise<unknown>, code: Code, reason?: string): Promise<any> {
  let caught: any;
  await assert.rejects(p, (err: unknown) => {
    assert.ok(isAppError(err), `expected an AppError, got ${String(err)}`);
    assert.equal(err.code, code, `expected ${Code[code]}, got ${Code[err.code]}: ${err.message}`);
    if (reason) assert.equal(err.reason, reason);
    caught = err;
    return true;
  });
  return caught;
}

const K1 = randomBytes(32).toString('base64');
const K2 = randomBytes(32).toString('base64');

describe('the persona service on PostgreSQL', function () {
  this.timeout(120_000);
  let h: PersonaHarness;
  const alice = `alice-${randomUUID()}`;
  const bob = `bob-${randomUUID()}`;

  before(async () => {
    h = await startPersona({ MASTER_KEYS: `v1:${K1}` });
  });
  after(async () => {
    await h?.stop();
  });

  const personaEvents = (personaId: string) =>
    h.bus.published.filter((e) => e.topic === Topics.personaEvents && e.key === personaId).map((e) => ({ headers: e.headers, event: eventsV1.PersonaEvent.decode(e.value) }));
  const profileEvents = (profileId: string) =>
    h.bus.published.filter((e) => e.topic === Topics.profileEvents && e.key === profileId).map((e) => eventsV1.ApiProfileChanged.decode(e.value));

  const newProfile = (owner = alice, extra: personaV1.DeepPartial<personaV1.CreateApiProfileRequest> = {}) =>
    h.client.createApiProfile({ ownerId: owner, name: 'OpenAI', provider: 'openai', baseUrl: 'https://api.openai.com/v1', model: 'gpt-4o-mini', apiKey: `sk-test-${randomUUID()}`, ...extra });

  describe('personas', () => {
    it('updates only the given fields, merges settings, and emits PersonaUpserted each time', async () => {
      const { persona } = await h.client.createPersona({
        ownerId: alice,
        name: 'Ada',
        systemPrompt: 'You are Ada.',
        background: 'Born 1815.',
        settings: { temperature: 0.5, maxTokens: 300, retrieval: { topK: 3, mode: personaV1.RetrievalMode.RETRIEVAL_MODE_HYBRID } },
      });
      const { persona: updated } = await h.client.updatePersona({ ownerId: alice, id: persona!.id, background: 'Born 1815 in London.', settings: { retrieval: { rerank: true } } });
      assert.equal(updated!.name, 'Ada');
      assert.equal(updated!.systemPrompt, 'You are Ada.');
      assert.equal(updated!.background, 'Born 1815 in London.');
      assert.equal(updated!.settings!.maxTokens, 300);
      assert.equal(updated!.settings!.retrieval!.topK, 3);
      assert.equal(updated!.settings!.retrieval!.mode, personaV1.RetrievalMode.RETRIEVAL_MODE_HYBRID);
      assert.equal(updated!.settings!.retrieval!.rerank, true);
      assert.ok(updated!.updatedAt!.getTime() >= persona!.updatedAt!.getTime());

      const { persona: cleared } = await h.client.updatePersona({ ownerId: alice, id: persona!.id, clearFields: ['settings.temperature', 'settings.retrieval.top_k'] });
      assert.equal(cleared!.settings!.temperature, undefined);
      assert.equal(cleared!.settings!.retrieval!.topK, undefined);
      assert.equal(cleared!.settings!.retrieval!.rerank, true);

      const events = await eventually(() => personaEvents(persona!.id).length === 3 && personaEvents(persona!.id), 'three persona events');
      assert.deepEqual(events.map((e) => e.event.kind?.$case), ['upserted', 'upserted', 'upserted']);
      assert.equal(events[1]!.headers?.['event-type'], 'persona.upserted');
      const second = events[1]!.event.kind;
      assert.ok(second?.$case === 'upserted' && second.value.background === 'Born 1815 in London.');
    });

    it('validates an update like a create, with field-level errors, and changes nothing', async () => {
      const { persona } = await h.client.createPersona({ ownerId: alice, name: 'Bo', systemPrompt: 'You are Bo.' });
      const err = await rejectsWith(
        h.client.updatePersona({ ownerId: alice, id: persona!.id, name: '  ', settings: { temperature: 3, retrieval: { topK: 99 } } }),
        Code.InvalidArgument,
        'invalid_argument',
      );
      assert.deepEqual(Object.keys(err.details.fields).sort(), ['name', 'settings.retrieval.top_k', 'settings.temperature']);
      const bad = await rejectsWith(h.client.updatePersona({ ownerId: alice, id: persona!.id, clearFields: ['system_prompt'] }), Code.InvalidArgument);
      assert.ok(bad.details.fields.system_prompt);
      const { persona: same } = await h.client.getPersona({ ownerId: alice, id: persona!.id });
      assert.equal(same!.name, 'Bo');
    });

    it('answers NOT_FOUND for unknown, malformed and foreign ids on update and delete', async () => {
      const { persona } = await h.client.createPersona({ ownerId: bob, name: 'Bob’s', systemPrompt: 'x' });
      for (const id of [randomUUID(), 'not-a-uuid', persona!.id]) {
        await rejectsWith(h.client.updatePersona({ ownerId: alice, id, name: 'mine now' }), Code.NotFound, 'not_found');
        await rejectsWith(h.client.deletePersona({ ownerId: alice, id }), Code.NotFound, 'not_found');
      }
      assert.equal((await h.client.getPersona({ ownerId: bob, id: persona!.id })).persona!.name, 'Bob’s');
    });

    it('deletes a persona with a PersonaDeleted event; it is gone afterwards', async () => {
      const { persona } = await h.client.createPersona({ ownerId: alice, name: 'Temp', systemPrompt: 'x' });
      assert.deepEqual(await h.client.deletePersona({ ownerId: alice, id: persona!.id }), {});
      await rejectsWith(h.client.getPersona({ ownerId: alice, id: persona!.id }), Code.NotFound);
      await rejectsWith(h.client.deletePersona({ ownerId: alice, id: persona!.id }), Code.NotFound);
      const events = await eventually(() => personaEvents(persona!.id).length === 2 && personaEvents(persona!.id), 'persona deleted event');
      assert.equal(events[1]!.event.kind?.$case, 'deleted');
      assert.equal(events[1]!.event.ownerId, alice);
      assert.equal(events[1]!.headers?.['event-type'], 'persona.deleted');
    });
  });

  describe('API profiles', () => {
    it('creates, gets, lists and updates a profile; responses show only has_api_key and a fingerprint', async () => {
      const key = `sk-test-${randomUUID()}`;
      const { profile } = await newProfile(alice, { apiKey: key, embeddingModel: 'text-embedding-3-small', limits: { requestsPerMinute: 60 } });
      assert.equal(profile!.hasApiKey, true);
      assert.match(profile!.apiKeyFingerprint, /^…[0-9a-f]{8}$/);
      assert.equal(profile!.embeddingModel, 'text-embedding-3-small');
      assert.equal(profile!.limits!.requestsPerMinute, 60);
      assert.ok(!JSON.stringify(personaV1.ApiProfile.toJSON(profile!)).includes(key));
      assert.equal((await h.client.getApiProfile({ ownerId: alice, id: profile!.id })).profile!.apiKeyFingerprint, profile!.apiKeyFingerprint);
      const listed = await h.client.listApiProfiles({ ownerId: alice });
      assert.ok(listed.profiles.some((p) => p.id === profile!.id));
      assert.ok(!(await h.client.listApiProfiles({ ownerId: bob })).profiles.some((p) => p.id === profile!.id));

      const { profile: renamed } = await h.client.updateApiProfile({ ownerId: alice, id: profile!.id, name: 'Renamed', limits: { maxConcurrentGenerations: 2 } });
      assert.equal(renamed!.name, 'Renamed');
      assert.equal(renamed!.model, 'gpt-4o-mini');
      assert.equal(renamed!.apiKeyFingerprint, profile!.apiKeyFingerprint, 'the key is kept when not given');
      assert.deepEqual(renamed!.limits, { maxConcurrentGenerations: 2, requestsPerMinute: 60 });
      const { profile: rekeyed } = await h.client.updateApiProfile({ ownerId: alice, id: profile!.id, apiKey: `sk-test-${randomUUID()}` });
      assert.notEqual(rekeyed!.apiKeyFingerprint, profile!.apiKeyFingerprint);
      const { profile: local } = await h.client.updateApiProfile({ ownerId: alice, id: profile!.id, provider: 'ollama', baseUrl: 'http://127.0.0.1:11434/v1', clearFields: ['api_key', 'embedding_model'] });
      assert.equal(local!.hasApiKey, false);
      assert.equal(local!.apiKeyFingerprint, '');
      assert.equal(local!.embeddingModel, undefined);

      const events = await eventually(() => profileEvents(profile!.id).length === 3 && profileEvents(profile!.id), 'profile change events');
      assert.ok(events.every((e) => e.ownerId === alice && e.profileId === profile!.id && !e.deleted));
      assert.equal(profileEvents(profile!.id).length, 3, 'create emits nothing; each update one event');
    });

    it('stores only the sealed key: AES-256-GCM under the current version, AAD = profile id', async () => {
      const key = `sk-test-${randomUUID()}`;
      const { profile } = await newProfile(alice, { apiKey: key });
      const [row] = await h.db.sequelize.query<any>('select * from persona.api_profiles where id = :id', { replacements: { id: profile!.id }, type: QueryTypes.SELECT });
      assert.ok(!JSON.stringify(row).includes(key) && !row.api_key_ciphertext.toString('latin1').includes(key));
      assert.equal(row.api_key_version, 'v1');
      const ring = Keyring.parse(`v1:${K1}`);
      const sealed = { ciphertext: row.api_key_ciphertext, iv: row.api_key_iv, tag: row.api_key_tag, keyVersion: row.api_key_version };
      assert.equal(openSecret(ring, sealed, profile!.id), key);
      assert.throws(() => openSecret(ring, sealed, randomUUID()));
    });

    it('reports invalid fields by name without repeating the key', async () => {
      const key = 'sk-bad key with spaces';
      const err = await rejectsWith(
        h.client.createApiProfile({ ownerId: alice, name: '', provider: 'anthropic-ish', baseUrl: 'ftp://x', model: '', apiKey: key, embeddingBaseUrl: 'https://u:p@host/v1', limits: { maxConcurrentGenerations: 0 } }),
        Code.InvalidArgument,
        'invalid_argument',
      );
      assert.deepEqual(Object.keys(err.details.fields).sort(), ['api_key', 'base_url', 'embedding_base_url', 'limits.max_concurrent_generations', 'model', 'name', 'provider']);
      assert.ok(!JSON.stringify(err.details).includes(key) && !err.message.includes(key));
      const noKey = await rejectsWith(h.client.createApiProfile({ ownerId: alice, name: 'x', provider: 'openai', baseUrl: 'https://api.openai.com/v1', model: 'm' }), Code.InvalidArgument);
      assert.match(noKey.details.fields.api_key, /required/);
      const { profile } = await h.client.createApiProfile({ ownerId: alice, name: 'local', provider: 'ollama', baseUrl: 'http://localhost:11434/v1', model: 'llama3' });
      assert.equal(profile!.hasApiKey, false);
      await rejectsWith(h.client.updateApiProfile({ ownerId: alice, id: profile!.id, provider: 'openai' }), Code.InvalidArgument);
    });

    it('answers NOT_FOUND for unknown, malformed and foreign profile ids', async () => {
      const { profile } = await newProfile(bob);
      for (const id of [randomUUID(), 'nope', profile!.id]) {
        await rejectsWith(h.client.getApiProfile({ ownerId: alice, id }), Code.NotFound, 'not_found');
        await rejectsWith(h.client.updateApiProfile({ ownerId: alice, id, name: 'x' }), Code.NotFound, 'not_found');
        await rejectsWith(h.client.deleteApiProfile({ ownerId: alice, id }), Code.NotFound, 'not_found');
      }
    });

    it('lets a persona name only a profile of its owner (404 for the profile, with the field)', async () => {
      const { profile: foreign } = await newProfile(bob);
      const err = await rejectsWith(h.client.createPersona({ ownerId: alice, name: 'P', systemPrompt: 'x', apiProfileId: foreign!.id }), Code.NotFound, 'not_found');
      assert.equal(err.details.kind, 'api profile');
      assert.ok(err.details.fields.api_profile_id);
      const { persona } = await h.client.createPersona({ ownerId: alice, name: 'P', systemPrompt: 'x' });
      await rejectsWith(h.client.updatePersona({ ownerId: alice, id: persona!.id, apiProfileId: randomUUID() }), Code.NotFound);
      await rejectsWith(h.client.updatePersona({ ownerId: alice, id: persona!.id, apiProfileId: foreign!.id }), Code.NotFound);
      const { profile: own } = await newProfile(alice);
      const { persona: linked } = await h.client.updatePersona({ ownerId: alice, id: persona!.id, apiProfileId: own!.id });
      assert.equal(linked!.apiProfileId, own!.id);
      const { persona: unlinked } = await h.client.updatePersona({ ownerId: alice, id: persona!.id, clearFields: ['api_profile_id'] });
      assert.equal(unlinked!.apiProfileId, undefined);
    });

    it('refuses to delete a profile personas use (ABORTED profile_in_use with their ids), then deletes it with an event', async () => {
      const { profile } = await newProfile(alice);
      const { persona: p1 } = await h.client.createPersona({ ownerId: alice, name: 'P1', systemPrompt: 'x', apiProfileId: profile!.id });
      const { persona: p2 } = await h.client.createPersona({ ownerId: alice, name: 'P2', systemPrompt: 'x', apiProfileId: profile!.id });
      const err = await rejectsWith(h.client.deleteApiProfile({ ownerId: alice, id: profile!.id }), Code.Aborted, 'profile_in_use');
      assert.deepEqual([...err.details.persona_ids].sort(), [p1!.id, p2!.id].sort());
      await h.client.deletePersona({ ownerId: alice, id: p1!.id });
      await h.client.updatePersona({ ownerId: alice, id: p2!.id, clearFields: ['api_profile_id'] });
      assert.deepEqual(await h.client.deleteApiProfile({ ownerId: alice, id: profile!.id }), {});
      await rejectsWith(h.client.getApiProfile({ ownerId: alice, id: profile!.id }), Code.NotFound);
      const events = await eventually(() => profileEvents(profile!.id).some((e) => e.deleted) && profileEvents(profile!.id), 'profile deleted event');
      assert.deepEqual(events.map((e) => e.deleted), [true]);
    });
  });

  describe('ResolvePersona', () => {
    it('returns effective settings and says when the default profile applies', async () => {
      const { persona } = await h.client.createPersona({ ownerId: alice, name: 'R', systemPrompt: 'x', settings: { temperature: 0.2 } });
      const res = await h.client.resolvePersona({ ownerId: alice, personaId: persona!.id });
      assert.equal(res.usesDefaultProfile, true);
      assert.equal(res.profile, undefined);
      assert.equal(Math.round(res.effectiveSettings!.temperature! * 10), 2);
      assert.equal(res.effectiveSettings!.maxTokens, 1024);
      assert.equal(res.effectiveSettings!.retrieval!.topK, 5);
      assert.equal(res.effectiveSettings!.retrieval!.mode, personaV1.RetrievalMode.RETRIEVAL_MODE_DENSE);
      await rejectsWith(h.client.resolvePersona({ ownerId: bob, personaId: persona!.id }), Code.NotFound);
    });

    it('returns the profile with its key sealed, which opens with MASTER_KEYS and AAD = profile id', async () => {
      const key = `sk-test-${randomUUID()}`;
      const { profile } = await newProfile(alice, { apiKey: key });
      const { persona } = await h.client.createPersona({ ownerId: alice, name: 'R2', systemPrompt: 'x', apiProfileId: profile!.id });
      const res = await h.client.resolvePersona({ ownerId: alice, personaId: persona!.id });
      assert.equal(res.usesDefaultProfile, false);
      assert.equal(res.profile!.profile!.id, profile!.id);
      assert.ok(!Buffer.from(personaV1.ResolvePersonaResponse.encode(res).finish()).toString('latin1').includes(key));
      const s = res.profile!.sealedApiKey!;
      assert.equal(openSecret(Keyring.parse(`v1:${K1}`), { ciphertext: Buffer.from(s.ciphertext), iv: Buffer.from(s.iv), tag: Buffer.from(s.tag), keyVersion: s.keyVersion }, profile!.id), key);
    });
  });

  describe('master key rotation', () => {
    it('re-seals every key onto the new version in batches, idempotently, still opening with AAD = profile id', async () => {
      const keys = new Map<string, string>();
      for (let i = 0; i < 5; i++) {
        const key = `sk-rot-${i}-${randomUUID()}`;
        const { profile } = await newProfile(alice, { apiKey: key });
        keys.set(profile!.id, key);
      }
      const rows = async () =>
        h.db.sequelize.query<any>('select id, api_key_ciphertext, api_key_iv, api_key_tag, api_key_version from persona.api_profiles where api_key_version is not null', { type: QueryTypes.SELECT });
      const old = Keyring.parse(`v1:${K1}`);
      const before = (await rows()).filter((r) => keys.has(r.id));
      assert.equal(before.length, 5);
      for (const r of before) {
        assert.equal(r.api_key_version, 'v1');
        assert.equal(openSecret(old, { ciphertext: r.api_key_ciphertext, iv: r.api_key_iv, tag: r.api_key_tag, keyVersion: 'v1' }, r.id), keys.get(r.id));
      }
      const onV1 = (await rows()).filter((r) => r.api_key_version === 'v1').length;

      const ring = Keyring.parse(`v1:${K1},v2:${K2}`, 'v2');
      const report = await rotateApiKeys(h.db.sequelize, ring, h.logger, 2);
      assert.equal(report.keyVersion, 'v2');
      assert.equal(report.rotated, onV1);
      assert.equal(report.batches, Math.ceil(onV1 / 2));
      const after = await rows();
      assert.ok(after.every((r) => r.api_key_version === 'v2'));
      const v2only = Keyring.parse(`v2:${K2}`);
      for (const r of after) {
        const sealed = { ciphertext: r.api_key_ciphertext, iv: r.api_key_iv, tag: r.api_key_tag, keyVersion: r.api_key_version };
        const plain = openSecret(v2only, sealed, r.id);
        if (keys.has(r.id)) assert.equal(plain, keys.get(r.id));
        assert.throws(() => openSecret(v2only, sealed, randomUUID()), 'AAD still binds the row');
      }
      const again = await rotateApiKeys(h.db.sequelize, ring, h.logger, 2);
      assert.deepEqual({ rotated: again.rotated, alreadyCurrent: again.alreadyCurrent }, { rotated: 0, alreadyCurrent: after.length });
      const firstId = [...keys.keys()][0]!;
      await eventually(() => profileEvents(firstId).length >= 1, 'rotation emits ApiProfileChanged through the outbox');
    });

    it('stops with the profile id (no key material) when a key does not open', async () => {
      const { profile } = await newProfile(alice);
      const foreign = sealSecret(Keyring.parse(`v3:${randomBytes(32).toString('base64')}`), 'sk-whatever-123', profile!.id);
      await h.db.sequelize.query('update persona.api_profiles set api_key_version = :v where id = :id', { replacements: { id: profile!.id, v: foreign.keyVersion } });
      const ring = Keyring.parse(`v1:${K1},v2:${K2}`, 'v2');
      await assert.rejects(rotateApiKeys(h.db.sequelize, ring, h.logger), (err: Error) => err.message.includes(profile!.id) && err.message.includes('v3') && !err.message.includes(K1));
      await h.db.sequelize.query('delete from persona.api_profiles where id = :id', { replacements: { id: profile!.id } });
    });
  });
});
